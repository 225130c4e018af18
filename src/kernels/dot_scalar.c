/* dot_scalar.c - portable dot-product kernels: the reference every SIMD kernel is tested against
 * and the fallback on CPUs without AVX2. */
#include "kernels.h"

static float dot_f32(size_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    float        s[4] = {0, 0, 0, 0};
    size_t       i    = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_f16(size_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float    *b = x;
    float           s = 0;
    for (size_t i = 0; i < n; i++)
        s += tfab_f16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_bf16(size_t n, const void *w, const void *x)
{
    const uint16_t *a = w;
    const float    *b = x;
    float           s = 0;
    for (size_t i = 0; i < n; i++)
        s += tfab_bf16_to_f32(a[i]) * b[i];
    return s;
}

static float dot_q8_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q8_0_t *a = w, *b = x;
    float                    s = 0;
    for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
        int32_t acc = 0;
        for (int j = 0; j < TFAB_QK; j++)
            acc += a[blk].qs[j] * b[blk].qs[j];
        s += (float)acc * (tfab_f16_to_f32(a[blk].d) * tfab_f16_to_f32(b[blk].d));
    }
    return s;
}

static float dot_q4_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q4_0_t *a = w;
    const tfab_block_q8_0_t *b = x;
    float                    s = 0;
    for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
        int32_t acc = 0;
        for (int j = 0; j < TFAB_QK / 2; j++) {
            acc += ((a[blk].qs[j] & 0x0f) - 8) * b[blk].qs[j];
            acc += ((a[blk].qs[j] >> 4) - 8) * b[blk].qs[j + TFAB_QK / 2];
        }
        s += (float)acc * (tfab_f16_to_f32(a[blk].d) * tfab_f16_to_f32(b[blk].d));
    }
    return s;
}

/* q8_0 weights x Q8X activations: per block the exact integer sum, then s += (dw * dx) * sum
 * in block order (dw * dx of two halves is exact in f32). */
static float dot_q8x(size_t n, const tfab_block_q8_0_t *a, const uint8_t *xq, const float *xd)
{
    float s = 0;
    for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
        int32_t acc = 0;
        for (int j = 0; j < TFAB_QK; j++)
            acc += a[blk].qs[j] * (xq[blk * TFAB_QK + j] - 128);
        s += (float)acc * (tfab_f16_to_f32(a[blk].d) * xd[blk * 8]);
    }
    return s;
}

TFAB_GEMM_Q8X_BY_DOT(tfab_gemm_q8x_scalar, dot_q8x)

TFAB_GEMM_BY_DOT(gemm_f32, dot_f32, NULL)
TFAB_GEMM_BY_DOT(gemm_f16, dot_f16, NULL)
TFAB_GEMM_BY_DOT(gemm_bf16, dot_bf16, NULL)
TFAB_GEMM_BY_DOT(gemm_q4_0, dot_q4_0, NULL)

void tfab_kern_fill_scalar(tfab_kern_t *k)
{
    k->gemm[TFAB_DTYPE_F32]  = gemm_f32;
    k->gemm[TFAB_DTYPE_F16]  = gemm_f16;
    k->gemm[TFAB_DTYPE_BF16] = gemm_bf16;
    k->gemm[TFAB_DTYPE_Q8_0] = tfab_gemm_q8x_scalar;
    k->gemm[TFAB_DTYPE_Q4_0] = gemm_q4_0;
    k->quantize_q8x          = tfab_quantize_q8x_scalar;
    k->isa                   = TFAB_ISA_SCALAR;
    k->name                  = "scalar";
    k->dot[TFAB_DTYPE_F32]   = dot_f32;
    k->dot[TFAB_DTYPE_F16]   = dot_f16;
    k->dot[TFAB_DTYPE_BF16]  = dot_bf16;
    k->dot[TFAB_DTYPE_Q8_0]  = dot_q8_0;
    k->dot[TFAB_DTYPE_Q4_0]  = dot_q4_0;
}
