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
#define ROWS_PER_TASK 16 /* prefill: blocks of 16 rows x all tokens balance well */
#define DECODE_TASKS  8  /* decode: each matrix in 8 contiguous parts (long streams per thread) */
#define MAX_DIM       (1u << 20)
#define MAX_ARENAS    16

typedef struct weight {
    const uint8_t  *data;
    tfab_dtype_t    type;
    uint32_t        rows, cols;
    size_t          row_bytes;
    tfab_gemm_fn_t  gemm; /* every matmul block, decode and prefill alike: batch-invariant */
    tfab_act_kind_t act;  /* activation format of gemm */
} weight_t;

typedef struct layer {
    float   *attn_norm, *ffn_norm; /* [n_embd] f32 copies */
    float   *bq, *bk, *bv;         /* qwen2 biases, f32 copies, else NULL */
    weight_t wq, wk, wv, wo, w_gate, w_up, w_down;
} layer_t;

struct tfab_model {
    tfab_model_config_t cfg;
    tfab_model_source_t src;
    const tfab_kern_t  *kern;
    uint32_t            n_ctx, n_batch;
    weight_t            tok_embd, output;
    float              *output_norm;
    layer_t            *layers;
    float              *inv_freq; /* [head_dim / 2] rotation frequency per pair */
    /* caches and activations, all allocated at create */
    float                         *k_cache; /* [n_layer][n_ctx][n_head_kv * head_dim] */
    float                         *v_cache; /* [n_layer][n_ctx][n_head_kv * head_dim] */
    float                         *x;       /* [n_batch][n_embd] residual stream */
    float                         *xn; /* [n_batch][max(n_embd, q_dim)] normed input / attn out */
    float                         *q;  /* [n_batch][n_head * head_dim] */
    float                         *k, *v;     /* [n_batch][n_head_kv * head_dim] */
    float                         *att;       /* [n_batch][n_head * head_dim] */
    float                         *gate, *up; /* [n_batch][n_ff] */
    float                         *tmp;       /* [n_batch][n_embd] */
    tfab_block_q8_0_t             *xq;        /* [n_batch] gemm activation rows, see matmul */
    float                         *scores;    /* [n_head][n_ctx] */
    float                         *rope_cs;   /* [n_batch][head_dim / 2][2] cos, sin */
    float                         *small;     /* norm and bias copies */
    const tfab_stream_allocator_t *alloc;     /* of every buffer above (params or posix_memalign) */
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
    w->gemm      = m->kern->gemm[t.type];
    w->act       = tfab_kern_gemm_act(t.type);
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

static tfab_status_t load_layers(tfab_model_t *m)
{
    tfab_model_config_t *c     = &m->cfg;
    uint32_t             q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
    char                 name[96];
    tfab_status_t        st;
    float               *s = m->small;
#define NAME(fmt) (snprintf(name, sizeof(name), "blk.%u." fmt, l), name)
    for (uint32_t l = 0; l < c->n_layer; l++) {
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
        }
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
    size_t               kvd    = (size_t)c->n_head_kv * c->head_dim;
    size_t               nb     = m->n_batch;
    size_t               wide   = c->n_embd > q_dim ? c->n_embd : q_dim;
    size_t               widest = wide > c->n_ff ? wide : c->n_ff;
    uint64_t             cache;
    tfab_status_t        st = TFAB_OK;
    if (__builtin_mul_overflow((uint64_t)c->n_layer * m->n_ctx, (uint64_t)kvd, &cache) ||
        cache > (1ull << 40)) {
        TFAB_ERROR(MOD, "%s: KV cache of %u layers x %u positions x %zu is too large; lower n_ctx",
                   m->src.path, c->n_layer, m->n_ctx, kvd);
        return TFAB_ERR_NOMEM;
    }
    m->k_cache = alloc_floats(m, cache, &st);
    m->v_cache = alloc_floats(m, cache, &st);
    m->x       = alloc_floats(m, nb * c->n_embd, &st);
    m->xn      = alloc_floats(m, nb * wide, &st);
    m->q       = alloc_floats(m, nb * q_dim, &st);
    m->k       = alloc_floats(m, nb * kvd, &st);
    m->v       = alloc_floats(m, nb * kvd, &st);
    m->att     = alloc_floats(m, nb * q_dim, &st);
    m->gate    = alloc_floats(m, nb * c->n_ff, &st);
    m->up      = alloc_floats(m, nb * c->n_ff, &st);
    m->tmp     = alloc_floats(m, nb * c->n_embd, &st);
    size_t act_row =
        tfab_act_row_bytes(TFAB_ACT_Q8X, widest) > tfab_act_row_bytes(TFAB_ACT_F32, widest)
            ? tfab_act_row_bytes(TFAB_ACT_Q8X, widest)
            : tfab_act_row_bytes(TFAB_ACT_F32, widest);
    m->xq      = alloc_floats(m, nb * act_row / sizeof(float), &st);
    m->scores  = alloc_floats(m, (size_t)c->n_head * m->n_ctx, &st);
    m->rope_cs = alloc_floats(m, nb * c->head_dim, &st);
    if (st != TFAB_OK) {
        char sz[32];
        TFAB_ERROR(MOD,
                   "%s: cannot allocate the KV cache (%s) and activations for n_ctx %u, "
                   "n_batch %u; lower them",
                   m->src.path, tfab_size_human(2 * cache * sizeof(float), sz, sizeof(sz)),
                   m->n_ctx, m->n_batch);
    }
    return st;
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

    size_t q_dim = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_head_kv * c->head_dim;
    size_t n_small =
        (size_t)c->n_layer * (2 * c->n_embd + (c->arch == TFAB_ARCH_QWEN2 ? q_dim + 2 * kvd : 0)) +
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
        (st = load_vector(m, "output_norm.weight", c->n_embd, m->output_norm)) != TFAB_OK ||
        (st = load_rope(m)) != TFAB_OK)
        goto err_free_small;
    c->weight_type = m->layers[0].wq.type;

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
              "n_ctx %u, kernels %s",
              m->src.path, c->arch_name, c->n_layer, c->n_embd, c->n_head, c->n_head_kv,
              c->head_dim, c->n_ff, c->n_vocab, tfab_dtype_name(c->weight_type), m->n_ctx,
              m->kern->name);
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
    const void     *act;       /* activation rows in w->act's format */
    size_t          act_bytes; /* stride between token rows */
    float          *out;
    size_t          out_ld;        /* floats between token rows of out */
    uint32_t        rows_per_task; /* weight rows per parallel_for task */
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
    const mm_op_t   *op = &job->ops[o];
    const weight_t  *w  = op->w;
    uint32_t         r0 = (uint32_t)(task - job->first_task[o]) * op->rows_per_task;
    uint32_t         r1 = r0 + op->rows_per_task < w->rows ? r0 + op->rows_per_task : w->rows;
    tfab_gemm_args_t a  = {.n        = w->cols,
                           .w        = w->data + (size_t)r0 * w->row_bytes,
                           .w_stride = w->row_bytes,
                           .rows     = r1 - r0,
                           .x        = op->act,
                           .x_stride = op->act_bytes,
                           .n_tok    = job->n_tok,
                           .out      = op->out + r0,
                           .out_ld   = op->out_ld};
    w->gemm(&a);
}

