/* source_gguf.c - model config and tensors from a GGUF file, with llama.cpp's key and tensor
 * names ({arch}.embedding_length, blk.N.attn_q.weight, ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "loader.h"

#define MOD "model"

static tfab_status_t gguf_find(void *ctx, const char *name, tfab_model_tensor_t *t)
{
    tfab_gguf_t              *g  = ctx;
    const tfab_gguf_tensor_t *gt = tfab_gguf_find_tensor(g, name);
    if (gt == NULL)
        return TFAB_ERR_NOT_FOUND;
    t->name   = gt->name;
    t->file   = tfab_gguf_name(g);
    t->type   = gt->type;
    t->n_dims = gt->n_dims;
    memcpy(t->ne, gt->ne, sizeof(t->ne));
    t->data = gt->data;
    t->size = gt->size;
    return TFAB_OK;
}

static void gguf_native_name(void *ctx, const char *gguf_name, char *buf, size_t len)
{
    snprintf(buf, len, "%s", gguf_name);
}

static void gguf_close(void *ctx)
{
    tfab_gguf_close(ctx);
}

/* {arch}.suffix as u32; required keys log when missing */
static tfab_status_t key_u32(tfab_gguf_t *g, const char *arch, const char *suffix, int required,
                             uint32_t *v)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    tfab_status_t st = tfab_gguf_get_u32(g, key, v);
    if (st == TFAB_ERR_NOT_FOUND && required)
        TFAB_ERROR(MOD, "%s: key '%s' missing", tfab_gguf_name(g), key);
    return st == TFAB_ERR_NOT_FOUND && !required ? TFAB_OK : st;
}

static tfab_status_t key_f32(tfab_gguf_t *g, const char *arch, const char *suffix, float *v)
{
    char key[128];
    snprintf(key, sizeof(key), "%s.%s", arch, suffix);
    tfab_status_t st = tfab_gguf_get_f32(g, key, v);
    return st == TFAB_ERR_NOT_FOUND ? TFAB_OK : st;
}

