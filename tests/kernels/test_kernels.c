/* test_kernels.c - every dot kernel of every ISA this CPU has against a double-precision
 * reference; f16/bf16 conversion and q8_0 quantization against hand-computed values. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include "kernels/kernels.h"

static uint64_t rng = 0x243f6a8885a308d3ull;
static float    frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static void test_f16(void **state)
{
    assert_int_equal(tfab_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(tfab_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(tfab_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(tfab_f32_to_f16(1e6f), 0x7c00);               /* overflow to inf */
    assert_int_equal(tfab_f32_to_f16(5.9604645e-8f), 0x0001);      /* smallest subnormal */
    assert_int_equal(tfab_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie rounds to even */
    assert_int_equal(tfab_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);
    assert_true(tfab_f16_to_f32(0x3555) == 0.333251953125f);
    assert_true(tfab_f16_to_f32(0x0001) == 5.9604644775390625e-8f);
    assert_true(isinf(tfab_f16_to_f32(0xfc00)) && tfab_f16_to_f32(0xfc00) < 0);
    assert_true(isnan(tfab_f16_to_f32(0x7e00)));
    for (uint32_t h = 0; h < 0x7c00; h++) /* every finite positive half round-trips */
        assert_int_equal(tfab_f32_to_f16(tfab_f16_to_f32((uint16_t)h)), h);
    assert_true(tfab_bf16_to_f32(0x3f80) == 1.0f);
    assert_true(tfab_bf16_to_f32(0xc040) == -3.0f);
}

static void test_quantize(void **state)
{
    float x[32];
    for (int i = 0; i < 32; i++)
        x[i] = (float)(i - 16) / 16.0f; /* max |x| = 1 at i = 0 */
    tfab_block_q8_0_t b;
    tfab_quantize_q8_0(x, &b, 32);
    assert_int_equal(b.d, tfab_f32_to_f16(1.0f / 127.0f));
    assert_int_equal(b.qs[0], -127);
    assert_int_equal(b.qs[16], 0);
    assert_int_equal(b.qs[24], 64); /* 0.5 * 127 = 63.5 rounds away from zero */
    assert_int_equal(b.qs[8], -64);
    float zero[32] = {0};
    tfab_quantize_q8_0(zero, &b, 32);
    assert_int_equal(b.d, 0);
    assert_int_equal(b.qs[5], 0);
    /* q4_0 dequantization: d = 2, nibble 0 -> -16, nibble 15 -> 14 */
    tfab_block_q4_0_t q4 = {.d = tfab_f32_to_f16(2.0f)};
    for (int j = 0; j < 16; j++)
        q4.qs[j] = (uint8_t)(j | (15 - j) << 4);
    float out[32];
    tfab_dequant_row(TFAB_DTYPE_Q4_0, &q4, out, 32);
    assert_true(out[0] == -16.0f && out[15] == 14.0f && out[16] == 14.0f && out[31] == -16.0f);
}

/* reference dot in double over the dequantized weight and the (quantized) activation */
static double ref_dot(tfab_dtype_t t, size_t n, const void *w, const float *x,
                      const tfab_block_q8_0_t *xq, double *mag)
{
    float *wf = malloc(n * sizeof(float)), *xf = malloc(n * sizeof(float));
    tfab_dequant_row(t, w, wf, n);
    if (tfab_kern_act_kind(t) == TFAB_ACT_Q8_0)
        tfab_dequant_row(TFAB_DTYPE_Q8_0, xq, xf, n);
    else
        memcpy(xf, x, n * sizeof(float));
    double s = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)wf[i] * xf[i];
        m += fabs((double)wf[i] * xf[i]);
    }
    free(wf);
    free(xf);
    *mag = m;
    return s;
}

static void encode_row(tfab_dtype_t t, const float *src, void *dst, size_t n)
{
    switch (t) {
    case TFAB_DTYPE_F32:
        memcpy(dst, src, n * 4);
        break;
    case TFAB_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = tfab_f32_to_f16(src[i]);
        break;
    case TFAB_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = (uint16_t)(tfab_f32_bits(src[i]) >> 16);
        break;
    case TFAB_DTYPE_Q8_0:
        tfab_quantize_q8_0(src, dst, n);
        break;
    case TFAB_DTYPE_Q4_0: {
        tfab_block_q4_0_t *b = dst;
        for (size_t blk = 0; blk < n / 32; blk++) {
            b[blk].d = tfab_f32_to_f16(0.01f * (float)(blk % 7 + 1));
            for (int j = 0; j < 16; j++)
                b[blk].qs[j] = (uint8_t)(rng >> (j % 8) * 8);
            frand();
        }
        break;
    }
    default:
        fail();
    }
}

