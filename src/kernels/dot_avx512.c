/* dot_avx512.c - AVX-512F/BW dot-product kernels (target attributes, selected at run time):
 * 16 floats or two quant blocks per instruction; weights are streamed once. */
#include <immintrin.h>
#include "kernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx2,fma,f16c")))

AVX512 static float dot_f32(size_t n, const void *w, const void *x)
{
    const float *a = w, *b = x;
    __m512       s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t       i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

AVX512 static inline __m512 ld_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

AVX512 static float dot_f16(size_t n, const void *w, const void *x)
{
    const uint16_t *a  = w;
    const float    *b  = x;
    __m512          s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t          i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(ld_f16(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(ld_f16(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(ld_f16(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(ld_f16(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(ld_f16(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++)
        s += tfab_f16_to_f32(a[i]) * b[i];
    return s;
}

AVX512 static inline __m512 ld_bf16(const uint16_t *p)
{
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

AVX512 static float dot_bf16(size_t n, const void *w, const void *x)
{
    const uint16_t *a  = w;
    const float    *b  = x;
    __m512          s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t          i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(ld_bf16(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(ld_bf16(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(ld_bf16(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(ld_bf16(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(ld_bf16(a + i), _mm512_loadu_ps(b + i), s0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++)
        s += tfab_bf16_to_f32(a[i]) * b[i];
    return s;
}

/* two 32-byte halves (two blocks) into one register */
AVX512 static inline __m512i join(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* int8 products of two blocks, summed to 16 floats (8 per block); exact for |qx| <= 128 */
AVX512 static inline __m512 mul_sum_i8(__m512i qx, __m512i qy)
{
    __m512i ax  = _mm512_abs_epi8(qx);
    __m512i sy  = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), _mm512_setzero_si512(), qy);
    __m512i p16 = _mm512_maddubs_epi16(ax, sy);
    return _mm512_cvtepi32_ps(_mm512_madd_epi16(p16, _mm512_set1_epi16(1)));
}

AVX512 static inline __m512 scales(float d0, float d1)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
}

AVX512 static inline __m256i ld256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

AVX512 static float dot_q8_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q8_0_t *a = w, *b = x;
    size_t                   nb = n / TFAB_QK;
    __m512                   s0 = _mm512_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        __m512 d1 = scales(_cvtsh_ss(a[i + 2].d) * _cvtsh_ss(b[i + 2].d),
                           _cvtsh_ss(a[i + 3].d) * _cvtsh_ss(b[i + 3].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(ld256(a[i].qs), ld256(a[i + 1].qs)),
                                               join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
        s1        = _mm512_fmadd_ps(d1,
                                    mul_sum_i8(join(ld256(a[i + 2].qs), ld256(a[i + 3].qs)),
                                               join(ld256(b[i + 2].qs), ld256(b[i + 3].qs))),
                                    s1);
    }
    for (; i + 2 <= nb; i += 2) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(ld256(a[i].qs), ld256(a[i + 1].qs)),
                                               join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
    }
    if (i < nb) { /* odd block: pair it with zeros */
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d), 0.0f);
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(ld256(a[i].qs), _mm256_setzero_si256()),
                                               join(ld256(b[i].qs), _mm256_setzero_si256())),
                                    s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* q4_0 block -> 32 int8 in [-8, 7] */
AVX512 static inline __m256i unpack_q4(const uint8_t *qs)
{
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    v         = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

AVX512 static float dot_q4_0(size_t n, const void *w, const void *x)
{
    const tfab_block_q4_0_t *a  = w;
    const tfab_block_q8_0_t *b  = x;
    size_t                   nb = n / TFAB_QK;
    __m512                   s0 = _mm512_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        __m512 d1 = scales(_cvtsh_ss(a[i + 2].d) * _cvtsh_ss(b[i + 2].d),
                           _cvtsh_ss(a[i + 3].d) * _cvtsh_ss(b[i + 3].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(unpack_q4(a[i].qs), unpack_q4(a[i + 1].qs)),
                                               join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
        s1        = _mm512_fmadd_ps(d1,
                                    mul_sum_i8(join(unpack_q4(a[i + 2].qs), unpack_q4(a[i + 3].qs)),
                                               join(ld256(b[i + 2].qs), ld256(b[i + 3].qs))),
                                    s1);
    }
    for (; i + 2 <= nb; i += 2) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(unpack_q4(a[i].qs), unpack_q4(a[i + 1].qs)),
                                               join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
    }
    if (i < nb) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d), 0.0f);
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8(join(unpack_q4(a[i].qs), _mm256_setzero_si256()),
                                               join(ld256(b[i].qs), _mm256_setzero_si256())),
                                    s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vnni,avx2,fma,f16c")))

/* as mul_sum_i8 with one VNNI instruction (vpdpbusd) instead of maddubs + madd */
VNNI static inline __m512 mul_sum_i8_vnni(__m512i qx, __m512i qy)
{
    __m512i ax = _mm512_abs_epi8(qx);
    __m512i sy = _mm512_mask_sub_epi8(qy, _mm512_movepi8_mask(qx), _mm512_setzero_si512(), qy);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy));
}

/* dw * dx of 16 consecutive blocks, gathered (strides 18 or 34 bytes) and converted at once:
 * the same products the scalar path computes (exact f16 -> f32, one rounding) */
VNNI static inline __m512 block_scales16(const void *wd, int wstride, const void *xd, int xstride)
{
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512i       gw =
        _mm512_i32gather_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(wstride)), wd, 1);
    __m512i gx =
        _mm512_i32gather_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(xstride)), xd, 1);
    return _mm512_mul_ps(_mm512_cvtph_ps(_mm512_cvtepi32_epi16(gw)),
                         _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gx)));
}

/* lanes 0-7 = scale of block k, lanes 8-15 = block k + 1 */
VNNI static inline __m512 pair_scale(__m512 sc, int k)
{
    __m512i idx = _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32(k), _mm512_set1_epi32(k + 1));
    return _mm512_permutexvar_ps(idx, sc);
}

VNNI static float dot_q8_0_vnni(size_t n, const void *w, const void *x)
{
    const tfab_block_q8_0_t *a = w, *b = x;
    size_t                   nb = n / TFAB_QK;
    __m512                   s0 = _mm512_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 16 <= nb; i += 16) {
        __m512 sc = block_scales16(&a[i].d, sizeof(*a), &b[i].d, sizeof(*b));
        for (int k = 0; k < 16; k += 4) {
            size_t j = i + k;
            s0       = _mm512_fmadd_ps(pair_scale(sc, k),
                                       mul_sum_i8_vnni(join(ld256(a[j].qs), ld256(a[j + 1].qs)),
                                                       join(ld256(b[j].qs), ld256(b[j + 1].qs))),
                                       s0);
            s1       = _mm512_fmadd_ps(pair_scale(sc, k + 2),
                                       mul_sum_i8_vnni(join(ld256(a[j + 2].qs), ld256(a[j + 3].qs)),
                                                       join(ld256(b[j + 2].qs), ld256(b[j + 3].qs))),
                                       s1);
        }
    }
    for (; i + 4 <= nb; i += 4) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        __m512 d1 = scales(_cvtsh_ss(a[i + 2].d) * _cvtsh_ss(b[i + 2].d),
                           _cvtsh_ss(a[i + 3].d) * _cvtsh_ss(b[i + 3].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(ld256(a[i].qs), ld256(a[i + 1].qs)),
                                                    join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
        s1        = _mm512_fmadd_ps(d1,
                                    mul_sum_i8_vnni(join(ld256(a[i + 2].qs), ld256(a[i + 3].qs)),
                                                    join(ld256(b[i + 2].qs), ld256(b[i + 3].qs))),
                                    s1);
    }
    for (; i + 2 <= nb; i += 2) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(ld256(a[i].qs), ld256(a[i + 1].qs)),
                                                    join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
    }
    if (i < nb) { /* odd block: pair it with zeros */
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d), 0.0f);
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(ld256(a[i].qs), _mm256_setzero_si256()),
                                                    join(ld256(b[i].qs), _mm256_setzero_si256())),
                                    s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

VNNI static float dot_q4_0_vnni(size_t n, const void *w, const void *x)
{
    const tfab_block_q4_0_t *a  = w;
    const tfab_block_q8_0_t *b  = x;
    size_t                   nb = n / TFAB_QK;
    __m512                   s0 = _mm512_setzero_ps(), s1 = s0;
    size_t                   i = 0;
    for (; i + 16 <= nb; i += 16) {
        __m512 sc = block_scales16(&a[i].d, sizeof(*a), &b[i].d, sizeof(*b));
        for (int k = 0; k < 16; k += 4) {
            size_t j = i + k;
            s0       = _mm512_fmadd_ps(pair_scale(sc, k),
                                       mul_sum_i8_vnni(join(unpack_q4(a[j].qs), unpack_q4(a[j + 1].qs)),
                                                       join(ld256(b[j].qs), ld256(b[j + 1].qs))),
                                       s0);
            s1       = _mm512_fmadd_ps(
                      pair_scale(sc, k + 2),
                      mul_sum_i8_vnni(join(unpack_q4(a[j + 2].qs), unpack_q4(a[j + 3].qs)),
                                      join(ld256(b[j + 2].qs), ld256(b[j + 3].qs))),
                      s1);
        }
    }
    for (; i + 4 <= nb; i += 4) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        __m512 d1 = scales(_cvtsh_ss(a[i + 2].d) * _cvtsh_ss(b[i + 2].d),
                           _cvtsh_ss(a[i + 3].d) * _cvtsh_ss(b[i + 3].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(unpack_q4(a[i].qs), unpack_q4(a[i + 1].qs)),
                                                    join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
        s1        = _mm512_fmadd_ps(d1,
                                    mul_sum_i8_vnni(join(unpack_q4(a[i + 2].qs), unpack_q4(a[i + 3].qs)),
                                                    join(ld256(b[i + 2].qs), ld256(b[i + 3].qs))),
                                    s1);
    }
    for (; i + 2 <= nb; i += 2) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d),
                           _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[i + 1].d));
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(unpack_q4(a[i].qs), unpack_q4(a[i + 1].qs)),
                                                    join(ld256(b[i].qs), ld256(b[i + 1].qs))),
                                    s0);
    }
    if (i < nb) {
        __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[i].d), 0.0f);
        s0        = _mm512_fmadd_ps(d0,
                                    mul_sum_i8_vnni(join(unpack_q4(a[i].qs), _mm256_setzero_si256()),
                                                    join(ld256(b[i].qs), _mm256_setzero_si256())),
                                    s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* q8_0/q4_0 dot4 (VNNI): each weight pair is loaded, unpacked and sign-split once for the four
 * activation rows; per row the same scales and accumulation order as dot_*_vnni, so the results
 * are bit-identical to four single dots (integer sums are exact either way). */
typedef struct wpair {
    __m512i   ax;  /* |w| */
    __mmask64 neg; /* w < 0 */
} wpair_t;

VNNI static inline wpair_t wsplit(__m512i qw)
{
    return (wpair_t){_mm512_abs_epi8(qw), _mm512_movepi8_mask(qw)};
}

VNNI static inline __m512 mul_sum_split(wpair_t wp, __m512i qy)
{
    __m512i sy = _mm512_mask_sub_epi8(qy, wp.neg, _mm512_setzero_si512(), qy);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wp.ax, sy));
}