typedef struct fwd {
    tfab_model_t *m;
    void         *pctx;
    uint32_t      n, pos, layer;
} fwd_t;

typedef struct quant_job {
    tfab_act_kind_t kind;
    const float    *x;
    size_t          ld, row_bytes;
    uint32_t        cols;
    uint8_t        *dst;
} quant_job_t;

static void quant_task(size_t i, void *arg)
{
    const quant_job_t *q = arg;
    tfab_quantize_act(q->kind, q->x + i * q->ld, q->dst + i * q->row_bytes, q->cols);
}

/* Convert n rows of cols floats into m->xq in the gemm's activation format kind, a row per
 * task (per-row work: the result does not depend on how rows are spread over threads). */
static void quantize_rows(fwd_t *f, tfab_act_kind_t kind, const float *x, uint32_t cols, size_t ld)
{
    quant_job_t q = {.kind      = kind,
                     .x         = x,
                     .ld        = ld,
                     .row_bytes = tfab_act_row_bytes(kind, cols),
                     .cols      = cols,
                     .dst       = (uint8_t *)f->m->xq};
    f->m->parallel_for(f->pctx, f->n, quant_task, &q);
}

static void add_op(mm_job_t *job, tfab_model_t *m, const weight_t *w, float *out, size_t out_ld)
{
    mm_op_t *op   = &job->ops[job->n_ops];
    op->w         = w;
    op->act       = m->xq;
    op->act_bytes = tfab_act_row_bytes(w->act, w->cols);
    op->out       = out;
    op->out_ld    = out_ld;
    /* how rows are split over tasks never changes a result (gemm's contract), only speed */
    op->rows_per_task = ROWS_PER_TASK;
    if (job->n_tok <= 2) {
        uint32_t part     = (w->rows + DECODE_TASKS - 1) / DECODE_TASKS;
        op->rows_per_task = part > ROWS_PER_TASK ? (part + 15) / 16 * 16 : ROWS_PER_TASK;
    }
    job->first_task[job->n_ops + 1] =
        job->first_task[job->n_ops] + (w->rows + op->rows_per_task - 1) / op->rows_per_task;
    job->n_ops++;
}

