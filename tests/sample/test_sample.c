/* test_sample.c - the sampler on hand-made logits: exact picks for greedy, penalties, top-k,
 * top-p, min-p; distributions under fixed seeds; bit-exact reproducibility. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>
#include <tfab/sample.h>

static tfab_sampler_t *make(uint32_t n, uint64_t mask, float temp, int32_t top_k, float top_p,
                            float min_p, float penalty, uint32_t last_n, uint64_t seed)
{
    tfab_sampler_params_t p = {.field_mask     = mask,
                               .temperature    = temp,
                               .top_k          = top_k,
                               .top_p          = top_p,
                               .min_p          = min_p,
                               .repeat_penalty = penalty,
                               .repeat_last_n  = last_n,
                               .seed           = seed};
    tfab_sampler_t       *s = NULL;
    assert_int_equal(tfab_sampler_create(n, &p, &s), TFAB_OK);
    return s;
}

#define ALL 0x7f /* every TFAB_SAMPLER_PARAM_* bit */

static tfab_token_t pick(tfab_sampler_t *s, const float *logits)
{
    tfab_token_t t = -1;
    assert_int_equal(tfab_sampler_sample(s, logits, &t), TFAB_OK);
    return t;
}

static void test_greedy(void **state)
{
    tfab_sampler_t *s = make(4, ALL, 0.0f, 0, 1.0f, 0.0f, 1.0f, 0, 1);
    assert_int_equal(pick(s, (float[]){1, 3, 2, 0}), 1);
    assert_int_equal(pick(s, (float[]){1, 3, 2, 3}), 1); /* tie: lower id */
    assert_int_equal(pick(s, (float[]){NAN, -INFINITY, -5, -6}), 2);
    assert_int_equal(pick(s, (float[]){1, INFINITY, 2, INFINITY}), 1);
    tfab_token_t t = 77;
    assert_int_equal(tfab_sampler_sample(s, (float[]){NAN, NAN, -INFINITY, NAN}, &t),
                     TFAB_ERR_INVALID);
    assert_int_equal(t, 77);
    tfab_sampler_destroy(s);
}

static void test_repeat_penalty(void **state)
{
    /* positive logit divided: 3.0 / 1.5 = 2.0 < 2.9 */
    tfab_sampler_t *s   = make(4, ALL, 0.0f, 0, 1.0f, 0.0f, 1.5f, 2, 1);
    const float     l[] = {1.0f, 3.0f, 2.9f, -1.0f};
    assert_int_equal(pick(s, l), 1); /* history empty; now {1} */
    assert_int_equal(pick(s, l), 2); /* 1 -> 2.0 < 2.9; now {1, 2} */
    assert_int_equal(pick(s, l), 1); /* 1 -> 2.0 > 2 -> 1.93; now {2, 1} */
    assert_int_equal(pick(s, l), 1); /* same; now {1, 1}: 2 left the window of 2 */
    assert_int_equal(pick(s, l), 2); /* only 1 penalized, once although twice in the window */
    tfab_sampler_destroy(s);
    /* negative logit multiplied: -1 * 2 = -2 < -1.5; repeats count once */
    s = make(2, ALL, 0.0f, 0, 1.0f, 0.0f, 2.0f, 8, 1);
    for (int i = 0; i < 5; i++)
        assert_int_equal(tfab_sampler_accept(s, 0), TFAB_OK);
    assert_int_equal(pick(s, (float[]){-1.0f, -1.5f}), 1);
    assert_int_equal(tfab_sampler_accept(s, 2), TFAB_ERR_INVALID);
    tfab_sampler_reset(s, 1); /* history forgotten */
    assert_int_equal(pick(s, (float[]){-1.0f, -1.5f}), 0);
    tfab_sampler_destroy(s);
}

/* Counts of n draws. */
static void draw(tfab_sampler_t *s, const float *logits, uint32_t n_vocab, int n, int *count)
{
    for (uint32_t i = 0; i < n_vocab; i++)
        count[i] = 0;
    for (int i = 0; i < n; i++)
        count[pick(s, logits)]++;
}

