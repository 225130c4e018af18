/* test_utf8.c - the UTF-8 rules tfab serve applies to generated text before it goes into JSON:
 * which bytes form a well-formed character (RFC 3629 table 3-7), and how much of a text's end
 * is a character still cut short (held back until the next token). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>
#include "server/srv.h"

static size_t len_of(const char *s, size_t n)
{
    return srv_utf8_char_len((const unsigned char *)s, n);
}

static void test_well_formed(void **state)
{
    (void)state;
    assert_int_equal(len_of("A", 1), 1);
    assert_int_equal(len_of("\xc3\xa9", 2), 2);         /* é */
    assert_int_equal(len_of("\xe2\x82\xac", 3), 3);     /* € */
    assert_int_equal(len_of("\xed\x9f\xbf", 3), 3);     /* U+D7FF, last before surrogates */
    assert_int_equal(len_of("\xf0\x9f\x98\x80", 4), 4); /* U+1F600 */
    assert_int_equal(len_of("\xf4\x8f\xbf\xbf", 4), 4); /* U+10FFFF */
}

static void test_ill_formed(void **state)
{
    (void)state;
    assert_int_equal(len_of("\x91", 1), 0);             /* lone continuation byte */
    assert_int_equal(len_of("\xc0\xaf", 2), 0);         /* overlong '/' */
    assert_int_equal(len_of("\xc1\xbf", 2), 0);         /* overlong */
    assert_int_equal(len_of("\xe0\x9f\xbf", 3), 0);     /* overlong 3-byte */
    assert_int_equal(len_of("\xed\xa0\x80", 3), 0);     /* surrogate U+D800 */
    assert_int_equal(len_of("\xf0\x8f\xbf\xbf", 4), 0); /* overlong 4-byte */
    assert_int_equal(len_of("\xf4\x90\x80\x80", 4), 0); /* above U+10FFFF */
    assert_int_equal(len_of("\xf5\x80\x80\x80", 4), 0); /* no such lead byte */
    assert_int_equal(len_of("\xd8\x41", 2), 0);         /* lead then ASCII (seen from a model) */
    assert_int_equal(len_of("\xe2\x82", 2), 0);         /* cut short */
    assert_int_equal(len_of("\xe2\x82\x41", 3), 0);     /* third byte not a continuation */
}

static void test_partial_tail(void **state)
{
    (void)state;
    assert_int_equal(srv_utf8_partial_tail("abc", 3), 0);
    assert_int_equal(srv_utf8_partial_tail("ab\xe2\x82", 4), 2);     /* € cut after 2 bytes */
    assert_int_equal(srv_utf8_partial_tail("ab\xe2", 3), 1);
    assert_int_equal(srv_utf8_partial_tail("ab\xe2\x82\xac", 5), 0); /* complete */
    assert_int_equal(srv_utf8_partial_tail("\xf0\x9f\x98", 3), 3);
    assert_int_equal(srv_utf8_partial_tail("\xf0\x9f\x98\x80", 4), 0);
    assert_int_equal(srv_utf8_partial_tail("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_ill_formed),
        cmocka_unit_test(test_partial_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