/* Run up to three matmuls sharing one input x [n][ld] in one parallel_for. */
static void matmul(fwd_t *f, const float *x, size_t x_ld, const weight_t *w0, float *o0, size_t ld0,
                   const weight_t *w1, float *o1, size_t ld1, const weight_t *w2, float *o2,
                   size_t ld2)
{
    tfab_model_t   *m   = f->m;
    mm_job_t        job = {.n_tok = f->n};
    tfab_act_kind_t q   = w0->act;
    if ((w1 && w1->act != q) || (w2 && w2->act != q)) {
        /* mixed activation formats share m->xq: one matmul per weight */
        matmul(f, x, x_ld, w0, o0, ld0, NULL, NULL, 0, NULL, NULL, 0);
        if (w1)
            matmul(f, x, x_ld, w1, o1, ld1, NULL, NULL, 0, NULL, NULL, 0);
        if (w2)
            matmul(f, x, x_ld, w2, o2, ld2, NULL, NULL, 0, NULL, NULL, 0);
        return;
    }
    quantize_rows(f, q, x, w0->cols, x_ld);
    add_op(&job, m, w0, o0, ld0);
    if (w1)
        add_op(&job, m, w1, o1, ld1);
    if (w2)
        add_op(&job, m, w2, o2, ld2);
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

/* Attention of every token of the batch for one query head. */
static void attn_task(size_t h, void *arg)
{
    const fwd_t               *f  = arg;
    const tfab_model_t        *m  = f->m;
    const tfab_model_config_t *c  = &m->cfg;
    uint32_t                   hd = c->head_dim, kvd = c->n_head_kv * hd, q_dim = c->n_head * hd;
    uint32_t                   kvh = (uint32_t)h / (c->n_head / c->n_head_kv);
    const float  *kc    = m->k_cache + (size_t)f->layer * m->n_ctx * kvd + (size_t)kvh * hd;
    const float  *vc    = m->v_cache + (size_t)f->layer * m->n_ctx * kvd + (size_t)kvh * hd;
    float        *sc    = m->scores + h * m->n_ctx;
    float         scale = 1.0f / sqrtf((float)hd);
    tfab_dot_fn_t dot   = m->kern->dot[TFAB_DTYPE_F32];
    for (uint32_t i = 0; i < f->n; i++) {
        const float *q   = m->q + (size_t)i * q_dim + h * hd;
        float       *out = m->att + (size_t)i * q_dim + h * hd;
        uint32_t     n_t = f->pos + i + 1;
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

static void layer_forward(fwd_t *f)
{
    tfab_model_t              *m  = f->m;
    const tfab_model_config_t *c  = &m->cfg;
    const layer_t             *L  = &m->layers[f->layer];
    uint32_t                   hd = c->head_dim, n = f->n, D = c->n_embd;
    uint32_t                   q_dim = c->n_head * hd, kvd = c->n_head_kv * hd;

    for (uint32_t i = 0; i < n; i++)
        rmsnorm(m->xn + (size_t)i * D, m->x + (size_t)i * D, L->attn_norm, D, c->rms_eps);
    matmul(f, m->xn, D, &L->wq, m->q, q_dim, &L->wk, m->k, kvd, &L->wv, m->v, kvd);
    float *kc = m->k_cache + (size_t)f->layer * m->n_ctx * kvd;
    float *vc = m->v_cache + (size_t)f->layer * m->n_ctx * kvd;
    for (uint32_t i = 0; i < n; i++) {
        float *q = m->q + (size_t)i * q_dim, *k = m->k + (size_t)i * kvd,
              *v = m->v + (size_t)i * kvd;
        if (L->bq) {
            for (uint32_t j = 0; j < q_dim; j++)
                q[j] += L->bq[j];
            for (uint32_t j = 0; j < kvd; j++) {
                k[j] += L->bk[j];
                v[j] += L->bv[j];
            }
        }
        const float *cs = m->rope_cs + (size_t)i * hd;
        rope(m, q, c->n_head, cs);
        rope(m, k, c->n_head_kv, cs);
        memcpy(kc + (size_t)(f->pos + i) * kvd, k, kvd * sizeof(float));
        memcpy(vc + (size_t)(f->pos + i) * kvd, v, kvd * sizeof(float));
    }
    m->parallel_for(f->pctx, c->n_head, attn_task, f);
    matmul(f, m->att, q_dim, &L->wo, m->tmp, D, NULL, NULL, 0, NULL, NULL, 0);
    for (size_t i = 0; i < (size_t)n * D; i++)
        m->x[i] += m->tmp[i];

    for (uint32_t i = 0; i < n; i++)
        rmsnorm(m->xn + (size_t)i * D, m->x + (size_t)i * D, L->ffn_norm, D, c->rms_eps);
    matmul(f, m->xn, D, &L->w_gate, m->gate, c->n_ff, &L->w_up, m->up, c->n_ff, NULL, NULL, 0);
    for (size_t i = 0; i < (size_t)n * c->n_ff; i++)
        m->gate[i] = silu(m->gate[i]) * m->up[i];
    matmul(f, m->gate, c->n_ff, &L->w_down, m->tmp, D, NULL, NULL, 0, NULL, NULL, 0);
    for (size_t i = 0; i < (size_t)n * D; i++)
        m->x[i] += m->tmp[i];
}

tfab_status_t tfab_model_forward_ctx(tfab_model_t *m, void *pctx, const int32_t *tokens, uint32_t n,
                                     uint32_t pos, float *logits)
{
    const tfab_model_config_t *c = &m->cfg;
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
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->n_vocab) {
            TFAB_ERROR(MOD, "token %u: id %d is outside the vocabulary (0..%u)", i, tokens[i],
                       c->n_vocab - 1);
            return TFAB_ERR_RANGE;
        }
    for (uint32_t i = 0; i < n; i++)
        tfab_dequant_row(m->tok_embd.type,
                         m->tok_embd.data + (size_t)tokens[i] * m->tok_embd.row_bytes,
                         m->x + (size_t)i * c->n_embd, c->n_embd);
    uint32_t half = c->head_dim / 2;
    for (uint32_t i = 0; i < n; i++) {
        float p = (float)(pos + i) * c->rope_freq_scale;
        for (uint32_t j = 0; j < half; j++) {
            float theta                                     = p * m->inv_freq[j];
            m->rope_cs[(size_t)i * c->head_dim + 2 * j]     = cosf(theta);
            m->rope_cs[(size_t)i * c->head_dim + 2 * j + 1] = sinf(theta);
        }
    }
    fwd_t f = {.m = m, .pctx = pctx, .n = n, .pos = pos};
    for (f.layer = 0; f.layer < c->n_layer; f.layer++)
        layer_forward(&f);
    if (logits == NULL)
        return TFAB_OK;
    for (uint32_t i = 0; i < n; i++)
        rmsnorm(m->xn + (size_t)i * c->n_embd, m->x + (size_t)i * c->n_embd, m->output_norm,
                c->n_embd, c->rms_eps);
    matmul(&f, m->xn, c->n_embd, &m->output, logits, c->n_vocab, NULL, NULL, 0, NULL, NULL, 0);
    return TFAB_OK;
}

tfab_status_t tfab_model_forward(tfab_model_t *m, const int32_t *tokens, uint32_t n, uint32_t pos,
                                 float *logits)
{
    return tfab_model_forward_ctx(m, m->parallel_ctx, tokens, n, pos, logits);
}
