/* gemm_avx512.c - blocked matmul kernels for AVX-512: a register tile of up to 4 weight rows x
 * 6 tokens (f32/f16/bf16) or 4 x 4 (q8_0, VNNI) reads and converts each weight vector once per
 * tile and each activation vector once per weight-row group; k is cut into panels that keep a
 * block of activations in L2; decode (1-2 tokens) streams one weight row at a time.
 *
 * The fixed order of every output element (what makes results batch-invariant, see
 * tfab_gemm_args_t). Float types: two 16-lane accumulator chains per (row, token); 16-element
 * step s of k does chain[s % 2] = fma(w, x, chain[s % 2]) (the last partial step with
 * zero-masked loads); the result is _mm512_reduce_add_ps(chain[0] + chain[1]). Two chains: a
 * streaming row needs more than one FMA chain in flight to read at memory speed, and the tile
 * runs its chains one after the other (one live register per output) for only a few percent.
 * q8_0: one chain; step p covers blocks 2p, 2p + 1 (lanes 0-7, 8-15; a missing last block as
 * zeros) with acc = fma(dw * dx, float(exact int32 sums of 4 products), acc); then
 * _mm512_reduce_add_ps. The tile shape, the panels and the caller's split only choose which
 * register holds an accumulator, never the operations applied to it. */
#include <immintrin.h>
#include "kernels.h"

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define VNNI   __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INLINE inline __attribute__((always_inline))

#define KC 512 /* k elements per panel: 6 tokens (12 KiB) + 16 f16 rows (16 KiB) stay in L1 */
#define TB 48  /* tokens per block (multiple of the tile widths 6 and 4) */
#define RB 16  /* weight rows per block */

static INLINE size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- f32 / f16 / bf16 weights, f32 activations ------------------------------------------- */

typedef enum wkind { W_F32, W_F16, W_BF16 } wkind_t;