static void test_dots(void **state)
{
    static const tfab_dtype_t types[] = {TFAB_DTYPE_F32, TFAB_DTYPE_F16, TFAB_DTYPE_BF16,
                                         TFAB_DTYPE_Q8_0, TFAB_DTYPE_Q4_0};
    static const size_t       lens[]  = {32, 64, 96, 160, 4096, 4128, 11008};
    int                       n_isa = 0, n_dot4 = 0;
    /* every table this CPU runs, plus AVX-512 without VNNI when the best one uses VNNI */
    tfab_kern_t        plain512;
    const tfab_kern_t *tables[TFAB_ISA_COUNT + 1];
    for (int isa = 0; isa < TFAB_ISA_COUNT; isa++)
        if ((tables[n_isa] = tfab_kern_get((tfab_isa_t)isa)) != NULL)
            n_isa++;
    if (tfab_kern_get(TFAB_ISA_AVX512)) {
        plain512 = *tfab_kern_get(TFAB_ISA_AVX512);
        tfab_kern_fill_avx512(&plain512, 0);
        tables[n_isa++] = &plain512;
    }
    for (int ti_ = 0; ti_ < n_isa; ti_++) {
        const tfab_kern_t *k = tables[ti_];
        for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
            for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                tfab_dtype_t t = types[ti];
                size_t       n = lens[li];
                float       *w = malloc(n * 4), *x = malloc(n * 4);
                for (size_t i = 0; i < n; i++) {
                    w[i] = frand();
                    x[i] = frand() * 3.0f;
                }
                uint64_t bytes;
                assert_int_equal(tfab_dtype_bytes(t, n, &bytes), TFAB_OK);
                void              *wq = malloc(bytes);
                tfab_block_q8_0_t *xq = malloc(n / 32 * sizeof(*xq));
                encode_row(t, w, wq, n);
                tfab_quantize_q8_0(x, xq, n);
                double mag;
                double want = ref_dot(t, n, wq, x, xq, &mag);
                float  got  = k->dot[t](n, wq,
                                      tfab_kern_act_kind(t) == TFAB_ACT_Q8_0 ? (const void *)xq
                                                                               : (const void *)x);
                if (k->dot4[t]) { /* four rows at once: bit-identical to four dots */
                    int    q8  = tfab_kern_act_kind(t) == TFAB_ACT_Q8_0;
                    size_t row = q8 ? n / 32 * sizeof(tfab_block_q8_0_t) : n * 4;
                    float *xf  = malloc(n * 4), o[4];
                    char  *x4  = malloc(4 * row);
                    for (int r = 0; r < 4; r++) {
                        for (size_t e = 0; e < n; e++)
                            xf[e] = frand() * (float)(r + 1);
                        if (q8)
                            tfab_quantize_q8_0(xf, (tfab_block_q8_0_t *)(x4 + r * row), n);
                        else
                            memcpy(x4 + r * row, xf, n * 4);
                    }
                    k->dot4[t](n, wq, x4, row, o);
                    for (int r = 0; r < 4; r++)
                        assert_true(o[r] == k->dot[t](n, wq, x4 + r * row));
                    free(xf);
                    free(x4);
                    n_dot4++;
                }
                if (fabs(got - want) > 2e-6 * mag + 1e-6) {
                    print_error("%s %s n=%zu: got %.9g want %.9g (mag %g)\n", k->name,
                                tfab_dtype_name(t), n, got, want, mag);
                    fail();
                }
                free(w);
                free(x);
                free(wq);
                free(xq);
            }
    }
    assert_true(n_isa >= 1);
    if (tfab_kern_get(TFAB_ISA_AVX512))
        assert_true(n_dot4 > 0);
    print_message("checked kernels:");
    for (int i = 0; i < n_isa; i++)
        print_message(" %s", tables[i]->name);
    print_message("\n");
    assert_non_null(tfab_kern_best());
}

/* every gemm against the double reference, and its batch invariance: a block of rows x tokens
 * gives bitwise the values of 1 x 1 calls, whatever the block shape */
