/* llama.c - the Llama-family forward pass (llama, mistral, qwen2): RMSNorm, RoPE, grouped-query
 * attention over an f32 KV cache, SwiGLU MLP; weights stay mmapped, buffers are preallocated. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tfab/log.h>
#include <tfab/model.h>
#include <tfab/units.h>
#include "kernels/kernels.h"
#include "loader.h"
#include "threads.h"

#define MOD           "model"
#define ROWS_PER_TASK 16
#define MAX_DIM       (1u << 20)
#define MAX_ARENAS    24

typedef struct weight {
    const uint8_t  *data;
    tfab_dtype_t    type;
    uint32_t        rows, cols;
    size_t          row_bytes;
    tfab_dot_fn_t   dot;
    tfab_dot4_fn_t  dot4; /* NULL: dot per token */
    tfab_act_kind_t act;
} weight_t;

typedef struct layer {
    float *attn_norm, *ffn_norm; /* [n_embd] f32 copies */
    float *bq, *bk, *bv;         /* qwen2 biases of this rank's heads, f32 copies, else NULL */
    /* this rank's rows (all of them when tp_size is 1): wq/wk/wv its query/KV heads, wo and
     * w_down its n_embd output rows, w_gate/w_up its n_ff rows; data points into the mapping */
    weight_t wq, wk, wv, wo, w_gate, w_up, w_down;
} layer_t;

struct tfab_model {
    tfab_model_config_t cfg;
    tfab_model_source_t src;
    const tfab_kern_t  *kern;
    uint32_t            n_ctx, n_batch;
    uint32_t            n_seq;
    uint32_t            layer_begin, layer_end; /* pipeline stage [begin, end) */
    /* tensor parallel: this rank's query heads [h0, h0 + n_head_l), KV heads [kv0, kv0 +
     * n_kv_l); outputs of n_embd, n_ff and n_vocab rows are split in chunks of *_chunk rows
     * (the last rank may have fewer, or none) */
    uint32_t                  tp_rank, tp_size;
    uint32_t                  h0, n_head_l, kv0, n_kv_l;
    uint32_t                  e_chunk, f_chunk, v_chunk;
    tfab_model_allgather_fn_t tp_allgather;
    void                     *tp_arg;
    weight_t                  tok_embd, output; /* output: this rank's vocabulary rows */
    float                    *output_norm;      /* last stage only */
    layer_t                  *layers;           /* [n_layer], loaded in [layer_begin, layer_end) */
    float                    *inv_freq;         /* [head_dim / 2] rotation frequency per pair */
    /* caches and activations, all allocated at create; kvd_l = n_kv_l * head_dim */
    float             *k_cache;   /* [layer_end - layer_begin][n_seq][n_ctx][kvd_l] */
    float             *v_cache;   /* [layer_end - layer_begin][n_seq][n_ctx][kvd_l] */
    float             *x;         /* [n_batch][n_embd] residual stream */
    float             *xn;        /* [n_batch][max(n_embd, q_dim)] normed input / attn out */
    float             *q;         /* [n_batch][n_head_l * head_dim] */
    float             *k, *v;     /* [n_batch][kvd_l] */
    float             *att;       /* [n_batch][n_head * head_dim] */
    float             *gate, *up; /* [n_batch][n_ff] */
    float             *tmp;       /* [n_batch][n_embd] */
    float             *gbuf;      /* tp_size > 1: [tp_size][n_batch][max chunk] allgather buffer */
    uint32_t          *pos_buf;   /* [n_batch] positions of tfab_model_forward */
    tfab_block_q8_0_t *xq;        /* [n_batch][max(n_embd, q_dim, n_ff) / 32] */
    float             *scores;    /* [n_head_l][n_ctx] */
    float             *rope_cs;   /* [n_batch][head_dim / 2][2] cos, sin */
    float             *small;     /* norm and bias copies */
    const tfab_stream_allocator_t *alloc; /* of every buffer above (params or posix_memalign) */
    struct {
        void  *p;
        size_t bytes;
    } arenas[MAX_ARENAS];
    unsigned               n_arenas;
    tfab_threads_t        *threads;
    tfab_parallel_for_fn_t parallel_for;
    void                  *parallel_ctx;
};

/* ---- loading ------------------------------------------------------------------------------ */

static tfab_status_t get_tensor(tfab_model_t *m, const char *name, int optional,
                                tfab_model_tensor_t *t)
{
    tfab_status_t st = m->src.find(m->src.ctx, name, t);
    if (st == TFAB_ERR_NOT_FOUND && !optional) {
        char native[160];
        m->src.native_name(m->src.ctx, name, native, sizeof(native));
        TFAB_ERROR(MOD, "%s: tensor '%s' missing", m->src.path, native);
    }
    return st;
}