AVX512 static INLINE __m512 ldw(wkind_t wk, const void *row, size_t i)
{
    if (wk == W_F32)
        return _mm512_loadu_ps((const float *)row + i);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i));
    if (wk == W_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AVX512 static INLINE __m512 ldw_mask(wkind_t wk, const void *row, size_t i, __mmask16 m)
{
    if (wk == W_F32)
        return _mm512_maskz_loadu_ps(m, (const float *)row + i);
    __m256i h = _mm256_maskz_loadu_epi16(m, (const uint16_t *)row + i);
    if (wk == W_F16)
        return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

#ifndef NA
#define NA 2 /* accumulator chains per output: 16-element step s of k goes to chain s % NA */
#endif

/* acc[(r * TB + t) * NA + h] += w row r . x row t over [k0, k1) (k0 a multiple of 16 * NA) for
 * an R x T tile, one chain after the other: one live register per output, each weight vector
 * converted once per T tokens */
AVX512 static INLINE void ftile(wkind_t wk, int R, int T, const uint8_t *w, size_t ws,
                                const float *x, size_t xs, size_t k0, size_t k1, __m512 *acc)
{
    for (int h = 0; h < NA; h++) {
        __m512 c[4][6];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++)
                c[r][t] = acc[(r * TB + t) * NA + h];
        size_t k = k0 + 16 * h;
        for (; k + 16 <= k1; k += 16 * NA) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                wv[r] = ldw(wk, w + r * ws, k);
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) {
                __m512 xv = _mm512_loadu_ps(x + t * xs + k);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    c[r][t] = _mm512_fmadd_ps(wv[r], xv, c[r][t]);
            }
        }
        if (k < k1) { /* the partial last step of the row (it is on this chain) */
            __mmask16 m = (__mmask16)((1u << (k1 - k)) - 1);
            __m512    wv[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                wv[r] = ldw_mask(wk, w + r * ws, k, m);
#pragma GCC unroll 6
            for (int t = 0; t < T; t++) {
                __m512 xv = _mm512_maskz_loadu_ps(m, x + t * xs + k);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    c[r][t] = _mm512_fmadd_ps(wv[r], xv, c[r][t]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
#pragma GCC unroll 6
            for (int t = 0; t < T; t++)
                acc[(r * TB + t) * NA + h] = c[r][t];
    }
}

/* the fixed sum of an output's chains */
AVX512 static INLINE float fsum(const __m512 *c)
{
    __m512 s = c[0];
    for (int h = 1; h < NA; h++)
        s = _mm512_add_ps(s, c[h]);
    return _mm512_reduce_add_ps(s);
}

/* one token tile (T = 1..6 tokens) across the nr rows of a block, in groups of 4 rows: the
 * tile's activations (T x KC floats) and the block's weight panel stay in L1 */
AVX512 static INLINE void fcol(wkind_t wk, int T, const uint8_t *w, size_t ws, uint32_t nr,
                               const float *x, size_t xs, size_t k0, size_t k1, __m512 *acc)
{
    uint32_t r = 0;
    for (; r + 4 <= nr; r += 4)
        ftile(wk, 4, T, w + r * ws, ws, x, xs, k0, k1, acc + r * TB * NA);
    for (; r < nr; r++)
        ftile(wk, 1, T, w + r * ws, ws, x, xs, k0, k1, acc + r * TB * NA);
}

/* decode: one weight row streamed front to back against T (1 or 2) tokens, all NA chains in
 * flight (no k panels: a few activation rows stay in L1 anyway); the operations of ftile */
AVX512 static INLINE void fstream(wkind_t wk, int T, const uint8_t *w, size_t n, const float *x,
                                  size_t xs, float *out, size_t out_ld)
{
    __m512 c[2][NA];
#pragma GCC unroll 2
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int h = 0; h < NA; h++)
            c[t][h] = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 16 * NA <= n; k += 16 * NA)
#pragma GCC unroll 4
        for (int h = 0; h < NA; h++) {
            __m512 wv = ldw(wk, w, k + 16 * h);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++)
                c[t][h] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + t * xs + k + 16 * h), c[t][h]);
        }
    for (int h = 0; k < n; k += 16, h++) { /* the last steps, on chains 0, 1, ... */
        __mmask16 m  = n - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - k)) - 1);
        __m512    wv = ldw_mask(wk, w, k, m);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            c[t][h] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + t * xs + k), c[t][h]);
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; t++)
        out[t * out_ld] = fsum(c[t]);
}