#define QDOT4_VNNI(fn, WT, UNP)                                                                    \
    VNNI static void fn(size_t n, const void *w, const void *x, size_t xs, float *out)             \
    {                                                                                              \
        const WT                *a = w;                                                            \
        const tfab_block_q8_0_t *b[4];                                                             \
        __m512                   s0[4], s1[4];                                                     \
        for (int k = 0; k < 4; k++) {                                                              \
            b[k]  = (const tfab_block_q8_0_t *)((const char *)x + k * xs);                         \
            s0[k] = _mm512_setzero_ps();                                                           \
            s1[k] = _mm512_setzero_ps();                                                           \
        }                                                                                          \
        size_t nb = n / TFAB_QK, i = 0;                                                            \
        for (; i + 16 <= nb; i += 16) {                                                            \
            __m512 sc[4];                                                                          \
            for (int k = 0; k < 4; k++)                                                            \
                sc[k] = block_scales16(&a[i].d, sizeof(*a), &b[k][i].d, sizeof(*b[k]));            \
            for (int kk = 0; kk < 16; kk += 4) {                                                   \
                size_t  j   = i + kk;                                                              \
                wpair_t w01 = wsplit(join(UNP(a[j].qs), UNP(a[j + 1].qs)));                        \
                wpair_t w23 = wsplit(join(UNP(a[j + 2].qs), UNP(a[j + 3].qs)));                    \
                for (int k = 0; k < 4; k++) {                                                      \
                    s0[k] = _mm512_fmadd_ps(                                                       \
                        pair_scale(sc[k], kk),                                                     \
                        mul_sum_split(w01, join(ld256(b[k][j].qs), ld256(b[k][j + 1].qs))),        \
                        s0[k]);                                                                    \
                    s1[k] = _mm512_fmadd_ps(                                                       \
                        pair_scale(sc[k], kk + 2),                                                 \
                        mul_sum_split(w23, join(ld256(b[k][j + 2].qs), ld256(b[k][j + 3].qs))),    \
                        s1[k]);                                                                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        for (; i + 4 <= nb; i += 4) {                                                              \
            wpair_t w01 = wsplit(join(UNP(a[i].qs), UNP(a[i + 1].qs)));                            \
            wpair_t w23 = wsplit(join(UNP(a[i + 2].qs), UNP(a[i + 3].qs)));                        \
            for (int k = 0; k < 4; k++) {                                                          \
                __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[k][i].d),                       \
                                   _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[k][i + 1].d));              \
                __m512 d1 = scales(_cvtsh_ss(a[i + 2].d) * _cvtsh_ss(b[k][i + 2].d),               \
                                   _cvtsh_ss(a[i + 3].d) * _cvtsh_ss(b[k][i + 3].d));              \
                s0[k]     = _mm512_fmadd_ps(                                                       \
                        d0, mul_sum_split(w01, join(ld256(b[k][i].qs), ld256(b[k][i + 1].qs))),    \
                        s0[k]);                                                                    \
                s1[k] = _mm512_fmadd_ps(                                                           \
                    d1, mul_sum_split(w23, join(ld256(b[k][i + 2].qs), ld256(b[k][i + 3].qs))),    \
                    s1[k]);                                                                        \
            }                                                                                      \
        }                                                                                          \
        for (; i + 2 <= nb; i += 2) {                                                              \
            wpair_t w01 = wsplit(join(UNP(a[i].qs), UNP(a[i + 1].qs)));                            \
            for (int k = 0; k < 4; k++) {                                                          \
                __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[k][i].d),                       \
                                   _cvtsh_ss(a[i + 1].d) * _cvtsh_ss(b[k][i + 1].d));              \
                s0[k]     = _mm512_fmadd_ps(                                                       \
                        d0, mul_sum_split(w01, join(ld256(b[k][i].qs), ld256(b[k][i + 1].qs))),    \
                        s0[k]);                                                                    \
            }                                                                                      \
        }                                                                                          \
        if (i < nb) {                                                                              \
            wpair_t w0 = wsplit(join(UNP(a[i].qs), _mm256_setzero_si256()));                       \
            for (int k = 0; k < 4; k++) {                                                          \
                __m512 d0 = scales(_cvtsh_ss(a[i].d) * _cvtsh_ss(b[k][i].d), 0.0f);                \
                s0[k]     = _mm512_fmadd_ps(                                                       \
                        d0, mul_sum_split(w0, join(ld256(b[k][i].qs), _mm256_setzero_si256())),    \
                        s0[k]);                                                                    \
            }                                                                                      \
        }                                                                                          \
        for (int k = 0; k < 4; k++)                                                                \
            out[k] = _mm512_reduce_add_ps(_mm512_add_ps(s0[k], s1[k]));                            \
    }