tfab_status_t tfab_model_source_gguf(const char *path, tfab_model_source_t *src)
{
    tfab_gguf_t  *g;
    tfab_status_t st = tfab_gguf_open(path, &g);
    if (st != TFAB_OK)
        return st;
    memset(src, 0, sizeof(*src));
    tfab_model_config_t *c = &src->cfg;
    const char          *s;
    size_t               len;
    if ((st = tfab_gguf_get_str(g, "general.architecture", &s, &len)) != TFAB_OK) {
        if (st == TFAB_ERR_NOT_FOUND)
            TFAB_ERROR(MOD, "%s: key 'general.architecture' missing", path);
        goto err_close;
    }
    if (len == 5 && memcmp(s, "llama", 5) == 0) {
        c->arch = TFAB_ARCH_LLAMA;
    } else if (len == 7 && memcmp(s, "mistral", 7) == 0) {
        c->arch = TFAB_ARCH_LLAMA;
    } else if (len == 5 && memcmp(s, "qwen2", 5) == 0) {
        c->arch       = TFAB_ARCH_QWEN2;
        c->rope_style = TFAB_ROPE_NEOX;
    } else {
        TFAB_ERROR(MOD, "%s: architecture '%.*s' is not supported (llama, mistral, qwen2 are)",
                   path, (int)(len > 32 ? 32 : len), s);
        st = TFAB_ERR_UNSUPPORTED;
        goto err_close;
    }
    snprintf(c->arch_name, sizeof(c->arch_name), "%.*s", (int)len, s);
    const char *a  = c->arch_name;
    c->n_ctx_train = 2048;
    c->rms_eps     = 1e-5f;
    c->rope_theta  = 10000.0f;
    if ((st = key_u32(g, a, "embedding_length", 1, &c->n_embd)) != TFAB_OK ||
        (st = key_u32(g, a, "block_count", 1, &c->n_layer)) != TFAB_OK ||
        (st = key_u32(g, a, "feed_forward_length", 1, &c->n_ff)) != TFAB_OK ||
        (st = key_u32(g, a, "attention.head_count", 1, &c->n_head)) != TFAB_OK ||
        (st = key_u32(g, a, "context_length", 0, &c->n_ctx_train)) != TFAB_OK ||
        (st = key_u32(g, a, "vocab_size", 0, &c->n_vocab)) != TFAB_OK ||
        (st = key_f32(g, a, "attention.layer_norm_rms_epsilon", &c->rms_eps)) != TFAB_OK ||
        (st = key_f32(g, a, "rope.freq_base", &c->rope_theta)) != TFAB_OK)
        goto err_close;
    c->n_head_kv = c->n_head;
    if ((st = key_u32(g, a, "attention.head_count_kv", 0, &c->n_head_kv)) != TFAB_OK)
        goto err_close;
    if (c->n_head == 0 || c->n_embd == 0) {
        TFAB_ERROR(MOD, "%s: %s.attention.head_count = %u, %s.embedding_length = %u: must be > 0",
                   path, a, c->n_head, a, c->n_embd);
        st = TFAB_ERR_INVALID;
        goto err_close;
    }
    c->head_dim   = c->n_embd / c->n_head;
    uint32_t vlen = 0, rope_dims = 0;
    if ((st = key_u32(g, a, "attention.key_length", 0, &c->head_dim)) != TFAB_OK ||
        (st = key_u32(g, a, "attention.value_length", 0, &vlen)) != TFAB_OK ||
        (st = key_u32(g, a, "rope.dimension_count", 0, &rope_dims)) != TFAB_OK)
        goto err_close;
    if ((vlen && vlen != c->head_dim) || (rope_dims && rope_dims != c->head_dim)) {
        TFAB_ERROR(MOD,
                   "%s: key_length %u, value_length %u, rope.dimension_count %u: only equal "
                   "head sizes with full rotary embedding are supported",
                   path, c->head_dim, vlen, rope_dims);
        st = TFAB_ERR_UNSUPPORTED;
        goto err_close;
    }
    /* rope scaling: linear (positions / factor) or llama3 (per-dimension factors) */
    c->rope_freq_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
    if (tfab_gguf_get_str(g, key, &s, &len) == TFAB_OK && !(len == 4 && !memcmp(s, "none", 4))) {
        float factor = 1.0f;
        if ((st = key_f32(g, a, "rope.scaling.factor", &factor)) != TFAB_OK)
            goto err_close;
        if (!(factor > 0.0f)) {
            TFAB_ERROR(MOD, "%s: key '%s.rope.scaling.factor' = %g must be > 0", path, a, factor);
            st = TFAB_ERR_INVALID;
            goto err_close;
        }
        if (len == 6 && !memcmp(s, "linear", 6)) {
            c->rope_freq_scale = 1.0f / factor;
        } else if (len == 6 && !memcmp(s, "llama3", 6)) {
            src->llama3         = 1;
            src->rope_factor    = factor;
            src->rope_low_freq  = 1.0f;
            src->rope_high_freq = 4.0f;
            src->rope_orig_ctx  = 8192;
            if ((st = key_f32(g, a, "rope.scaling.low_freq_factor", &src->rope_low_freq)) !=
                    TFAB_OK ||
                (st = key_f32(g, a, "rope.scaling.high_freq_factor", &src->rope_high_freq)) !=
                    TFAB_OK ||
                (st = key_u32(g, a, "rope.scaling.original_context_length", 0,
                              &src->rope_orig_ctx)) != TFAB_OK)
                goto err_close;
        } else {
            TFAB_ERROR(MOD,
                       "%s: key '%s': rope scaling '%.*s' is not supported (none, linear, "
                       "llama3 are)",
                       path, key, (int)(len > 32 ? 32 : len), s);
            st = TFAB_ERR_UNSUPPORTED;
            goto err_close;
        }
    }
    src->path        = tfab_gguf_name(g);
    src->ctx         = g;
    src->find        = gguf_find;
    src->native_name = gguf_native_name;
    src->close       = gguf_close;
    return TFAB_OK;

err_close:
    tfab_gguf_close(g);
    return st;
}