AVX512 static INLINE void fgemm(wkind_t wk, const tfab_gemm_args_t *a)
{
    const size_t xs = a->x_stride / sizeof(float);
    const float *x  = a->x;
    if (a->n_tok <= 2) {
        /* one row at a time: two or four rows side by side read memory at half the speed here */
        for (uint32_t r = 0; r < a->rows; r++) {
            const uint8_t *w = (const uint8_t *)a->w + (size_t)r * a->w_stride;
            if (a->n_tok == 2)
                fstream(wk, 2, w, a->n, x, xs, a->out + r, a->out_ld);
            else
                fstream(wk, 1, w, a->n, x, xs, a->out + r, a->out_ld);
        }
        return;
    }
    __m512 acc[RB * TB * NA]; /* [row][token][chain] accumulators, 48 KiB per chain */
    for (uint32_t t0 = 0; t0 < a->n_tok; t0 += TB) {
        uint32_t nt = (uint32_t)min_sz(TB, a->n_tok - t0);
        x           = (const float *)((const uint8_t *)a->x + (size_t)t0 * a->x_stride);
        for (uint32_t r0 = 0; r0 < a->rows; r0 += RB) {
            uint32_t       nr = (uint32_t)min_sz(RB, a->rows - r0);
            const uint8_t *w  = (const uint8_t *)a->w + (size_t)r0 * a->w_stride;
            for (uint32_t r = 0; r < nr; r++)
                for (uint32_t i = 0; i < nt * NA; i++)
                    acc[r * TB * NA + i] = _mm512_setzero_ps();
            for (size_t k0 = 0; k0 < a->n; k0 += KC) {
                size_t   k1 = min_sz(a->n, k0 + KC);
                uint32_t t  = 0;
                for (; t + 6 <= nt; t += 6)
                    fcol(wk, 6, w, a->w_stride, nr, x + t * xs, xs, k0, k1, acc + t * NA);
                const float *xt = x + t * xs;
                __m512      *at = acc + t * NA;
                switch (nt - t) {
                case 5:
                    fcol(wk, 5, w, a->w_stride, nr, xt, xs, k0, k1, at);
                    break;
                case 4:
                    fcol(wk, 4, w, a->w_stride, nr, xt, xs, k0, k1, at);
                    break;
                case 3:
                    fcol(wk, 3, w, a->w_stride, nr, xt, xs, k0, k1, at);
                    break;
                case 2:
                    fcol(wk, 2, w, a->w_stride, nr, xt, xs, k0, k1, at);
                    break;
                case 1:
                    fcol(wk, 1, w, a->w_stride, nr, xt, xs, k0, k1, at);
                    break;
                default:
                    break;
                }
            }
            for (uint32_t t = 0; t < nt; t++)
                for (uint32_t r = 0; r < nr; r++)
                    a->out[(size_t)(t0 + t) * a->out_ld + r0 + r] = fsum(acc + (r * TB + t) * NA);
        }
    }
}

AVX512 static void gemm_f32(const tfab_gemm_args_t *a)
{
    fgemm(W_F32, a);
}
AVX512 static void gemm_f16(const tfab_gemm_args_t *a)
{
    fgemm(W_F16, a);
}
AVX512 static void gemm_bf16(const tfab_gemm_args_t *a)
{
    fgemm(W_BF16, a);
}

/* ---- q8_0 weights, Q8X activations (VNNI) -------------------------------------------------- */

#define KCB 32 /* q8_0 blocks per panel (even) */

VNNI static INLINE __m256i ld256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* dw of blocks j and j + 1 of a row as lanes 0-7 and 8-15 (a missing j + 1 as 0) */
VNNI static INLINE __m512 dw_pair(const tfab_block_q8_0_t *b, int two)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(_cvtsh_ss(b[0].d)),
                                _mm512_set1_ps(two ? _cvtsh_ss(b[1].d) : 0.0f));
}

/* acc[r * TB + t] over block pairs [j0, j1) (j0 even) of rows with nb blocks each */
VNNI static INLINE void qtile(int R, int T, const uint8_t *w, size_t ws, const uint8_t *x,
                              size_t xs, size_t np, size_t nb, size_t j0, size_t j1, __m512 *acc)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512        c[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            c[r][t] = acc[r * TB + t];
    for (size_t j = j0; j < j1; j += 2) {
        int     two = j + 1 < nb;
        __m512i wv[4], nc[4];
        __m512  dw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const tfab_block_q8_0_t *b  = (const tfab_block_q8_0_t *)(w + r * ws) + j;
            __m256i                  hi = two ? ld256(b[1].qs) : _mm256_setzero_si256();
            wv[r] = _mm512_inserti64x4(_mm512_castsi256_si512(ld256(b[0].qs)), hi, 1);
            /* x is stored as q + 128: subtract 128 * sum(w) per lane, exactly */
            nc[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wv[r]));
            dw[r] = dw_pair(b, two);
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const uint8_t *xt = x + t * xs;
            __m512i        xv = _mm512_loadu_si512(xt + j * TFAB_QK);
            __m512         dx = _mm512_loadu_ps((const float *)(xt + np) + j * 8);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i s = _mm512_dpbusd_epi32(nc[r], xv, wv[r]);
                c[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw[r], dx), _mm512_cvtepi32_ps(s), c[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r * TB + t] = c[r][t];
}

