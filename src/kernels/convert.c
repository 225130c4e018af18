/* convert.c - activation quantization to q8_0 and row conversion of weights to f32. */
#include <math.h>
#include "kernels.h"

void tfab_quantize_q8_0(const float *x, tfab_block_q8_0_t *y, size_t n)
{
    for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
        const float *v    = x + blk * TFAB_QK;
        float        amax = 0.0f;
        for (int j = 0; j < TFAB_QK; j++)
            amax = fmaxf(amax, fabsf(v[j]));
        float d  = amax / 127.0f;
        float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[blk].d = tfab_f32_to_f16(d);
        for (int j = 0; j < TFAB_QK; j++) /* round half to even, as vroundps does */
            y[blk].qs[j] = (int8_t)nearbyintf(v[j] * id);
    }
}

void tfab_dequant_row(tfab_dtype_t type, const void *src, float *dst, size_t n)
{
    switch (type) {
    case TFAB_DTYPE_F32:
        memcpy(dst, src, n * sizeof(float));
        break;
    case TFAB_DTYPE_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = tfab_f16_to_f32(((const uint16_t *)src)[i]);
        break;
    case TFAB_DTYPE_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = tfab_bf16_to_f32(((const uint16_t *)src)[i]);
        break;
    case TFAB_DTYPE_Q8_0: {
        const tfab_block_q8_0_t *b = src;
        for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
            float d = tfab_f16_to_f32(b[blk].d);
            for (int j = 0; j < TFAB_QK; j++)
                dst[blk * TFAB_QK + j] = (float)b[blk].qs[j] * d;
        }
        break;
    }
    case TFAB_DTYPE_Q4_0: {
        const tfab_block_q4_0_t *b = src;
        for (size_t blk = 0; blk < n / TFAB_QK; blk++) {
            float d = tfab_f16_to_f32(b[blk].d);
            for (int j = 0; j < TFAB_QK / 2; j++) {
                dst[blk * TFAB_QK + j]               = (float)((b[blk].qs[j] & 0x0f) - 8) * d;
                dst[blk * TFAB_QK + j + TFAB_QK / 2] = (float)((b[blk].qs[j] >> 4) - 8) * d;
            }
        }
        break;
    }
    default:
        memset(dst, 0, n * sizeof(float)); /* callers check tfab_kern_supported first */
        break;
    }
}

void tfab_quantize_q8x_scalar(const float *x, void *dst, size_t n)
{
    size_t   np = tfab_q8x_np(n);
    uint8_t *q  = dst;
    float   *d  = (float *)(q + np);
    for (size_t blk = 0; blk < np / TFAB_QK; blk++) {
        tfab_block_q8_0_t b = {0};
        if (blk < n / TFAB_QK)
            tfab_quantize_q8_0(x + blk * TFAB_QK, &b, TFAB_QK);
        float df = tfab_f16_to_f32(b.d);
        for (int j = 0; j < TFAB_QK; j++)
            q[blk * TFAB_QK + j] = (uint8_t)(b.qs[j] + 128);
        for (int j = 0; j < 8; j++)
            d[blk * 8 + j] = df;
    }
}

size_t tfab_act_row_bytes(tfab_act_kind_t kind, size_t n)
{
    switch (kind) {
    case TFAB_ACT_Q8_0:
        return n / TFAB_QK * sizeof(tfab_block_q8_0_t);
    case TFAB_ACT_Q8X:
        return 2 * tfab_q8x_np(n);
    default: /* rows 64-byte aligned and never a multiple of 4 KiB apart (L1 4K aliasing) */
        return (n * sizeof(float) + 63) / 64 * 64 + 64;
    }
}

void tfab_quantize_act(tfab_act_kind_t kind, const float *x, void *dst, size_t n)
{
    switch (kind) {
    case TFAB_ACT_Q8_0:
        tfab_quantize_q8_0(x, dst, n);
        break;
    case TFAB_ACT_Q8X:
        tfab_kern_best()->quantize_q8x(x, dst, n);
        break;
    default:
        memcpy(dst, x, n * sizeof(float));
        break;
    }
}