static void test_gemm(void **state)
{
    static const tfab_dtype_t types[] = {TFAB_DTYPE_F32, TFAB_DTYPE_F16, TFAB_DTYPE_BF16,
                                         TFAB_DTYPE_Q8_0, TFAB_DTYPE_Q4_0};
    static const size_t       lens[]  = {32, 96, 1056, 2080};
    static const uint32_t     ntoks[] = {1, 2, 3, 7, 13, 50};
    const uint32_t            rows    = 19;
    for (int isa = 0; isa < TFAB_ISA_COUNT; isa++) {
        const tfab_kern_t *k = tfab_kern_get((tfab_isa_t)isa);
        if (k == NULL)
            continue;
        for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
            for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
                tfab_dtype_t t = types[ti];
                size_t   n = lens[li] - (tfab_kern_gemm_act(t) == TFAB_ACT_F32 && li == 2 ? 8 : 0);
                uint64_t rb;
                tfab_act_kind_t ak = tfab_kern_gemm_act(t);
                size_t          xb = tfab_act_row_bytes(ak, n);
                uint32_t        nt = 50;
                assert_int_equal(tfab_dtype_bytes(t, n, &rb), TFAB_OK);
                float   *wf = malloc(n * 4), *xf = malloc(n * 4 * nt);
                uint8_t *w = malloc(rb * rows), *x = malloc(xb * nt);
                float   *out = malloc(sizeof(float) * rows * nt), one;
                for (uint32_t r = 0; r < rows; r++) {
                    for (size_t i = 0; i < n; i++)
                        wf[i] = frand();
                    encode_row(t, wf, w + r * rb, n);
                }
                for (uint32_t j = 0; j < nt; j++) {
                    for (size_t i = 0; i < n; i++)
                        xf[j * n + i] = frand() * 2.0f;
                    tfab_quantize_act(ak, xf + j * n, x + j * xb, n);
                }
                for (size_t ni = 0; ni < sizeof(ntoks) / sizeof(ntoks[0]); ni++) {
                    uint32_t         m = ntoks[ni];
                    tfab_gemm_args_t a = {n, w, rb, rows, x, xb, m, out, rows};
                    k->gemm[t](&a);
                    for (uint32_t j = 0; j < m; j++)
                        for (uint32_t r = 0; r < rows; r++) {
                            tfab_gemm_args_t b = {n, w + r * rb, rb, 1, x + j * xb, xb, 1, &one, 1};
                            k->gemm[t](&b);
                            if (one != out[j * rows + r]) {
                                print_error("%s %s n=%zu: %u tokens, row %u token %u: %.9g "
                                            "alone, %.9g in the block\n",
                                            k->name, tfab_dtype_name(t), n, m, r, j, one,
                                            out[j * rows + r]);
                                fail();
                            }
                        }
                }
                /* values: against the double reference on the dequantized operands */
                for (uint32_t j = 0; j < nt; j += 7)
                    for (uint32_t r = 0; r < rows; r += 5) {
                        tfab_block_q8_0_t *xq = malloc(n / 32 * sizeof(*xq));
                        tfab_quantize_q8_0(xf + j * n, xq, n);
                        double mag, want = ref_dot(t, n, w + r * rb, xf + j * n, xq, &mag);
                        free(xq);
                        if (fabs(out[j * rows + r] - want) > 2e-6 * mag + 1e-6) {
                            print_error("%s %s gemm n=%zu: got %.9g want %.9g\n", k->name,
                                        tfab_dtype_name(t), n, out[j * rows + r], want);
                            fail();
                        }
                    }
                free(wf);
                free(xf);
                free(w);
                free(x);
                free(out);
            }
    }
}

/* every ISA's Q8X quantization writes the bytes of the scalar one (ties round to even) */
static void test_quantize_q8x(void **state)
{
    const size_t n = 224, np = 256, bytes = tfab_act_row_bytes(TFAB_ACT_Q8X, n);
    float        x[224];
    assert_int_equal(bytes, 2 * np);
    for (size_t i = 0; i < n; i++)
        x[i] = frand() * 5.0f;
    for (size_t i = 0; i < 32; i++) /* block 0: amax 127, so q = round(x): halves are ties */
        x[i] = i == 0 ? 127.0f : (float)((int)i - 16) + 0.5f;
    for (size_t i = 32; i < 64; i++)
        x[i] = 0.0f; /* an all-zero block: d = 0 */
    uint8_t *want = malloc(bytes), *got = malloc(bytes);
    tfab_quantize_q8x_scalar(x, want, n);
    /* stored as q + 128: 127 -> 255; -14.5 and -13.5 -> -14; -12.5 -> -12; 1.5, 2.5 -> 2 */
    assert_int_equal(want[0], 255);
    assert_int_equal(want[1], 114);
    assert_int_equal(want[2], 114);
    assert_int_equal(want[3], 116);
    assert_int_equal(want[17], 130);
    assert_int_equal(want[18], 130);
    assert_int_equal(want[40], 128);
    assert_true(((float *)(want + np))[0] == 1.0f && ((float *)(want + np))[8] == 0.0f);
    for (int isa = 0; isa < TFAB_ISA_COUNT; isa++) {
        const tfab_kern_t *k = tfab_kern_get((tfab_isa_t)isa);
        if (k == NULL)
            continue;
        memset(got, 0xee, bytes);
        k->quantize_q8x(x, got, n);
        assert_memory_equal(got, want, bytes);
    }
    free(want);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16),          cmocka_unit_test(test_quantize),
        cmocka_unit_test(test_dots),         cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_quantize_q8x),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