VNNI static INLINE void qrow(int R, const uint8_t *w, size_t ws, const uint8_t *x, size_t xs,
                             size_t np, size_t nb, uint32_t nt, size_t j0, size_t j1, __m512 *acc)
{
    uint32_t t = 0;
    for (; t + 4 <= nt; t += 4)
        qtile(R, 4, w, ws, x + t * xs, xs, np, nb, j0, j1, acc + t);
    switch (nt - t) {
    case 3:
        qtile(R, 3, w, ws, x + t * xs, xs, np, nb, j0, j1, acc + t);
        break;
    case 2:
        qtile(R, 2, w, ws, x + t * xs, xs, np, nb, j0, j1, acc + t);
        break;
    case 1:
        qtile(R, 1, w, ws, x + t * xs, xs, np, nb, j0, j1, acc + t);
        break;
    default:
        break;
    }
}

/* decode: one weight row streamed front to back against T (1 or 2) tokens, the operations of
 * qtile per output; the weight scales of 16 blocks are gathered and converted at once */
VNNI static INLINE void qstream(int T, const tfab_block_q8_0_t *b, size_t nb, const uint8_t *x,
                                size_t xs, size_t np, float *out, size_t out_ld)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const __m512i offs =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32((int)sizeof(*b)));
    __m512 c[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
    size_t j    = 0;
    for (; j + 16 <= nb; j += 16) {
        __m512 d16 =
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_i32gather_epi32(offs, &b[j].d, 1)));
#pragma GCC unroll 8
        for (int p = 0; p < 16; p += 2) {
            __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(ld256(b[j + p].qs)),
                                            ld256(b[j + p + 1].qs), 1);
            __m512i nc = _mm512_sub_epi32(_mm512_setzero_si512(),
                                          _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wv));
            __m512  dw = _mm512_permutexvar_ps(
                 _mm512_mask_blend_epi32(0xff00, _mm512_set1_epi32(p), _mm512_set1_epi32(p + 1)),
                 d16);
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                const uint8_t *xt = x + t * xs;
                __m512i s = _mm512_dpbusd_epi32(nc, _mm512_loadu_si512(xt + (j + p) * TFAB_QK), wv);
                __m512  dx = _mm512_loadu_ps((const float *)(xt + np) + (j + p) * 8);
                c[t]       = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(s), c[t]);
            }
        }
    }
    for (; j < nb; j += 2) {
        int     two = j + 1 < nb;
        __m512i wv  = _mm512_inserti64x4(_mm512_castsi256_si512(ld256(b[j].qs)),
                                        two ? ld256(b[j + 1].qs) : _mm256_setzero_si256(), 1);
        __m512i nc  = _mm512_sub_epi32(_mm512_setzero_si512(),
                                       _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, wv));
        __m512  dw  = dw_pair(b + j, two);
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            const uint8_t *xt = x + t * xs;
            __m512i        s  = _mm512_dpbusd_epi32(nc, _mm512_loadu_si512(xt + j * TFAB_QK), wv);
            __m512         dx = _mm512_loadu_ps((const float *)(xt + np) + j * 8);
            c[t]              = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(s), c[t]);
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; t++)
        out[t * out_ld] = _mm512_reduce_add_ps(c[t]);
}

