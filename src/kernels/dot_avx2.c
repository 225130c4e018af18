/* dot_avx2.c - AVX2/FMA/F16C dot-product kernels (compiled with target attributes, selected at
 * run time): weights are streamed once, four accumulators hide FMA latency. */
#include <immintrin.h>
#include "kernels.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s        = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s        = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static float dot_f32(size_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    __m256       s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t       i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

AVX2 static inline __m256 ld_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AVX2 static float dot_f16(size_t n, const void *w, const void *x)
{
    const uint16_t *a  = w;
    const float    *b  = x;
    __m256          s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t          i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_f16(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(ld_f16(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(ld_f16(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(ld_f16(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(ld_f16(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += tfab_f16_to_f32(a[i]) * b[i];
    return s;
}

AVX2 static inline __m256 ld_bf16(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static float dot_bf16(size_t n, const void *w, const void *x)
{
    const uint16_t *a  = w;
    const float    *b  = x;
    __m256          s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t          i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_bf16(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(ld_bf16(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(ld_bf16(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(ld_bf16(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(ld_bf16(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += tfab_bf16_to_f32(a[i]) * b[i];
    return s;
}

/* sum of the 32 int8 products of qx and qy as 8 int32 lanes (|qx| <= 128 keeps maddubs exact) */
AVX2 static inline __m256 mul_sum_i8(__m256i qx, __m256i qy)
{
    __m256i ax  = _mm256_sign_epi8(qx, qx);
    __m256i sy  = _mm256_sign_epi8(qy, qx);
    __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

AVX2 static float dot_q8_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q8_0_t *a = w, *b = x;
    size_t                   nb = n / TFAB_QK;
    __m256                   s0 = _mm256_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        __m256 d1 = _mm256_set1_ps(_cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm256_fmadd_ps(d0,
                                    mul_sum_i8(_mm256_loadu_si256((const __m256i *)a[i].qs),
                                               _mm256_loadu_si256((const __m256i *)b[i].qs)),
                                    s0);
        s1        = _mm256_fmadd_ps(d1,
                                    mul_sum_i8(_mm256_loadu_si256((const __m256i *)a[i + 1].qs),
                                               _mm256_loadu_si256((const __m256i *)b[i + 1].qs)),
                                    s1);
    }
    for (; i < nb; i++) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        s0        = _mm256_fmadd_ps(d0,
                                    mul_sum_i8(_mm256_loadu_si256((const __m256i *)a[i].qs),
                                               _mm256_loadu_si256((const __m256i *)b[i].qs)),
                                    s0);
    }
    return hsum256(_mm256_add_ps(s0, s1));
}

AVX2 static inline __m256i unpack_q4(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    v         = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

AVX2 static float dot_q4_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q4_0_t *a  = w;
    const tfab_block_q8_0_t *b  = x;
    size_t                   nb = n / TFAB_QK;
    __m256                   s0 = _mm256_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 2 <= nb; i += 2) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        __m256 d1 = _mm256_set1_ps(_cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm256_fmadd_ps(
                   d0, mul_sum_i8(unpack_q4(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs)), s0);
        s1 = _mm256_fmadd_ps(
            d1,
            mul_sum_i8(unpack_q4(a[i + 1].qs), _mm256_loadu_si256((const __m256i *)b[i + 1].qs)),
            s1);
    }
    for (; i < nb; i++) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d));
        s0        = _mm256_fmadd_ps(
                   d0, mul_sum_i8(unpack_q4(a[i].qs), _mm256_loadu_si256((const __m256i *)b[i].qs)), s0);
    }
    return hsum256(_mm256_add_ps(s0, s1));
}

/* q8_0 weights x Q8X activations: one 8-lane accumulator per output, blocks in order */
AVX2 static float dot_q8x(size_t n, const tfab_block_q8_0_t *a, const uint8_t *xq, const float *xd)
{
    __m256 s = _mm256_setzero_ps();
    for (size_t i = 0; i < n / TFAB_QK; i++) {
        __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(xq + i * TFAB_QK)),
                                     _mm256_set1_epi8((char)0x80));
        __m256  d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(a[i].d)), _mm256_loadu_ps(xd + i * 8));
        s = _mm256_fmadd_ps(d, mul_sum_i8(_mm256_loadu_si256((const __m256i *)a[i].qs), x), s);
    }
    return hsum256(s);
}

AVX2 TFAB_GEMM_Q8X_BY_DOT(tfab_gemm_q8x_avx2, dot_q8x)

TFAB_GEMM_BY_DOT(gemm_f32, dot_f32, NULL)
TFAB_GEMM_BY_DOT(gemm_f16, dot_f16, NULL)
TFAB_GEMM_BY_DOT(gemm_bf16, dot_bf16, NULL)
TFAB_GEMM_BY_DOT(gemm_q4_0, dot_q4_0, NULL)

void tfab_kern_fill_avx2(tfab_kern_t *k)
{
    k->gemm[TFAB_DTYPE_F32]  = gemm_f32;
    k->gemm[TFAB_DTYPE_F16]  = gemm_f16;
    k->gemm[TFAB_DTYPE_BF16] = gemm_bf16;
    k->gemm[TFAB_DTYPE_Q8_0] = tfab_gemm_q8x_avx2;
    k->gemm[TFAB_DTYPE_Q4_0] = gemm_q4_0;
    k->isa                   = TFAB_ISA_AVX2;
    k->name                  = "avx2";
    k->dot[TFAB_DTYPE_F32]   = dot_f32;
    k->dot[TFAB_DTYPE_F16]   = dot_f16;
    k->dot[TFAB_DTYPE_BF16]  = dot_bf16;
    k->dot[TFAB_DTYPE_Q8_0]  = dot_q8_0;
    k->dot[TFAB_DTYPE_Q4_0]  = dot_q4_0;
}