static tfab_status_t check_shape(const tfab_model_tensor_t *t, uint64_t ne0, uint64_t ne1)
{
    uint64_t want[TFAB_GGUF_MAX_DIMS] = {ne0, ne1, 1, 1};
    int      ok                       = 1;
    for (int d = 0; d < TFAB_GGUF_MAX_DIMS; d++)
        ok &= t->ne[d] == want[d];
    if (ok)
        return TFAB_OK;
    if (ne1 == 1)
        TFAB_ERROR(MOD, "%s: tensor '%s': shape [%llu, %llu, %llu, %llu], expected [%llu]", t->file,
                   t->name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                   (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                   (unsigned long long)ne0);
    else
        TFAB_ERROR(MOD, "%s: tensor '%s': shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                   t->file, t->name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                   (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                   (unsigned long long)ne0, (unsigned long long)ne1);
    return TFAB_ERR_INVALID;
}

/* A matrix of rows x cols (ggml ne = {cols, rows}) in a supported type. */
static tfab_status_t load_weight(tfab_model_t *m, const char *name, uint32_t rows, uint32_t cols,
                                 int optional, weight_t *w)
{
    tfab_model_tensor_t t;
    tfab_status_t       st = get_tensor(m, name, optional, &t);
    if (st != TFAB_OK)
        return st;
    if (!tfab_kern_supported(t.type)) {
        TFAB_ERROR(MOD,
                   "%s: tensor '%s': type %s is not supported (f32, f16, bf16, q8_0, q4_0 are)",
                   t.file, t.name, tfab_dtype_name(t.type));
        return TFAB_ERR_UNSUPPORTED;
    }
    if ((st = check_shape(&t, cols, rows)) != TFAB_OK)
        return st;
    uint64_t rb;
    if (tfab_dtype_bytes(t.type, cols, &rb) != TFAB_OK || rb * rows != t.size) {
        TFAB_ERROR(MOD, "%s: tensor '%s': %s rows of %u elements do not match its %llu bytes",
                   t.file, t.name, tfab_dtype_name(t.type), cols, (unsigned long long)t.size);
        return TFAB_ERR_INVALID;
    }
    w->data      = t.data;
    w->type      = t.type;
    w->rows      = rows;
    w->cols      = cols;
    w->row_bytes = rb;
    w->dot       = m->kern->dot[t.type];
    w->dot4      = m->kern->dot4[t.type];
    w->act       = tfab_kern_act_kind(t.type);
    return TFAB_OK;
}

/* A vector of n elements converted to f32 into dst. */
static tfab_status_t load_vector(tfab_model_t *m, const char *name, uint32_t n, float *dst)
{
    tfab_model_tensor_t t;
    tfab_status_t       st = get_tensor(m, name, 0, &t);
    if (st != TFAB_OK)
        return st;
    if (t.type != TFAB_DTYPE_F32 && t.type != TFAB_DTYPE_F16 && t.type != TFAB_DTYPE_BF16) {
        TFAB_ERROR(MOD,
                   "%s: tensor '%s': type %s is not supported for a vector (f32, f16, bf16 "
                   "are)",
                   t.file, t.name, tfab_dtype_name(t.type));
        return TFAB_ERR_UNSUPPORTED;
    }
    if ((st = check_shape(&t, n, 1)) != TFAB_OK)
        return st;
    tfab_dequant_row(t.type, t.data, dst, n);
    return TFAB_OK;
}

static tfab_status_t check_config(tfab_model_t *m)
{
    tfab_model_config_t *c   = &m->cfg;
    const char          *why = NULL;
    if (c->n_layer == 0 || c->n_layer > 4096)
        why = "block count not in 1..4096";
    else if (c->n_embd == 0 || c->n_embd > MAX_DIM || c->n_ff == 0 || c->n_ff > MAX_DIM)
        why = "embedding or feed-forward length not in 1..2^20";
    else if (c->n_head == 0 || c->n_head_kv == 0 || c->n_head % c->n_head_kv != 0)
        why = "head count not a positive multiple of the KV head count";
    else if (c->head_dim == 0 || c->head_dim % 2 != 0 || c->head_dim > 4096)
        why = "head size not even and in 2..4096";
    else if ((uint64_t)c->n_head * c->head_dim > MAX_DIM)
        why = "heads x head size above 2^20";
    else if (!(c->rms_eps > 0.0f) || !(c->rope_theta > 0.0f))
        why = "rms epsilon and rope base must be > 0";
    if (why == NULL)
        return TFAB_OK;
    TFAB_ERROR(MOD,
               "%s: bad model config: %s (layers %u, embd %u, ff %u, heads %u, kv heads %u, "
               "head size %u)",
               m->src.path, why, c->n_layer, c->n_embd, c->n_ff, c->n_head, c->n_head_kv,
               c->head_dim);
    return TFAB_ERR_INVALID;
}

/* Rows [r0, r1) of w, clamped to its rows: a view of the same mapping (tensor parallel). */
static weight_t weight_rows(const weight_t *w, uint64_t r0, uint64_t r1)
{
    weight_t s = *w;
    r0         = r0 < w->rows ? r0 : w->rows;
    r1         = r1 < w->rows ? r1 : w->rows;
    s.data     = w->data + (size_t)r0 * w->row_bytes;
    s.rows     = r1 > r0 ? (uint32_t)(r1 - r0) : 0;
    return s;
}

/* The layers of this stage, each cut to this rank's rows. Only their norm vectors and biases
 * are read here; the matrices stay untouched mapped pages until the forward pass reads the
 * rows this rank owns. */
static tfab_status_t load_layers(tfab_model_t *m)
{
    tfab_model_config_t *c     = &m->cfg;
    uint32_t             q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    uint32_t             hd = c->head_dim, r = m->tp_rank;
    char                 name[96];
    tfab_status_t        st;
    float               *s = m->small;
#define NAME(fmt) (snprintf(name, sizeof(name), "blk.%u." fmt, l), name)
    for (uint32_t l = m->layer_begin; l < m->layer_end; l++) {
        layer_t *L   = &m->layers[l];
        L->attn_norm = s, s += c->n_embd;
        L->ffn_norm  = s, s += c->n_embd;
        if ((st = load_vector(m, NAME("attn_norm.weight"), c->n_embd, L->attn_norm)) != TFAB_OK ||
            (st = load_vector(m, NAME("ffn_norm.weight"), c->n_embd, L->ffn_norm)) != TFAB_OK ||
            (st = load_weight(m, NAME("attn_q.weight"), q_dim, c->n_embd, 0, &L->wq)) != TFAB_OK ||
            (st = load_weight(m, NAME("attn_k.weight"), kv_dim, c->n_embd, 0, &L->wk)) != TFAB_OK ||
            (st = load_weight(m, NAME("attn_v.weight"), kv_dim, c->n_embd, 0, &L->wv)) != TFAB_OK ||
            (st = load_weight(m, NAME("attn_output.weight"), c->n_embd, q_dim, 0, &L->wo)) !=
                TFAB_OK ||
            (st = load_weight(m, NAME("ffn_gate.weight"), c->n_ff, c->n_embd, 0, &L->w_gate)) !=
                TFAB_OK ||
            (st = load_weight(m, NAME("ffn_up.weight"), c->n_ff, c->n_embd, 0, &L->w_up)) !=
                TFAB_OK ||
            (st = load_weight(m, NAME("ffn_down.weight"), c->n_embd, c->n_ff, 0, &L->w_down)) !=
                TFAB_OK)
            return st;
        if (c->arch == TFAB_ARCH_QWEN2) {
            L->bq = s, s += q_dim;
            L->bk = s, s += kv_dim;
            L->bv = s, s += kv_dim;
            if ((st = load_vector(m, NAME("attn_q.bias"), q_dim, L->bq)) != TFAB_OK ||
                (st = load_vector(m, NAME("attn_k.bias"), kv_dim, L->bk)) != TFAB_OK ||
                (st = load_vector(m, NAME("attn_v.bias"), kv_dim, L->bv)) != TFAB_OK)
                return st;
            L->bq += (size_t)m->h0 * hd;
            L->bk += (size_t)m->kv0 * hd;
            L->bv += (size_t)m->kv0 * hd;
        }
        uint64_t e0 = (uint64_t)r * m->e_chunk, f0 = (uint64_t)r * m->f_chunk;
        L->wq     = weight_rows(&L->wq, (uint64_t)m->h0 * hd, (uint64_t)(m->h0 + m->n_head_l) * hd);
        L->wk     = weight_rows(&L->wk, (uint64_t)m->kv0 * hd, (uint64_t)(m->kv0 + m->n_kv_l) * hd);
        L->wv     = weight_rows(&L->wv, (uint64_t)m->kv0 * hd, (uint64_t)(m->kv0 + m->n_kv_l) * hd);
        L->wo     = weight_rows(&L->wo, e0, e0 + m->e_chunk);
        L->w_gate = weight_rows(&L->w_gate, f0, f0 + m->f_chunk);
        L->w_up   = weight_rows(&L->w_up, f0, f0 + m->f_chunk);
        L->w_down = weight_rows(&L->w_down, e0, e0 + m->e_chunk);
    }
#undef NAME
    return TFAB_OK;
}

/* Rotation frequency of each pair: theta^(-2i/d), divided by the llama3 factor of the pair
 * (from a rope_freqs tensor, or computed from the scaling metadata as Meta's reference does). */
static tfab_status_t load_rope(tfab_model_t *m)
{
    tfab_model_config_t *c    = &m->cfg;
    uint32_t             half = c->head_dim / 2;
    for (uint32_t i = 0; i < half; i++)
        m->inv_freq[i] = (float)pow((double)c->rope_theta, -2.0 * i / c->head_dim);
    tfab_model_tensor_t t;
    tfab_status_t       st = get_tensor(m, "rope_freqs.weight", 1, &t);
    if (st == TFAB_OK) {
        if (t.type != TFAB_DTYPE_F32) {
            TFAB_ERROR(MOD, "%s: tensor '%s': type %s, expected f32", t.file, t.name,
                       tfab_dtype_name(t.type));
            return TFAB_ERR_UNSUPPORTED;
        }
        if ((st = check_shape(&t, half, 1)) != TFAB_OK)
            return st;
        for (uint32_t i = 0; i < half; i++) {
            float f;
            memcpy(&f, (const float *)t.data + i, 4);
            if (!(f > 0.0f)) {
                TFAB_ERROR(MOD, "%s: tensor '%s': factor %u = %g must be > 0", t.file, t.name, i,
                           f);
                return TFAB_ERR_INVALID;
            }
            m->inv_freq[i] /= f;
        }
        c->rope_llama3 = 1;
        return TFAB_OK;
    }
    if (st != TFAB_ERR_NOT_FOUND)
        return st;
    if (m->src.llama3) {
        double factor = m->src.rope_factor, lo = m->src.rope_low_freq, hi = m->src.rope_high_freq;
        double old = m->src.rope_orig_ctx;
        if (!(hi > lo) || !(lo > 0) || !(old > 0)) {
            TFAB_ERROR(MOD,
                       "%s: llama3 rope scaling: need high_freq_factor %g > low_freq_factor "
                       "%g > 0 and original_context_length %g > 0",
                       m->src.path, hi, lo, old);
            return TFAB_ERR_INVALID;
        }
        double lo_wavelen = old / lo, hi_wavelen = old / hi;
        for (uint32_t i = 0; i < half; i++) {
            double freq = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            double wl   = 2 * M_PI / freq, nf;
            if (wl < hi_wavelen)
                nf = freq;
            else if (wl > lo_wavelen)
                nf = freq / factor;
            else {
                double smooth = (old / wl - lo) / (hi - lo);
                nf            = (1 - smooth) * freq / factor + smooth * freq;
            }
            m->inv_freq[i] = (float)nf;
        }
        c->rope_llama3 = 1;
    }
    return TFAB_OK;
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void *default_alloc(size_t size, int node, void *arg)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    memset(p, 0, size);
    return p;
}

static void default_free(void *ptr, size_t size, void *arg)
{
    free(ptr);
}

static const tfab_stream_allocator_t default_allocator = {default_alloc, default_free, NULL};

/* n zeroed floats from the model's allocator, recorded for free_arenas; after a failure
 * (*st != TFAB_OK) returns NULL without trying. */
static void *alloc_floats(tfab_model_t *m, size_t n, tfab_status_t *st)
{
    if (*st != TFAB_OK)
        return NULL;
    size_t bytes = (n ? n : 16) * sizeof(float);
    void  *p     = m->alloc->alloc(bytes, -1, m->alloc->arg);
    if (p == NULL || m->n_arenas == MAX_ARENAS) {
        if (p)
            m->alloc->free(p, bytes, m->alloc->arg);
        *st = TFAB_ERR_NOMEM;
        return NULL;
    }
    m->arenas[m->n_arenas].p     = p;
    m->arenas[m->n_arenas].bytes = bytes;
    m->n_arenas++;
    return p;
}

static void free_arenas(tfab_model_t *m)
{
    while (m->n_arenas > 0) {
        m->n_arenas--;
        m->alloc->free(m->arenas[m->n_arenas].p, m->arenas[m->n_arenas].bytes, m->alloc->arg);
    }
}

static tfab_status_t alloc_buffers(tfab_model_t *m)
{
    tfab_model_config_t *c      = &m->cfg;
    size_t               q_dim  = (size_t)c->n_head * c->head_dim;
    size_t               q_l    = (size_t)m->n_head_l * c->head_dim;
    size_t               kvd    = (size_t)m->n_kv_l * c->head_dim;
    size_t               nb     = m->n_batch;
    size_t               wide   = c->n_embd > q_dim ? c->n_embd : q_dim;
    size_t               widest = wide > c->n_ff ? wide : c->n_ff;
    size_t               chunk  = q_l;
    uint64_t             cache;
    tfab_status_t        st = TFAB_OK;
    chunk                   = m->e_chunk > chunk ? m->e_chunk : chunk;
    chunk                   = m->f_chunk > chunk ? m->f_chunk : chunk;
    chunk                   = m->v_chunk > chunk ? m->v_chunk : chunk;
    if (__builtin_mul_overflow((uint64_t)(m->layer_end - m->layer_begin) * m->n_ctx * m->n_seq,
                               (uint64_t)kvd, &cache) ||
        cache > (1ull << 40)) {
        TFAB_ERROR(MOD,
                   "%s: KV cache of %u layers x %u sequences x %u positions x %zu is too large; "
                   "lower n_ctx or n_seq",
                   m->src.path, m->layer_end - m->layer_begin, m->n_seq, m->n_ctx, kvd);
        return TFAB_ERR_NOMEM;
    }
    m->k_cache = alloc_floats(m, cache, &st);
    m->v_cache = alloc_floats(m, cache, &st);
    m->x       = alloc_floats(m, nb * c->n_embd, &st);
    m->xn      = alloc_floats(m, nb * wide, &st);
    m->q       = alloc_floats(m, nb * q_l, &st);
    m->k       = alloc_floats(m, nb * kvd, &st);
    m->v       = alloc_floats(m, nb * kvd, &st);
    m->att     = alloc_floats(m, nb * q_dim, &st);
    m->gate    = alloc_floats(m, nb * c->n_ff, &st);
    m->up      = alloc_floats(m, nb * c->n_ff, &st);
    m->tmp     = alloc_floats(m, nb * c->n_embd, &st);
    m->pos_buf = alloc_floats(m, nb, &st);
    if (m->tp_size > 1)
        m->gbuf = alloc_floats(m, (size_t)m->tp_size * nb * chunk, &st);
    m->xq =
        alloc_floats(m, nb * widest / TFAB_QK * sizeof(tfab_block_q8_0_t) / sizeof(float) + 1, &st);
    m->scores  = alloc_floats(m, (size_t)m->n_head_l * m->n_ctx, &st);
    m->rope_cs = alloc_floats(m, nb * c->head_dim, &st);
    if (st != TFAB_OK) {
        char sz[32];
        TFAB_ERROR(MOD,
                   "%s: cannot allocate the KV cache (%s) and activations for n_ctx %u, "
                   "n_seq %u, n_batch %u; lower them",
                   m->src.path, tfab_size_human(2 * cache * sizeof(float), sz, sizeof(sz)),
                   m->n_ctx, m->n_seq, m->n_batch);
    }
    return st;
}

/* The stage and tensor-parallel parameters: checked against the model's shape, set on m. */
static tfab_status_t set_split(tfab_model_t *m, const tfab_model_params_t *p)
{
    const tfab_model_config_t *c = &m->cfg;
    m->n_seq                     = 1;
    m->layer_begin               = 0;
    m->layer_end                 = c->n_layer;
    m->tp_rank                   = 0;
    m->tp_size                   = 1;
    if (p->field_mask & TFAB_MODEL_PARAM_N_SEQ)
        m->n_seq = p->n_seq;
    if (m->n_seq == 0 || m->n_seq > 65536) {
        TFAB_ERROR(MOD, "%s: n_seq %u must be in 1..65536", m->src.path, m->n_seq);
        return TFAB_ERR_INVALID;
    }
    if (p->field_mask & TFAB_MODEL_PARAM_LAYERS) {
        if (p->layer_begin >= p->layer_end || p->layer_end > c->n_layer) {
            TFAB_ERROR(MOD,
                       "%s: stage layers [%u, %u) out of bounds: need begin < end <= n_layer "
                       "(%u)",
                       m->src.path, p->layer_begin, p->layer_end, c->n_layer);
            return TFAB_ERR_INVALID;
        }
        m->layer_begin = p->layer_begin;
        m->layer_end   = p->layer_end;
    }
    if (p->field_mask & TFAB_MODEL_PARAM_TP) {
        if (p->tp_size == 0 || p->tp_rank >= p->tp_size) {
            TFAB_ERROR(MOD, "%s: tensor parallel rank %u of size %u: need rank < size", m->src.path,
                       p->tp_rank, p->tp_size);
            return TFAB_ERR_INVALID;
        }
        if (c->n_head_kv % p->tp_size != 0) {
            TFAB_ERROR(MOD,
                       "%s: tensor parallel size %u does not divide the %u KV heads (n_head_kv); "
                       "use a divisor of it",
                       m->src.path, p->tp_size, c->n_head_kv);
            return TFAB_ERR_INVALID;
        }
        if (p->tp_size > 1 && p->tp_allgather == NULL) {
            TFAB_ERROR(MOD, "%s: tensor parallel size %u without a tp_allgather function",
                       m->src.path, p->tp_size);
            return TFAB_ERR_INVALID;
        }
        m->tp_rank      = p->tp_rank;
        m->tp_size      = p->tp_size;
        m->tp_allgather = p->tp_allgather;
        m->tp_arg       = p->tp_arg;
    }
    uint32_t sz = m->tp_size;
    m->n_head_l = c->n_head / sz;
    m->n_kv_l   = c->n_head_kv / sz;
    m->h0       = m->tp_rank * m->n_head_l;
    m->kv0      = m->tp_rank * m->n_kv_l;
    m->e_chunk  = (c->n_embd + sz - 1) / sz;
    m->f_chunk  = (c->n_ff + sz - 1) / sz;
    m->v_chunk  = (uint32_t)(((uint64_t)c->n_vocab + sz - 1) / sz);
    return TFAB_OK;
}

tfab_status_t tfab_model_create(const tfab_model_params_t *params, tfab_model_t **model_p)
{
    tfab_status_t st;
    if (params == NULL || params->path == NULL || model_p == NULL)
        return TFAB_ERR_INVALID;
    tfab_model_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return TFAB_ERR_NOMEM;
    m->kern  = tfab_kern_best();
    m->alloc = &default_allocator;
    if (params->field_mask & TFAB_MODEL_PARAM_ALLOCATOR && params->allocator)
        m->alloc = params->allocator;
    st = is_dir(params->path) ? tfab_model_source_hf(params->path, &m->src)
                              : tfab_model_source_gguf(params->path, &m->src);
    if (st != TFAB_OK)
        goto err_free;
    m->cfg                 = m->src.cfg;
    tfab_model_config_t *c = &m->cfg;
    if ((st = check_config(m)) != TFAB_OK)
        goto err_close;

    /* token embeddings fix the vocabulary size when the metadata does not */
    tfab_model_tensor_t te;
    if ((st = get_tensor(m, "token_embd.weight", 0, &te)) != TFAB_OK)
        goto err_close;
    if (c->n_vocab == 0)
        c->n_vocab = te.n_dims == 2 && te.ne[1] <= INT32_MAX ? (uint32_t)te.ne[1] : 0;
    if (c->n_vocab == 0) {
        TFAB_ERROR(MOD, "%s: tensor '%s': cannot tell the vocabulary size from its shape", te.file,
                   te.name);
        st = TFAB_ERR_INVALID;
        goto err_close;
    }
    if ((st = load_weight(m, "token_embd.weight", c->n_vocab, c->n_embd, 0, &m->tok_embd)) !=
        TFAB_OK)
        goto err_close;
    st = load_weight(m, "output.weight", c->n_vocab, c->n_embd, 1, &m->output);
    if (st == TFAB_ERR_NOT_FOUND) {
        m->output    = m->tok_embd;
        c->tied_embd = 1;
    } else if (st != TFAB_OK) {
        goto err_close;
    }
    if ((st = set_split(m, params)) != TFAB_OK)
        goto err_close;
    m->output = weight_rows(&m->output, (uint64_t)m->tp_rank * m->v_chunk,
                            (uint64_t)(m->tp_rank + 1) * m->v_chunk);

    size_t q_dim = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_head_kv * c->head_dim;
    size_t n_small = (size_t)(m->layer_end - m->layer_begin) *
                         (2 * c->n_embd + (c->arch == TFAB_ARCH_QWEN2 ? q_dim + 2 * kvd : 0)) +
                     c->n_embd + c->head_dim / 2;
    st        = TFAB_OK;
    m->small  = alloc_floats(m, n_small, &st);
    m->layers = calloc(c->n_layer, sizeof(layer_t));
    if (st != TFAB_OK || m->layers == NULL) {
        TFAB_ERROR(MOD, "%s: cannot allocate the layer index and norm weights", m->src.path);
        st = TFAB_ERR_NOMEM;
        goto err_free_small;
    }
    m->output_norm = m->small + n_small - c->n_embd - c->head_dim / 2;
    m->inv_freq    = m->small + n_small - c->head_dim / 2;
    if ((st = load_layers(m)) != TFAB_OK ||
        (m->layer_end == c->n_layer &&
         (st = load_vector(m, "output_norm.weight", c->n_embd, m->output_norm)) != TFAB_OK) ||
        (st = load_rope(m)) != TFAB_OK)
        goto err_free_small;
    c->weight_type = m->layers[m->layer_begin].wq.type;

    m->n_ctx   = c->n_ctx_train < 4096 ? c->n_ctx_train : 4096;
    m->n_batch = 64;
    if (params->field_mask & TFAB_MODEL_PARAM_N_CTX)
        m->n_ctx = params->n_ctx;
    if (params->field_mask & TFAB_MODEL_PARAM_N_BATCH)
        m->n_batch = params->n_batch;
    if (m->n_ctx == 0 || m->n_batch == 0 || m->n_ctx > (1u << 24) || m->n_batch > 65536) {
        TFAB_ERROR(MOD, "%s: n_ctx %u and n_batch %u must be in 1..2^24 and 1..65536", m->src.path,
                   m->n_ctx, m->n_batch);
        st = TFAB_ERR_INVALID;
        goto err_free_small;
    }
    if (m->n_batch > m->n_ctx)
        m->n_batch = m->n_ctx;
    if ((st = alloc_buffers(m)) != TFAB_OK)
        goto err_free_small;

    if (params->field_mask & TFAB_MODEL_PARAM_PARALLEL_FOR && params->parallel_for) {
        m->parallel_for = params->parallel_for;
        m->parallel_ctx = params->parallel_ctx;
    } else {
        long     ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned n    = ncpu > 0 ? (unsigned)ncpu : 1;
        if (params->field_mask & TFAB_MODEL_PARAM_N_THREADS && params->n_threads > 0)
            n = params->n_threads;
        if ((st = tfab_threads_create(n, &m->threads)) != TFAB_OK)
            goto err_free_small;
        m->parallel_for = tfab_threads_parallel_for;
        m->parallel_ctx = m->threads;
    }
    TFAB_INFO(MOD,
              "%s: %s, %u layers, embd %u, heads %u/%u x %u, ff %u, vocab %u, weights %s, "
              "n_ctx %u, n_seq %u, kernels %s; layers [%u, %u), tensor-parallel rank %u of %u",
              m->src.path, c->arch_name, c->n_layer, c->n_embd, c->n_head, c->n_head_kv,
              c->head_dim, c->n_ff, c->n_vocab, tfab_dtype_name(c->weight_type), m->n_ctx, m->n_seq,
              m->kern->name, m->layer_begin, m->layer_end, m->tp_rank, m->tp_size);
    *model_p = m;
    return TFAB_OK;

err_free_small:
    free(m->layers);
    free_arenas(m);
err_close:
    m->src.close(m->src.ctx);
err_free:
    free(m);
    return st;
}

void tfab_model_destroy(tfab_model_t *m)
{
    if (m == NULL)
        return;
    tfab_threads_destroy(m->threads);
    free(m->layers);
    free_arenas(m);
    m->src.close(m->src.ctx);
    free(m);
}

const tfab_model_config_t *tfab_model_config(const tfab_model_t *m)
{
    return &m->cfg;
}
uint32_t tfab_model_n_ctx(const tfab_model_t *m)
{
    return m->n_ctx;
}
uint32_t tfab_model_n_batch(const tfab_model_t *m)
{
    return m->n_batch;
}
const char *tfab_model_kernels(const tfab_model_t *m)
{
    return m->kern->name;
}

/* ---- forward ------------------------------------------------------------------------------ */

/* One matmul: out[i][r] = dot(W row r, act row i) for the rows of W and the n tokens. */
typedef struct mm_op {
    const weight_t *w;
    const void     *act;       /* f32 rows or q8_0 rows, per w->act */
    size_t          act_bytes; /* stride between token rows */
    float          *out;
    size_t          out_ld; /* floats between token rows of out */
} mm_op_t;

typedef struct mm_job {
    unsigned n_ops;
    mm_op_t  ops[3];
    size_t   first_task[4]; /* prefix sums of each op's task count */
    uint32_t n_tok;
} mm_job_t;

static void mm_task(size_t task, void *arg)
{
    const mm_job_t *job = arg;
    unsigned        o   = 0;
    while (task >= job->first_task[o + 1])
        o++;
    const mm_op_t  *op = &job->ops[o];
    const weight_t *w  = op->w;
    uint32_t        r0 = (uint32_t)(task - job->first_task[o]) * ROWS_PER_TASK;
    uint32_t        r1 = r0 + ROWS_PER_TASK < w->rows ? r0 + ROWS_PER_TASK : w->rows;
    for (uint32_t r = r0; r < r1; r++) {
        const uint8_t *row = w->data + (size_t)r * w->row_bytes;
        uint32_t       i   = 0;
        if (w->dot4) /* prefill: each weight row is read and converted once per 4 tokens */
            for (; i + 4 <= job->n_tok; i += 4) {
                float res[4];
                w->dot4(w->cols, row, (const uint8_t *)op->act + (size_t)i * op->act_bytes,
                        op->act_bytes, res);
                for (int k = 0; k < 4; k++)
                    op->out[(size_t)(i + k) * op->out_ld + r] = res[k];
            }
        for (; i < job->n_tok; i++)
            op->out[(size_t)i * op->out_ld + r] =
                w->dot(w->cols, row, (const uint8_t *)op->act + (size_t)i * op->act_bytes);
    }
}

typedef struct fwd {
    tfab_model_t   *m;
    void           *pctx;
    uint32_t        n, layer;
    const uint32_t *pos; /* [n] position of each token */
    const uint32_t *seq; /* [n] cache slot of each token, or NULL: slot 0 */
    float          *att; /* attention output of this rank's heads [n][att_ld] */
    size_t          att_ld;
} fwd_t;

/* Quantize n rows of cols floats for the q8_0 kernels (when any weight of the group needs it). */
static void quantize_rows(tfab_model_t *m, const float *x, uint32_t n, uint32_t cols, size_t ld)
{
    for (uint32_t i = 0; i < n; i++)
        tfab_quantize_q8_0(x + (size_t)i * ld, m->xq + (size_t)i * (cols / TFAB_QK), cols);
}

static void add_op(mm_job_t *job, tfab_model_t *m, const weight_t *w, const float *x, size_t x_ld,
                   float *out, size_t out_ld)
{
    mm_op_t *op = &job->ops[job->n_ops];
    op->w       = w;
    if (w->act == TFAB_ACT_Q8_0) {
        op->act       = m->xq;
        op->act_bytes = (size_t)(w->cols / TFAB_QK) * sizeof(tfab_block_q8_0_t);
    } else {
        op->act       = x;
        op->act_bytes = x_ld * sizeof(float);
    }
    op->out    = out;
    op->out_ld = out_ld;
    job->first_task[job->n_ops + 1] =
        job->first_task[job->n_ops] + (w->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK;
    job->n_ops++;
}

/* Run up to three matmuls sharing one input x [n][ld] in one parallel_for. */
static void matmul(fwd_t *f, const float *x, size_t x_ld, const weight_t *w0, float *o0, size_t ld0,
                   const weight_t *w1, float *o1, size_t ld1, const weight_t *w2, float *o2,
                   size_t ld2)
{
    tfab_model_t *m   = f->m;
    mm_job_t      job = {.n_tok = f->n};
    int           q8  = w0->act == TFAB_ACT_Q8_0 || (w1 && w1->act == TFAB_ACT_Q8_0) ||
             (w2 && w2->act == TFAB_ACT_Q8_0);
    if (q8)
        quantize_rows(m, x, f->n, w0->cols, x_ld);
    add_op(&job, m, w0, x, x_ld, o0, ld0);
    if (w1)
        add_op(&job, m, w1, x, x_ld, o1, ld1);
    if (w2)
        add_op(&job, m, w2, x, x_ld, o2, ld2);
    m->parallel_for(f->pctx, job.first_task[job.n_ops], mm_task, &job);
}

static void rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps)
{
    double ss = 0;
    for (uint32_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float s = 1.0f / sqrtf((float)(ss / n) + eps);
    for (uint32_t i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

static void rope(const tfab_model_t *m, float *vec, uint32_t n_heads, const float *cs)
{
    uint32_t hd = m->cfg.head_dim, half = hd / 2;
    for (uint32_t h = 0; h < n_heads; h++) {
        float *v = vec + (size_t)h * hd;
        for (uint32_t j = 0; j < half; j++) {
            float  c = cs[2 * j], s = cs[2 * j + 1];
            float *a  = m->cfg.rope_style == TFAB_ROPE_NEOX ? &v[j] : &v[2 * j];
            float *b  = m->cfg.rope_style == TFAB_ROPE_NEOX ? &v[j + half] : &v[2 * j + 1];
            float  x0 = *a, x1 = *b;
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        }
    }
}

/* Attention of every token of the batch for one of this rank's query heads, over its sequence's
 * cache positions 0..pos. */
static void attn_task(size_t h, void *arg)
{
    const fwd_t               *f  = arg;
    const tfab_model_t        *m  = f->m;
    const tfab_model_config_t *c  = &m->cfg;
    uint32_t                   hd = c->head_dim, kvd = m->n_kv_l * hd, q_l = m->n_head_l * hd;
    uint32_t                   kvh = (uint32_t)h / (c->n_head / c->n_head_kv);
    size_t        layer_off = (size_t)(f->layer - m->layer_begin) * m->n_seq * m->n_ctx * kvd;
    float        *sc        = m->scores + h * m->n_ctx;
    float         scale     = 1.0f / sqrtf((float)hd);
    tfab_dot_fn_t dot       = m->kern->dot[TFAB_DTYPE_F32];
    for (uint32_t i = 0; i < f->n; i++) {
        size_t slot =
            (layer_off + (size_t)(f->seq ? f->seq[i] : 0) * m->n_ctx * kvd) + (size_t)kvh * hd;
        const float *kc  = m->k_cache + slot;
        const float *vc  = m->v_cache + slot;
        const float *q   = m->q + (size_t)i * q_l + h * hd;
        float       *out = f->att + (size_t)i * f->att_ld + h * hd;
        uint32_t     n_t = f->pos[i] + 1;
        float        mx  = -INFINITY;
        for (uint32_t t = 0; t < n_t; t++) {
            sc[t] = dot(hd, kc + (size_t)t * kvd, q) * scale;
            mx    = sc[t] > mx ? sc[t] : mx;
        }
        float sum = 0;
        for (uint32_t t = 0; t < n_t; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        float inv = 1.0f / sum;
        memset(out, 0, hd * sizeof(float));
        for (uint32_t t = 0; t < n_t; t++) {
            const float *v = vc + (size_t)t * kvd;
            float        p = sc[t] * inv;
            for (uint32_t d = 0; d < hd; d++)
                out[d] += p * v[d];
        }
    }
}

static float silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* This rank's block of gbuf, [n][chunk]. */
static float *tp_block(const tfab_model_t *m, uint32_t n, uint32_t chunk)
{
    return m->gbuf + (size_t)m->tp_rank * n * chunk;
}

/* Tensor parallel: every rank's block of gbuf ([n][chunk] each, rank r holding columns
 * [r * chunk, (r + 1) * chunk) of total) is gathered and laid out as dst [n][dst_ld]. */
static tfab_status_t tp_gather(tfab_model_t *m, uint32_t n, uint32_t chunk, uint32_t total,
                               float *dst, size_t dst_ld)
{
    tfab_status_t st = m->tp_allgather(m->tp_arg, m->gbuf, (size_t)n * chunk * sizeof(float));
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "tensor-parallel allgather of %u x %u floats (rank %u of %u) failed: %s", n,
                   chunk, m->tp_rank, m->tp_size, tfab_status_str(st));
        return st;
    }
    for (uint32_t r = 0; r < m->tp_size; r++) {
        uint64_t c0 = (uint64_t)r * chunk;
        if (c0 >= total)
            break;
        uint32_t     cn  = total - c0 < chunk ? (uint32_t)(total - c0) : chunk;
        const float *src = m->gbuf + (size_t)r * n * chunk;
        for (uint32_t i = 0; i < n; i++)
            memcpy(dst + (size_t)i * dst_ld + c0, src + (size_t)i * chunk, cn * sizeof(float));
    }
    return TFAB_OK;
}

/* dst [f->n][dst_ld] = x W^T for W's total output rows: one matmul, or under tensor parallelism
 * this rank's rows (w is its slice) and an allgather of the rest. */
static tfab_status_t proj(fwd_t *f, const float *x, size_t x_ld, const weight_t *w, uint32_t total,
                          uint32_t chunk, float *dst, size_t dst_ld)
{
    tfab_model_t *m = f->m;
    if (m->tp_size == 1) {
        matmul(f, x, x_ld, w, dst, dst_ld, NULL, NULL, 0, NULL, NULL, 0);
        return TFAB_OK;
    }
    if (w->rows > 0)
        matmul(f, x, x_ld, w, tp_block(m, f->n, chunk), chunk, NULL, NULL, 0, NULL, NULL, 0);
    return tp_gather(m, f->n, chunk, total, dst, dst_ld);
}

static tfab_status_t layer_forward(fwd_t *f)
{
    tfab_model_t              *m  = f->m;
    const tfab_model_config_t *c  = &m->cfg;
    const layer_t             *L  = &m->layers[f->layer];
    uint32_t                   hd = c->head_dim, n = f->n, D = c->n_embd, F = c->n_ff;
    uint32_t                   q_dim = c->n_head * hd, q_l = m->n_head_l * hd;
    uint32_t                   kvd = m->n_kv_l * hd;
    tfab_status_t              st;

    for (uint32_t i = 0; i < n; i++)
        rmsnorm(m->xn + (size_t)i * D, m->x + (size_t)i * D, L->attn_norm, D, c->rms_eps);
    matmul(f, m->xn, D, &L->wq, m->q, q_l, &L->wk, m->k, kvd, &L->wv, m->v, kvd);
    size_t layer_off = (size_t)(f->layer - m->layer_begin) * m->n_seq * m->n_ctx * kvd;
    for (uint32_t i = 0; i < n; i++) {
        float *q = m->q + (size_t)i * q_l, *k = m->k + (size_t)i * kvd, *v = m->v + (size_t)i * kvd;
        if (L->bq) {
            for (uint32_t j = 0; j < q_l; j++)
                q[j] += L->bq[j];
            for (uint32_t j = 0; j < kvd; j++) {
                k[j] += L->bk[j];
                v[j] += L->bv[j];
            }
        }
        const float *cs = m->rope_cs + (size_t)i * hd;
        rope(m, q, m->n_head_l, cs);
        rope(m, k, m->n_kv_l, cs);
        size_t at = layer_off + ((size_t)(f->seq ? f->seq[i] : 0) * m->n_ctx + f->pos[i]) * kvd;
        memcpy(m->k_cache + at, k, kvd * sizeof(float));
        memcpy(m->v_cache + at, v, kvd * sizeof(float));
    }
    /* attention is local to this rank's heads; the output projection needs all of them */
    if (m->tp_size == 1) {
        f->att    = m->att;
        f->att_ld = q_dim;
    } else {
        f->att    = tp_block(m, n, q_l);
        f->att_ld = q_l;
    }
    m->parallel_for(f->pctx, m->n_head_l, attn_task, f);
    if (m->tp_size > 1 && (st = tp_gather(m, n, q_l, q_dim, m->att, q_dim)) != TFAB_OK)
        return st;
    if ((st = proj(f, m->att, q_dim, &L->wo, D, m->e_chunk, m->tmp, D)) != TFAB_OK)
        return st;
    for (size_t i = 0; i < (size_t)n * D; i++)
        m->x[i] += m->tmp[i];

    for (uint32_t i = 0; i < n; i++)
        rmsnorm(m->xn + (size_t)i * D, m->x + (size_t)i * D, L->ffn_norm, D, c->rms_eps);
    if (m->tp_size == 1) {
        matmul(f, m->xn, D, &L->w_gate, m->gate, F, &L->w_up, m->up, F, NULL, NULL, 0);
        for (size_t i = 0; i < (size_t)n * F; i++)
            m->gate[i] = silu(m->gate[i]) * m->up[i];
    } else {
        /* this rank's n_ff rows, then silu(gate) * up of all rows gathered for w_down */
        uint32_t fc = m->f_chunk, rows = L->w_gate.rows;
        float   *blk = tp_block(m, n, fc);
        if (rows > 0)
            matmul(f, m->xn, D, &L->w_gate, m->gate, fc, &L->w_up, m->up, fc, NULL, NULL, 0);
        for (uint32_t i = 0; i < n; i++)
            for (uint32_t j = 0; j < rows; j++) {
                size_t o = (size_t)i * fc + j;
                blk[o]   = silu(m->gate[o]) * m->up[o];
            }
        if ((st = tp_gather(m, n, fc, F, m->gate, F)) != TFAB_OK)
            return st;
    }
    if ((st = proj(f, m->gate, F, &L->w_down, D, m->e_chunk, m->tmp, D)) != TFAB_OK)
        return st;
    for (size_t i = 0; i < (size_t)n * D; i++)
        m->x[i] += m->tmp[i];
    return TFAB_OK;
}

static tfab_status_t check_batch(const tfab_model_t *m, const tfab_model_batch_t *b)
{
    const tfab_model_config_t *c = &m->cfg;
    if (b == NULL || b->n == 0 || b->n > m->n_batch) {
        TFAB_ERROR(MOD, "batch of %u tokens: must be 1..n_batch (%u)", b ? b->n : 0, m->n_batch);
        return TFAB_ERR_RANGE;
    }
    if (m->layer_begin == 0 && (b->tokens == NULL || b->hidden_in != NULL)) {
        TFAB_ERROR(MOD, "batch for layers [0, %u): the first stage takes token ids, not hidden_in",
                   m->layer_end);
        return TFAB_ERR_INVALID;
    }
    if (m->layer_begin > 0 && (b->hidden_in == NULL || b->tokens != NULL)) {
        TFAB_ERROR(MOD,
                   "batch for layers [%u, %u): a later stage takes hidden_in (the previous "
                   "stage's hidden_out), not token ids",
                   m->layer_begin, m->layer_end);
        return TFAB_ERR_INVALID;
    }
    if (b->pos == NULL) {
        TFAB_ERROR(MOD, "batch of %u tokens without positions", b->n);
        return TFAB_ERR_INVALID;
    }
    for (uint32_t i = 0; i < b->n; i++) {
        if (b->pos[i] >= m->n_ctx) {
            TFAB_ERROR(MOD, "token %u: position %u beyond the context of %u positions", i,
                       b->pos[i], m->n_ctx);
            return TFAB_ERR_RANGE;
        }
        if (b->seq && b->seq[i] >= m->n_seq) {
            TFAB_ERROR(MOD, "token %u: sequence slot %u out of range (n_seq %u)", i, b->seq[i],
                       m->n_seq);
            return TFAB_ERR_RANGE;
        }
        if (b->tokens && (b->tokens[i] < 0 || (uint32_t)b->tokens[i] >= c->n_vocab)) {
            TFAB_ERROR(MOD, "token %u: id %d is outside the vocabulary (0..%u)", i, b->tokens[i],
                       c->n_vocab - 1);
            return TFAB_ERR_RANGE;
        }
    }
    return TFAB_OK;
}

tfab_status_t tfab_model_decode(tfab_model_t *m, void *pctx, const tfab_model_batch_t *b,
                                float *logits, float *hidden_out)
{
    const tfab_model_config_t *c = &m->cfg;
    tfab_status_t              st;
    if ((st = check_batch(m, b)) != TFAB_OK)
        return st;
    uint32_t n = b->n, D = c->n_embd;
    if (b->tokens)
        for (uint32_t i = 0; i < n; i++)
            tfab_dequant_row(m->tok_embd.type,
                             m->tok_embd.data + (size_t)b->tokens[i] * m->tok_embd.row_bytes,
                             m->x + (size_t)i * D, D);
    else
        memcpy(m->x, b->hidden_in, (size_t)n * D * sizeof(float));
    uint32_t half = c->head_dim / 2;
    for (uint32_t i = 0; i < n; i++) {
        float p = (float)b->pos[i] * c->rope_freq_scale;
        for (uint32_t j = 0; j < half; j++) {
            float theta                                     = p * m->inv_freq[j];
            m->rope_cs[(size_t)i * c->head_dim + 2 * j]     = cosf(theta);
            m->rope_cs[(size_t)i * c->head_dim + 2 * j + 1] = sinf(theta);
        }
    }
    fwd_t f = {.m = m, .pctx = pctx, .n = n, .pos = b->pos, .seq = b->seq};
    for (f.layer = m->layer_begin; f.layer < m->layer_end; f.layer++)
        if ((st = layer_forward(&f)) != TFAB_OK)
            return st;
    if (m->layer_end < c->n_layer) {
        if (hidden_out)
            memcpy(hidden_out, m->x, (size_t)n * D * sizeof(float));
        return TFAB_OK;
    }
    if (logits == NULL)
        return TFAB_OK;
    /* the rows that want logits, normed and packed at the front of xn */
    uint32_t n_out = 0;
    for (uint32_t i = 0; i < n; i++)
        if (b->want_logits == NULL || b->want_logits[i])
            rmsnorm(m->xn + (size_t)n_out++ * D, m->x + (size_t)i * D, m->output_norm, D,
                    c->rms_eps);
    if (n_out == 0)
        return TFAB_OK;
    f.n = n_out;
    return proj(&f, m->xn, D, &m->output, c->n_vocab, m->v_chunk, logits, c->n_vocab);
}

tfab_status_t tfab_model_forward_ctx(tfab_model_t *m, void *pctx, const int32_t *tokens, uint32_t n,
                                     uint32_t pos, float *logits)
{
    if (tokens == NULL || n == 0 || n > m->n_batch) {
        TFAB_ERROR(MOD, "forward of %u tokens: must be 1..n_batch (%u)", n, m->n_batch);
        return TFAB_ERR_RANGE;
    }
    if (pos > m->n_ctx || n > m->n_ctx - pos) {
        TFAB_ERROR(MOD, "forward of %u tokens at position %u: beyond the context of %u positions",
                   n, pos, m->n_ctx);
        return TFAB_ERR_RANGE;
    }
    for (uint32_t i = 0; i < n; i++)
        m->pos_buf[i] = pos + i;
    tfab_model_batch_t b = {.n = n, .tokens = tokens, .pos = m->pos_buf};
    return tfab_model_decode(m, pctx, &b, logits, NULL);
}

tfab_status_t tfab_model_forward(tfab_model_t *m, const int32_t *tokens, uint32_t n, uint32_t pos,
                                 float *logits)
{
    return tfab_model_forward_ctx(m, m->parallel_ctx, tokens, n, pos, logits);
}

void tfab_model_layers(const tfab_model_t *m, uint32_t *begin_p, uint32_t *end_p)
{
    if (begin_p)
        *begin_p = m->layer_begin;
    if (end_p)
        *end_p = m->layer_end;
}

uint32_t tfab_model_n_seq(const tfab_model_t *m)
{
    return m->n_seq;
}