VNNI static void gemm_q8x_vnni(const tfab_gemm_args_t *a)
{
    const size_t nb = a->n / TFAB_QK, np = tfab_q8x_np(a->n), xs = a->x_stride;
    if (a->n_tok <= 2) {
        for (uint32_t r = 0; r < a->rows; r++) {
            const tfab_block_q8_0_t *b =
                (const tfab_block_q8_0_t *)((const uint8_t *)a->w + (size_t)r * a->w_stride);
            if (a->n_tok == 2)
                qstream(2, b, nb, a->x, xs, np, a->out + r, a->out_ld);
            else
                qstream(1, b, nb, a->x, xs, np, a->out + r, a->out_ld);
        }
        return;
    }
    __m512       acc[RB * TB];
    const size_t kcb = KCB;
    for (uint32_t t0 = 0; t0 < a->n_tok; t0 += TB) {
        uint32_t       nt = (uint32_t)min_sz(TB, a->n_tok - t0);
        const uint8_t *x  = (const uint8_t *)a->x + (size_t)t0 * xs;
        for (uint32_t r0 = 0; r0 < a->rows; r0 += RB) {
            uint32_t       nr = (uint32_t)min_sz(RB, a->rows - r0);
            const uint8_t *w  = (const uint8_t *)a->w + (size_t)r0 * a->w_stride;
            for (uint32_t r = 0; r < nr; r++)
                for (uint32_t t = 0; t < nt; t++)
                    acc[r * TB + t] = _mm512_setzero_ps();
            for (size_t j0 = 0; j0 < nb; j0 += kcb) {
                size_t   j1 = min_sz(nb, j0 + kcb);
                uint32_t r  = 0;
                for (; r + 4 <= nr; r += 4)
                    qrow(4, w + r * a->w_stride, a->w_stride, x, xs, np, nb, nt, j0, j1,
                         acc + r * TB);
                for (; r < nr; r++)
                    qrow(1, w + r * a->w_stride, a->w_stride, x, xs, np, nb, nt, j0, j1,
                         acc + r * TB);
            }
            for (uint32_t t = 0; t < nt; t++)
                for (uint32_t r = 0; r < nr; r++)
                    a->out[(size_t)(t0 + t) * a->out_ld + r0 + r] =
                        _mm512_reduce_add_ps(acc[r * TB + t]);
        }
    }
}

/* tfab_quantize_q8x_scalar with 16 lanes: the same scalar d and 127 / amax, the same products
 * and round-half-to-even, so the same bytes */
AVX512 static void quantize_q8x(const float *x, void *dst, size_t n)
{
    size_t   np = tfab_q8x_np(n);
    uint8_t *q  = dst;
    float   *d  = (float *)(q + np);
    for (size_t blk = 0; blk < np / TFAB_QK; blk++) {
        float df = 0.0f, id = 0.0f;
        if (blk < n / TFAB_QK) {
            __m512 v0  = _mm512_loadu_ps(x + blk * TFAB_QK),
                   v1  = _mm512_loadu_ps(x + blk * TFAB_QK + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            df         = tfab_f16_to_f32(tfab_f32_to_f16(amax / 127.0f));
            id         = amax != 0.0f ? 127.0f / amax : 0.0f;
            __m512  s  = _mm512_set1_ps(id);
            __m512i b  = _mm512_set1_epi32(128);
            __m512i q0 = _mm512_add_epi32(
                b, _mm512_cvtps_epi32(_mm512_roundscale_ps(
                       _mm512_mul_ps(v0, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            __m512i q1 = _mm512_add_epi32(
                b, _mm512_cvtps_epi32(_mm512_roundscale_ps(
                       _mm512_mul_ps(v1, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            _mm_storeu_si128((__m128i *)(q + blk * TFAB_QK), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(q + blk * TFAB_QK + 16), _mm512_cvtepi32_epi8(q1));
        } else {
            memset(q + blk * TFAB_QK, 128, TFAB_QK);
        }
        _mm256_storeu_ps(d + blk * 8, _mm256_set1_ps(df));
    }
}

void tfab_kern_fill_gemm_avx512(tfab_kern_t *k, int vnni)
{
    k->quantize_q8x          = quantize_q8x;
    k->gemm[TFAB_DTYPE_F32]  = gemm_f32;
    k->gemm[TFAB_DTYPE_F16]  = gemm_f16;
    k->gemm[TFAB_DTYPE_BF16] = gemm_bf16;
    k->gemm[TFAB_DTYPE_Q8_0] = vnni ? gemm_q8x_vnni : tfab_gemm_q8x_avx2;
}