static void test_filters(void **state)
{
    /* probabilities 0.5, 0.3, 0.2 at temperature 1 */
    const float l[] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    int         c[3];
    /* +inf dominates without turning the softmax into NaN */
    tfab_sampler_t *s = make(3, ALL, 1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 7);
    draw(s, (float[]){0.0f, INFINITY, 0.0f}, 3, 200, c);
    assert_int_equal(c[1], 200);
    tfab_sampler_destroy(s);
    /* top-k 1 is greedy whatever the seed */
    s = make(3, ALL, 1.0f, 1, 1.0f, 0.0f, 1.0f, 0, 7);
    draw(s, l, 3, 500, c);
    assert_int_equal(c[0], 500);
    tfab_sampler_destroy(s);
    /* top-k 2: renormalized 0.625 / 0.375 */
    s = make(3, ALL, 1.0f, 2, 1.0f, 0.0f, 1.0f, 0, 7);
    draw(s, l, 3, 20000, c);
    assert_int_equal(c[2], 0);
    assert_true(fabs(c[0] / 20000.0 - 0.625) < 0.015);
    tfab_sampler_destroy(s);
    /* top-p 0.6: 0.5 < 0.6 <= 0.8, keeps two */
    s = make(3, ALL, 1.0f, 0, 0.6f, 0.0f, 1.0f, 0, 7);
    draw(s, l, 3, 20000, c);
    assert_int_equal(c[2], 0);
    assert_true(fabs(c[0] / 20000.0 - 0.625) < 0.015);
    tfab_sampler_destroy(s);
    /* top-p 0.5: the first alone reaches it */
    s = make(3, ALL, 1.0f, 0, 0.5f, 0.0f, 1.0f, 0, 7);
    draw(s, l, 3, 1000, c);
    assert_int_equal(c[0], 1000);
    tfab_sampler_destroy(s);
    /* min-p 0.5: floor 0.25 drops 0.2 */
    s = make(3, ALL, 1.0f, 0, 1.0f, 0.5f, 1.0f, 0, 7);
    draw(s, l, 3, 20000, c);
    assert_int_equal(c[2], 0);
    assert_true(c[1] > 0);
    tfab_sampler_destroy(s);
    /* min-p 0.7: floor 0.35 keeps only the top */
    s = make(3, ALL, 1.0f, 0, 1.0f, 0.7f, 1.0f, 0, 7);
    draw(s, l, 3, 1000, c);
    assert_int_equal(c[0], 1000);
    tfab_sampler_destroy(s);
}

static void test_distribution(void **state)
{
    const float l[] = {logf(0.1f), logf(0.2f), logf(0.3f), logf(0.4f)};
    int         c[4];
    const int   n = 40000;
    /* temperature 1, no filter: the softmax itself */
    tfab_sampler_t *s = make(4, ALL, 1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 42);
    draw(s, l, 4, n, c);
    for (int i = 0; i < 4; i++)
        assert_true(fabs(c[i] / (double)n - 0.1 * (i + 1)) < 0.01);
    tfab_sampler_destroy(s);
    /* temperature 0.5 squares the odds: p ~ {1, 4, 9, 16} / 30 */
    s = make(4, ALL, 0.5f, 0, 1.0f, 0.0f, 1.0f, 0, 42);
    draw(s, l, 4, n, c);
    for (int i = 0; i < 4; i++)
        assert_true(fabs(c[i] / (double)n - (i + 1) * (i + 1) / 30.0) < 0.01);
    tfab_sampler_destroy(s);
}

static void test_reproducible(void **state)
{
    /* splitmix64-seeded xoshiro256**: fixed first outputs for seed 0 */
    tfab_sampler_t *s  = make(8, ALL, 1.0f, 0, 1.0f, 0.0f, 1.0f, 0, 0);
    uint64_t        r0 = tfab_sampler_rand_u64(s), r1 = tfab_sampler_rand_u64(s);
    assert_true(r0 == 0x99ec5f36cb75f2b4ull);
    assert_true(r1 == 0xbf6e1f784956452aull);
    tfab_sampler_destroy(s);

    const float  l[8] = {0.1f, 1.2f, -0.3f, 0.8f, 0.0f, 2.0f, 1.1f, -1.0f};
    tfab_token_t a[64], b[64];
    s = make(8, ALL, 0.9f, 6, 0.95f, 0.02f, 1.1f, 4, 1234);
    for (int i = 0; i < 64; i++)
        a[i] = pick(s, l);
    tfab_sampler_reset(s, 1234);
    for (int i = 0; i < 64; i++)
        b[i] = pick(s, l);
    assert_memory_equal(a, b, sizeof(a));
    /* the exact sequence is part of the contract (same on every machine) */
    static const tfab_token_t want[16] = {5, 3, 6, 3, 5, 0, 1, 5, 6, 6, 1, 5, 5, 6, 5, 3};
    assert_memory_equal(a, want, sizeof(want));
    tfab_sampler_destroy(s);
}

static void test_create_errors(void **state)
{
    tfab_sampler_t *s = (tfab_sampler_t *)0x1;
    assert_int_equal(tfab_sampler_create(0, NULL, &s), TFAB_ERR_INVALID);
    tfab_sampler_params_t p = {.field_mask     = TFAB_SAMPLER_PARAM_REPEAT_PENALTY,
                               .repeat_penalty = 0};
    assert_int_equal(tfab_sampler_create(4, &p, &s), TFAB_ERR_INVALID);
    p = (tfab_sampler_params_t){.field_mask = TFAB_SAMPLER_PARAM_TOP_P, .top_p = NAN};
    assert_int_equal(tfab_sampler_create(4, &p, &s), TFAB_ERR_INVALID);
    assert_ptr_equal(s, (tfab_sampler_t *)0x1);
    /* defaults */
    assert_int_equal(tfab_sampler_create(4, NULL, &s), TFAB_OK);
    tfab_token_t t;
    assert_int_equal(tfab_sampler_sample(s, (float[]){0, 0, 9, 0}, &t), TFAB_OK);
    assert_int_equal(t, 2); /* min-p 0.05 keeps only the dominant token */
    tfab_sampler_destroy(s);
    tfab_sampler_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),       cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_filters),      cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_reproducible), cmocka_unit_test(test_create_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
