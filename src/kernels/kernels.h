/* kernels.h - private compute kernels of the forward pass: dot products per weight type with
 * run-time ISA dispatch, activation quantization, f16/bf16 conversion. */
#ifndef TFAB_KERNELS_H
#define TFAB_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <tfab/gguf.h>

#define TFAB_QK 32 /* elements per q8_0 / q4_0 block */

/* ggml's block layouts (the bytes of GGUF files). d is an IEEE half. */
typedef struct tfab_block_q8_0 {
    uint16_t d;
    int8_t   qs[TFAB_QK];
} tfab_block_q8_0_t;
typedef struct tfab_block_q4_0 {
    uint16_t d;
    uint8_t  qs[TFAB_QK / 2]; /* element j in the low nibble of qs[j], j+16 in the high one */
} tfab_block_q4_0_t;
_Static_assert(sizeof(tfab_block_q8_0_t) == 34, "block_q8_0 is 34 bytes in GGUF");
_Static_assert(sizeof(tfab_block_q4_0_t) == 18, "block_q4_0 is 18 bytes in GGUF");

typedef enum tfab_isa {
    TFAB_ISA_SCALAR = 0,
    TFAB_ISA_AVX2   = 1, /* avx2 + fma + f16c */
    TFAB_ISA_AVX512 = 2, /* avx512f + avx512bw (and the avx2 set); avx512vnni when present */
    TFAB_ISA_COUNT
} tfab_isa_t;

/* What a matmul row needs as its activation: f32 for float weights, q8_0 blocks for quantized
 * weights (as ggml: activations quantized once per matmul, integer dot products). */
typedef enum tfab_act_kind { TFAB_ACT_F32 = 0, TFAB_ACT_Q8_0 = 1 } tfab_act_kind_t;

/* dot(w[0..n), x[0..n)) for one weight row w of the table's type and one activation row x
 * (f32 or q8_0 blocks, per tfab_kern_act_kind). n is a multiple of the type's block size. */
typedef float (*tfab_dot_fn_t)(size_t n, const void *w, const void *x);

/* The same dot for 4 activation rows (x + k * x_stride bytes, k < 4) against one weight row,
 * out[k] bit-identical to dot(n, w, row k): prefill reads and converts each weight once per 4
 * tokens, and decode and prefill logits stay equal. */
typedef void (*tfab_dot4_fn_t)(size_t n, const void *w, const void *x, size_t x_stride, float *out);

typedef struct tfab_kern {
    tfab_isa_t     isa;
    const char    *name;                   /* "scalar", "avx2", "avx512", "avx512vnni" */
    tfab_dot_fn_t  dot[TFAB_DTYPE_COUNT];  /* NULL for types without a kernel */
    tfab_dot4_fn_t dot4[TFAB_DTYPE_COUNT]; /* NULL: call dot per row */
} tfab_kern_t;

/* The kernels of one ISA, or NULL if this CPU lacks it (tfab_cpu_info_query). Thread-safe. */
const tfab_kern_t *tfab_kern_get(tfab_isa_t isa);
/* The best kernels this CPU runs. Never NULL. */
const tfab_kern_t *tfab_kern_best(void);
/* Activation format the dot kernel of type expects. */
tfab_act_kind_t tfab_kern_act_kind(tfab_dtype_t type);
/* 1 if there is a dot kernel for type (f32, f16, bf16, q8_0, q4_0). */
int tfab_kern_supported(tfab_dtype_t type);

/* Quantize n floats (n a multiple of 32) to q8_0 blocks exactly as ggml's quantize_row_q8_0_ref:
 * d = max|x| / 127 stored as f16, q = round(x / d). */
void tfab_quantize_q8_0(const float *x, tfab_block_q8_0_t *y, size_t n);
/* Convert n elements of a row of type to f32 (embedding lookup, small vectors). */
void tfab_dequant_row(tfab_dtype_t type, const void *src, float *dst, size_t n);

/* Per-ISA tables (dot_scalar.c, dot_avx2.c, dot_avx512.c). */
void tfab_kern_fill_scalar(tfab_kern_t *k);
void tfab_kern_fill_avx2(tfab_kern_t *k);
void tfab_kern_fill_avx512(tfab_kern_t *k, int vnni); /* vnni: q8_0/q4_0 use vpdpbusd */

static inline uint32_t tfab_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float tfab_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half -> float, exact (subnormals, inf, NaN). */
static inline float tfab_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24 */
        return sign ? -v : v;
    }
    if (exp == 31)
        return tfab_bits_f32(sign | 0x7f800000u | (mant << 13));
    return tfab_bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* float -> IEEE half, round to nearest even (the FP16 library's branch-free method). */
static inline uint16_t tfab_f32_to_f16(float f)
{
    float    base   = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    uint32_t w      = tfab_f32_bits(f);
    uint32_t shl1_w = w + w;
    uint32_t sign   = w & 0x80000000u;
    uint32_t bias   = shl1_w & 0xff000000u;
    if (bias < 0x71000000u)
        bias = 0x71000000u;
    base          = tfab_bits_f32((bias >> 1) + 0x07800000u) + base;
    uint32_t bits = tfab_f32_bits(base);
    uint32_t expb = (bits >> 13) & 0x00007c00u;
    uint32_t mant = bits & 0x00000fffu;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : expb + mant));
}

static inline float tfab_bf16_to_f32(uint16_t b)
{
    return tfab_bits_f32((uint32_t)b << 16);
}

#endif
