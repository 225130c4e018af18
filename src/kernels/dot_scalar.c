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

void tfab_kern_fill_scalar(tfab_kern_t *k)
{
    k->isa                  = TFAB_ISA_SCALAR;
    k->name                 = "scalar";
    k->dot[TFAB_DTYPE_F32]  = dot_f32;
    k->dot[TFAB_DTYPE_F16]  = dot_f16;
    k->dot[TFAB_DTYPE_BF16] = dot_bf16;
    k->dot[TFAB_DTYPE_Q8_0] = dot_q8_0;
    k->dot[TFAB_DTYPE_Q4_0] = dot_q4_0;
}