QDOT4_VNNI(dot4_q8_0_vnni, tfab_block_q8_0_t, ld256)
QDOT4_VNNI(dot4_q4_0_vnni, tfab_block_q4_0_t, unpack_q4)

/* dot4 variants: the loops of the dot above with four activation rows per weight load */
#define DOT4_DECL(fn)                                                                              \
    AVX512 static void fn(size_t n, const void *w, const void *x, size_t xs, float *out)
#define DOT4_ROWS                                                                                  \
    const float *b[4];                                                                             \
    __m512       s[4][4];                                                                          \
    for (int k = 0; k < 4; k++) {                                                                  \
        b[k] = (const float *)((const char *)x + k * xs);                                          \
        for (int j = 0; j < 4; j++)                                                                \
            s[k][j] = _mm512_setzero_ps();                                                         \
    }                                                                                              \
    size_t i = 0;
#define DOT4_MAIN(LD)                                                                              \
    for (; i + 64 <= n; i += 64) {                                                                 \
        __m512 w0 = LD(a + i), w1 = LD(a + i + 16), w2 = LD(a + i + 32), w3 = LD(a + i + 48);      \
        for (int k = 0; k < 4; k++) {                                                              \
            s[k][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b[k] + i), s[k][0]);                     \
            s[k][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(b[k] + i + 16), s[k][1]);                \
            s[k][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(b[k] + i + 32), s[k][2]);                \
            s[k][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(b[k] + i + 48), s[k][3]);                \
        }                                                                                          \
    }                                                                                              \
    for (; i + 16 <= n; i += 16) {                                                                 \
        __m512 w0 = LD(a + i);                                                                     \
        for (int k = 0; k < 4; k++)                                                                \
            s[k][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(b[k] + i), s[k][0]);                     \
    }

