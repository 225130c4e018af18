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
 * weights (as ggml: activations quantized once per matmul, integer dot products).
 * TFAB_ACT_Q8X is the gemm's layout of the same q8_0 values for q8_0 weights, one row of n
 * elements (n a multiple of 32) in tfab_act_row_bytes(TFAB_ACT_Q8X, n) = 2 * np bytes, np = n
 * rounded up to 64: uint8 q + 128 [np] (padding 128, i.e. q = 0), then float scales [np / 32][8]
 * (each block's f16 scale as f32, repeated 8 times; padding 0) so one 64-byte load gives the
 * values and one the scales of two blocks. */
typedef enum tfab_act_kind {
    TFAB_ACT_F32  = 0,
    TFAB_ACT_Q8_0 = 1,
    TFAB_ACT_Q8X  = 2,
} tfab_act_kind_t;

/* np of a Q8X row of n elements: n rounded up to 64 (the values, then the scales, each np wide) */
static inline size_t tfab_q8x_np(size_t n)
{
    return (n + 63) / 64 * 64;
}

/* dot(w[0..n), x[0..n)) for one weight row w of the table's type and one activation row x
 * (f32 or q8_0 blocks, per tfab_kern_act_kind). n is a multiple of the type's block size. */
typedef float (*tfab_dot_fn_t)(size_t n, const void *w, const void *x);

/* The same dot for 4 activation rows (x + k * x_stride bytes, k < 4) against one weight row,
 * out[k] bit-identical to dot(n, w, row k): prefill reads and converts each weight once per 4
 * tokens, and decode and prefill logits stay equal. */
typedef void (*tfab_dot4_fn_t)(size_t n, const void *w, const void *x, size_t x_stride, float *out);

/* One block of a matmul: out[t * out_ld + r] = w row r . x row t for r < rows, t < n_tok.
 * w rows are w_stride bytes apart, x rows (of the type's tfab_kern_gemm_act format) x_stride
 * bytes apart. The contract the forward pass is built on: every output element is computed
 * with one fixed order of operations that depends only on n, its weight row and its
 * activation row - never on rows, n_tok, the position of the row or token in the block, or
 * how a caller splits a matmul into blocks - so a token's logits are bit-identical whatever
 * batch it is in and whatever the thread count. Not bit-identical to dot (or across ISAs). */
typedef struct tfab_gemm_args {
    size_t      n; /* elements per row, a multiple of the type's block size */
    const void *w;
    size_t      w_stride;
    uint32_t    rows;
    const void *x;
    size_t      x_stride;
    uint32_t    n_tok;
    float      *out;
    size_t      out_ld; /* floats between the output rows of two tokens */
} tfab_gemm_args_t;
typedef void (*tfab_gemm_fn_t)(const tfab_gemm_args_t *a);

typedef struct tfab_kern {
    tfab_isa_t     isa;
    const char    *name;                   /* "scalar", "avx2", "avx512", "avx512vnni" */
    tfab_dot_fn_t  dot[TFAB_DTYPE_COUNT];  /* NULL for types without a kernel */
    tfab_dot4_fn_t dot4[TFAB_DTYPE_COUNT]; /* NULL: call dot per row */
    tfab_gemm_fn_t gemm[TFAB_DTYPE_COUNT]; /* matmul blocks, activations per tfab_kern_gemm_act */
    /* n floats -> one Q8X row (tfab_quantize_act's Q8X case; bit-identical on every ISA) */
    void (*quantize_q8x)(const float *x, void *dst, size_t n);
} tfab_kern_t;

/* The kernels of one ISA, or NULL if this CPU lacks it (tfab_cpu_info_query). Thread-safe. */
const tfab_kern_t *tfab_kern_get(tfab_isa_t isa);
/* The best kernels this CPU runs. Never NULL. */
const tfab_kern_t *tfab_kern_best(void);
/* Activation format the dot kernel of type expects. */
tfab_act_kind_t tfab_kern_act_kind(tfab_dtype_t type);
/* Activation format the gemm kernel of type expects (the same for every ISA). */
tfab_act_kind_t tfab_kern_gemm_act(tfab_dtype_t type);
/* Bytes of one activation row of n elements in format kind: a 64-byte multiple for Q8X and
 * F32 (F32 rows padded by 64 bytes: tokens a multiple of 4 KiB apart slow the gemm down). */
size_t tfab_act_row_bytes(tfab_act_kind_t kind, size_t n);
/* Convert n floats to activation format kind (F32: copy; Q8_0: tfab_quantize_q8_0; Q8X: the
 * same values in the gemm layout). dst holds tfab_act_row_bytes(kind, n) bytes. */
void tfab_quantize_act(tfab_act_kind_t kind, const float *x, void *dst, size_t n);
/* 1 if there is a dot kernel for type (f32, f16, bf16, q8_0, q4_0). */
int tfab_kern_supported(tfab_dtype_t type);

/* Quantize n floats (n a multiple of 32) to q8_0 blocks as llama.cpp quantizes activations on
 * x86 (its SIMD quantize_row_q8_0, not the _ref one): d = max|x| / 127 stored as f16,
 * q = x * (127 / max|x|) rounded half to even, so q8_0/q4_0 results track the peer's. Needs
 * the default rounding mode. */
void tfab_quantize_q8_0(const float *x, tfab_block_q8_0_t *y, size_t n);
/* Convert n elements of a row of type to f32 (embedding lookup, small vectors). */
void tfab_dequant_row(tfab_dtype_t type, const void *src, float *dst, size_t n);

/* Per-ISA tables (dot_scalar.c, dot_avx2.c, dot_avx512.c). */
void tfab_kern_fill_scalar(tfab_kern_t *k);
void tfab_kern_fill_avx2(tfab_kern_t *k);
void tfab_kern_fill_avx512(tfab_kern_t *k, int vnni);      /* vnni: q8_0/q4_0 use vpdpbusd */
void tfab_kern_fill_gemm_avx512(tfab_kern_t *k, int vnni); /* gemm_avx512.c */

/* A gemm that calls dot (and dot4 for groups of four tokens, bit-identical to dot) per output:
 * for ISAs and types without a blocked kernel. Expands to a static function named fn. */
#define TFAB_GEMM_BY_DOT(fn, dotfn, dot4fn)                                                        \
    static void fn(const tfab_gemm_args_t *a)                                                      \
    {                                                                                              \
        tfab_dot4_fn_t d4 = dot4fn;                                                                \
        for (uint32_t r = 0; r < a->rows; r++) {                                                   \
            const uint8_t *row = (const uint8_t *)a->w + (size_t)r * a->w_stride;                  \
            const uint8_t *x   = (const uint8_t *)a->x;                                            \
            uint32_t       t   = 0;                                                                \
            if (d4)                                                                                \
                for (; t + 4 <= a->n_tok; t += 4) {                                                \
                    float res[4];                                                                  \
                    d4(a->n, row, x + (size_t)t * a->x_stride, a->x_stride, res);                  \
                    for (int k = 0; k < 4; k++)                                                    \
                        a->out[(size_t)(t + k) * a->out_ld + r] = res[k];                          \
                }                                                                                  \
            for (; t < a->n_tok; t++)                                                              \
                a->out[(size_t)t * a->out_ld + r] = dotfn(a->n, row, x + (size_t)t * a->x_stride); \
        }                                                                                          \
    }

/* The same for q8_0 weights and Q8X activations: dotfn(n, weight row, values, scales) per
 * output, the values and scales of a row np = tfab_q8x_np(n) bytes apart. */
#define TFAB_GEMM_Q8X_BY_DOT(fn, dotfn)                                                            \
    void fn(const tfab_gemm_args_t *a)                                                             \
    {                                                                                              \
        size_t np = tfab_q8x_np(a->n);                                                             \
        for (uint32_t t = 0; t < a->n_tok; t++) {                                                  \
            const uint8_t *xq = (const uint8_t *)a->x + (size_t)t * a->x_stride;                   \
            for (uint32_t r = 0; r < a->rows; r++) {                                               \
                const void *row = (const uint8_t *)a->w + (size_t)r * a->w_stride;                 \
                a->out[(size_t)t * a->out_ld + r] = dotfn(a->n, row, xq, (const float *)(xq + np)); \
            }                                                                                      \
        }                                                                                          \
    }

/* The portable Q8X quantization (convert.c), the reference of the SIMD ones. */
void tfab_quantize_q8x_scalar(const float *x, void *dst, size_t n);
/* Per-ISA gemm kernels of q8_0 weights with Q8X activations (gemm_*.c). */
void tfab_gemm_q8x_scalar(const tfab_gemm_args_t *a);
void tfab_gemm_q8x_avx2(const tfab_gemm_args_t *a);

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
