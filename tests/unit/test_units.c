/* test_units.c - sizes and durations: accepted forms, rejected forms, overflow, round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <tfab/units.h>

static void size_ok(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    assert_int_equal(tfab_size_parse(s, &v), TFAB_OK);
    assert_true(v == want);
}

static void size_bad(const char *s, tfab_status_t want)
{
    uint64_t v = 12345;
    assert_int_equal(tfab_size_parse(s, &v), want);
    assert_true(v == 12345); /* output untouched on error */
}

static void test_size_parse(void **state)
{
    size_ok("0", 0);
    size_ok("7", 7);
    size_ok("7B", 7);
    size_ok("64k", 64ull << 10);
    size_ok("64KiB", 64ull << 10);
    size_ok("1M", 1ull << 20);
    size_ok("1536MiB", 1536ull << 20);
    size_ok("1G", 1ull << 30);
    size_ok("1GB", 1ull << 30);
    size_ok("2T", 2ull << 40);
    size_ok("18446744073709551615", UINT64_MAX);
    size_bad("", TFAB_ERR_INVALID);
    size_bad("G", TFAB_ERR_INVALID);
    size_bad("1 G", TFAB_ERR_INVALID);
    size_bad("-1", TFAB_ERR_INVALID);
    size_bad("1.5G", TFAB_ERR_INVALID);
    size_bad("1Gi", TFAB_ERR_INVALID);
    size_bad("1GiBB", TFAB_ERR_INVALID);
    size_bad("18446744073709551616", TFAB_ERR_RANGE);
    size_bad("16777216T", TFAB_ERR_RANGE); /* 2^24 * 2^40 overflows */
    assert_int_equal(tfab_size_parse(NULL, &(uint64_t){0}), TFAB_ERR_INVALID);
}

static void test_duration_parse(void **state)
{
    uint64_t ns;
    assert_int_equal(tfab_duration_parse("250ms", &ns), TFAB_OK);
    assert_true(ns == 250000000ull);
    assert_int_equal(tfab_duration_parse("5s", &ns), TFAB_OK);
    assert_true(ns == 5000000000ull);
    assert_int_equal(tfab_duration_parse("2m", &ns), TFAB_OK);
    assert_true(ns == 120000000000ull);
    assert_int_equal(tfab_duration_parse("1h", &ns), TFAB_OK);
    assert_true(ns == 3600000000000ull);
    assert_int_equal(tfab_duration_parse("17us", &ns), TFAB_OK);
    assert_true(ns == 17000ull);
    assert_int_equal(tfab_duration_parse("5", &ns), TFAB_ERR_INVALID); /* unit required */
    assert_int_equal(tfab_duration_parse("5 s", &ns), TFAB_ERR_INVALID);
    assert_int_equal(tfab_duration_parse("5sec", &ns), TFAB_ERR_INVALID);
    assert_int_equal(tfab_duration_parse("99999999999h", &ns), TFAB_ERR_RANGE);
}

static void test_size_format_roundtrip(void **state)
{
    char     buf[32];
    uint64_t vals[] = {0, 1, 7, 1023, 1024, 1536 << 10, 1ull << 30, (1ull << 30) + 1, 3ull << 40,
                       UINT64_MAX};
    assert_string_equal(tfab_size_format(1ull << 30, buf, sizeof(buf)), "1GiB");
    assert_string_equal(tfab_size_format(1536ull << 10, buf, sizeof(buf)), "1536KiB");
    assert_string_equal(tfab_size_format(7, buf, sizeof(buf)), "7B");
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint64_t back = 0;
        assert_int_equal(tfab_size_parse(tfab_size_format(vals[i], buf, sizeof(buf)), &back),
                         TFAB_OK);
        assert_true(back == vals[i]);
    }
}

static void test_size_human(void **state)
{
    char buf[32];
    assert_string_equal(tfab_size_human(512, buf, sizeof(buf)), "512 B");
    assert_string_equal(tfab_size_human(1536, buf, sizeof(buf)), "1.50 KiB");
    assert_string_equal(tfab_size_human(1ull << 30, buf, sizeof(buf)), "1.00 GiB");
    assert_string_equal(tfab_size_human(100ull << 20, buf, sizeof(buf)), "100 MiB");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_parse),
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_size_format_roundtrip),
        cmocka_unit_test(test_size_human),
    };
    return cmocka_run_group_tests_name("units", tests, NULL, NULL);
}