AVX512 static inline __m512 ld_f32(const float *p)
{
    return _mm512_loadu_ps(p);
}

DOT4_DECL(dot4_f32)
{
    const float *a = w;
    DOT4_ROWS
    DOT4_MAIN(ld_f32)
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    for (int k = 0; k < 4; k++) {
        if (i < n)
            s[k][1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i),
                                      _mm512_maskz_loadu_ps(m, b[k] + i), s[k][1]);
        out[k] = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[k][0], s[k][1]), _mm512_add_ps(s[k][2], s[k][3])));
    }
}

DOT4_DECL(dot4_f16)
{
    const uint16_t *a = w;
    DOT4_ROWS
    DOT4_MAIN(ld_f16)
    for (int k = 0; k < 4; k++) {
        float r = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[k][0], s[k][1]), _mm512_add_ps(s[k][2], s[k][3])));
        for (size_t j = i; j < n; j++)
            r += tfab_f16_to_f32(a[j]) * b[k][j];
        out[k] = r;
    }
}

DOT4_DECL(dot4_bf16)
{
    const uint16_t *a = w;
    DOT4_ROWS
    DOT4_MAIN(ld_bf16)
    for (int k = 0; k < 4; k++) {
        float r = _mm512_reduce_add_ps(
            _mm512_add_ps(_mm512_add_ps(s[k][0], s[k][1]), _mm512_add_ps(s[k][2], s[k][3])));
        for (size_t j = i; j < n; j++)
            r += tfab_bf16_to_f32(a[j]) * b[k][j];
        out[k] = r;
    }
}

TFAB_GEMM_BY_DOT(gemm_q4_0, dot_q4_0, NULL)
TFAB_GEMM_BY_DOT(gemm_q4_0_vnni, dot_q4_0_vnni, dot4_q4_0_vnni)

void tfab_kern_fill_avx512(tfab_kern_t *k, int vnni)
{
    k->isa                   = TFAB_ISA_AVX512;
    k->name                  = "avx512";
    k->dot[TFAB_DTYPE_F32]   = dot_f32;
    k->dot[TFAB_DTYPE_F16]   = dot_f16;
    k->dot[TFAB_DTYPE_BF16]  = dot_bf16;
    k->dot[TFAB_DTYPE_Q8_0]  = dot_q8_0;
    k->dot[TFAB_DTYPE_Q4_0]  = dot_q4_0;
    k->dot4[TFAB_DTYPE_F32]  = dot4_f32;
    k->dot4[TFAB_DTYPE_F16]  = dot4_f16;
    k->dot4[TFAB_DTYPE_BF16] = dot4_bf16;
    k->dot4[TFAB_DTYPE_Q8_0] = NULL; /* no dot4 pairs with the non-VNNI dots */
    k->dot4[TFAB_DTYPE_Q4_0] = NULL;
    if (vnni) {
        k->name                  = "avx512vnni";
        k->dot[TFAB_DTYPE_Q8_0]  = dot_q8_0_vnni;
        k->dot[TFAB_DTYPE_Q4_0]  = dot_q4_0_vnni;
        k->dot4[TFAB_DTYPE_Q8_0] = dot4_q8_0_vnni;
        k->dot4[TFAB_DTYPE_Q4_0] = dot4_q4_0_vnni;
    }
    k->gemm[TFAB_DTYPE_Q4_0] = vnni ? gemm_q4_0_vnni : gemm_q4_0;
    tfab_kern_fill_gemm_avx512(k, vnni);
}
