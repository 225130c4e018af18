/* source_hf.c - model config and tensors from a Hugging Face directory: config.json (older
 * rope_theta/rope_scaling or newer rope_parameters), model.safetensors or shards listed in
 * model.safetensors.index.json; GGUF tensor names are mapped to HF names. HF q/k rows are in
 * rotate-half order, so the rope is NEOX-style (no permutation, no copy). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tfab/log.h>
#include "loader.h"
#include "safetensors.h"

#define MOD        "model"
#define MAX_SHARDS 1024
#define MAX_JSON   (64u << 20)

typedef struct hf {
    char       *dir;
    unsigned    n_shards;
    tfab_st_t **shards;
    int         tied;
} hf_t;

static void hf_close(void *ctx)
{
    hf_t *h = ctx;
    for (unsigned i = 0; i < h->n_shards; i++)
        tfab_st_close(h->shards[i]);
    free(h->shards);
    free(h->dir);
    free(h);
}

/* GGUF name -> HF name; 0 if the tensor has no HF counterpart */
static int map_name(const hf_t *h, const char *g, char *out, size_t len)
{
    static const struct {
        const char *gguf, *hf;
    } blk[] = {
        {"attn_norm.weight", "input_layernorm.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},
        {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_output.weight", "self_attn.o_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},
        {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    unsigned l;
    int      pos = 0;
    if (strcmp(g, "token_embd.weight") == 0)
        return snprintf(out, len, "model.embed_tokens.weight"), 1;
    if (strcmp(g, "output_norm.weight") == 0)
        return snprintf(out, len, "model.norm.weight"), 1;
    if (strcmp(g, "output.weight") == 0)
        return h->tied ? 0 : (snprintf(out, len, "lm_head.weight"), 1);
    if (sscanf(g, "blk.%u.%n", &l, &pos) == 1 && pos > 0)
        for (size_t i = 0; i < sizeof(blk) / sizeof(blk[0]); i++)
            if (strcmp(g + pos, blk[i].gguf) == 0)
                return snprintf(out, len, "model.layers.%u.%s", l, blk[i].hf), 1;
    return 0;
}

static tfab_status_t hf_find(void *ctx, const char *gname, tfab_model_tensor_t *t)
{
    hf_t *h = ctx;
    char  name[160];
    if (!map_name(h, gname, name, sizeof(name)))
        return TFAB_ERR_NOT_FOUND;
    for (unsigned s = 0; s < h->n_shards; s++) {
        const tfab_st_tensor_t *st = tfab_st_find(h->shards[s], name);
        if (st == NULL)
            continue;
        t->name = st->name;
        t->file = tfab_st_name(h->shards[s]);
        t->type =
            st->type == TFAB_ST_DTYPE_OTHER ? (tfab_dtype_t)TFAB_DTYPE_I8 : (tfab_dtype_t)st->type;
        t->n_dims = st->n_dims;
        memcpy(t->ne, st->ne, sizeof(t->ne));
        t->data = st->data;
        t->size = st->size;
        if (st->type == TFAB_ST_DTYPE_OTHER) /* no ggml type: report as unsupported i8 */
            t->type = TFAB_DTYPE_I8;
        return TFAB_OK;
    }
    if (strcmp(gname, "output.weight") == 0) { /* untied by config, yet no lm_head */
        TFAB_ERROR(MOD,
                   "%s: tensor 'lm_head.weight' missing (config.json: tie_word_embeddings is "
                   "false)",
                   h->dir);
        return TFAB_ERR_INVALID;
    }
    return TFAB_ERR_NOT_FOUND;
}

static void hf_native_name(void *ctx, const char *gname, char *buf, size_t len)
{
    if (!map_name(ctx, gname, buf, len))
        snprintf(buf, len, "%s", gname);
}

static char *read_small_file(const char *path, int *missing)
{
    FILE *f  = fopen(path, "rb");
    *missing = 0;
    if (f == NULL) {
        *missing = errno == ENOENT;
        if (!*missing)
            TFAB_ERROR(MOD, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    long  len;
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || (unsigned long)len > MAX_JSON ||
        fseek(f, 0, SEEK_SET) != 0) {
        TFAB_ERROR(MOD, "%s: cannot read (or larger than %u bytes)", path, MAX_JSON);
        goto out;
    }
    buf = malloc((size_t)len + 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        TFAB_ERROR(MOD, "%s: cannot read %ld bytes", path, len);
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[len] = '\0';
out:
    fclose(f);
    return buf;
}

static cJSON *parse_json_file(const char *path, int *missing)
{
    char *text = read_small_file(path, missing);
    if (text == NULL)
        return NULL;
    const char *end  = NULL;
    cJSON      *root = cJSON_ParseWithOpts(text, &end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        TFAB_ERROR(MOD, "%s: not a JSON object (error near offset %ld)", path,
                   end ? (long)(end - text) : 0L);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

/* config key as a positive integer (required unless def > 0 is given) */
static tfab_status_t cfg_u32(const char *path, const cJSON *c, const char *key, uint32_t def,
                             uint32_t *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c, key);
    if (it == NULL || cJSON_IsNull(it)) {
        if (def == 0) {
            TFAB_ERROR(MOD, "%s: key '%s' missing", path, key);
            return TFAB_ERR_NOT_FOUND;
        }
        *v = def;
        return TFAB_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble < 1 || it->valuedouble > 4294967295.0 ||
        it->valuedouble != (double)(uint32_t)it->valuedouble) {
        TFAB_ERROR(MOD, "%s: key '%s' is not a positive integer", path, key);
        return TFAB_ERR_INVALID;
    }
    *v = (uint32_t)it->valuedouble;
    return TFAB_OK;
}

static tfab_status_t cfg_f32(const char *path, const cJSON *c, const char *key, float *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(c, key);
    if (it == NULL || cJSON_IsNull(it))
        return TFAB_OK; /* keep the default */
    if (!cJSON_IsNumber(it)) {
        TFAB_ERROR(MOD, "%s: key '%s' is not a number", path, key);
        return TFAB_ERR_INVALID;
    }
    *v = (float)it->valuedouble;
    return TFAB_OK;
}

static tfab_status_t read_rope_scaling(const char *path, const cJSON *rs, tfab_model_source_t *src)
{
    if (rs == NULL || cJSON_IsNull(rs))
        return TFAB_OK;
    if (!cJSON_IsObject(rs)) {
        TFAB_ERROR(MOD, "%s: rope scaling is not an object", path);
        return TFAB_ERR_INVALID;
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (ty == NULL)
        ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    const char   *type   = cJSON_IsString(ty) ? ty->valuestring : "default";
    float         factor = 1.0f;
    tfab_status_t st;
    if (strcmp(type, "default") == 0)
        return TFAB_OK;
    if ((st = cfg_f32(path, rs, "factor", &factor)) != TFAB_OK)
        return st;
    if (!(factor > 0.0f)) {
        TFAB_ERROR(MOD, "%s: rope scaling factor %g must be > 0", path, factor);
        return TFAB_ERR_INVALID;
    }
    if (strcmp(type, "linear") == 0) {
        src->cfg.rope_freq_scale = 1.0f / factor;
        return TFAB_OK;
    }
    if (strcmp(type, "llama3") == 0) {
        src->llama3         = 1;
        src->rope_factor    = factor;
        src->rope_low_freq  = 1.0f;
        src->rope_high_freq = 4.0f;
        src->rope_orig_ctx  = 8192;
        if ((st = cfg_f32(path, rs, "low_freq_factor", &src->rope_low_freq)) != TFAB_OK ||
            (st = cfg_f32(path, rs, "high_freq_factor", &src->rope_high_freq)) != TFAB_OK ||
            (st = cfg_u32(path, rs, "original_max_position_embeddings", 8192,
                          &src->rope_orig_ctx)) != TFAB_OK)
            return st;
        return TFAB_OK;
    }
    TFAB_ERROR(MOD, "%s: rope scaling type '%.32s' is not supported (default, linear, llama3 are)",
               path, type);
    return TFAB_ERR_UNSUPPORTED;
}

static tfab_status_t read_config(const char *dir, tfab_model_source_t *src, int *tied)
{
    char path[4096];
    int  missing;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    cJSON *c = parse_json_file(path, &missing);
    if (c == NULL) {
        if (missing)
            TFAB_ERROR(MOD, "%s: no config.json: not a model directory", dir);
        return missing ? TFAB_ERR_NOT_FOUND : TFAB_ERR_INVALID;
    }
    tfab_model_config_t *cfg  = &src->cfg;
    tfab_status_t        st   = TFAB_OK;
    const cJSON         *mt   = cJSON_GetObjectItemCaseSensitive(c, "model_type");
    const char          *type = cJSON_IsString(mt) ? mt->valuestring : "";
    if (strcmp(type, "llama") == 0 || strcmp(type, "mistral") == 0) {
        cfg->arch = TFAB_ARCH_LLAMA;
    } else if (strcmp(type, "qwen2") == 0) {
        cfg->arch = TFAB_ARCH_QWEN2;
    } else {
        TFAB_ERROR(MOD, "%s: model_type '%.32s' is not supported (llama, mistral, qwen2 are)", path,
                   type);
        st = TFAB_ERR_UNSUPPORTED;
        goto out;
    }
    snprintf(cfg->arch_name, sizeof(cfg->arch_name), "%s", type);
    cfg->rope_style      = TFAB_ROPE_NEOX;
    cfg->rope_freq_scale = 1.0f;
    cfg->rms_eps         = 1e-6f;
    cfg->rope_theta      = 10000.0f;
    if ((st = cfg_u32(path, c, "vocab_size", 0, &cfg->n_vocab)) != TFAB_OK ||
        (st = cfg_u32(path, c, "hidden_size", 0, &cfg->n_embd)) != TFAB_OK ||
        (st = cfg_u32(path, c, "intermediate_size", 0, &cfg->n_ff)) != TFAB_OK ||
        (st = cfg_u32(path, c, "num_hidden_layers", 0, &cfg->n_layer)) != TFAB_OK ||
        (st = cfg_u32(path, c, "num_attention_heads", 0, &cfg->n_head)) != TFAB_OK ||
        (st = cfg_u32(path, c, "num_key_value_heads", cfg->n_head, &cfg->n_head_kv)) != TFAB_OK ||
        (st = cfg_u32(path, c, "head_dim",
                      cfg->n_embd / cfg->n_head ? cfg->n_embd / cfg->n_head : 1, &cfg->head_dim)) !=
            TFAB_OK ||
        (st = cfg_u32(path, c, "max_position_embeddings", 2048, &cfg->n_ctx_train)) != TFAB_OK ||
        (st = cfg_f32(path, c, "rms_norm_eps", &cfg->rms_eps)) != TFAB_OK)
        goto out;
    const cJSON *tw = cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings");
    *tied           = cJSON_IsTrue(tw);
    /* newer transformers: rope_parameters {rope_type, rope_theta, factor, ...}; older:
     * rope_theta and rope_scaling {type|rope_type, factor, ...} */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(c, "rope_parameters");
    if (cJSON_IsObject(rp)) {
        if ((st = cfg_f32(path, rp, "rope_theta", &cfg->rope_theta)) != TFAB_OK ||
            (st = read_rope_scaling(path, rp, src)) != TFAB_OK)
            goto out;
    } else {
        if ((st = cfg_f32(path, c, "rope_theta", &cfg->rope_theta)) != TFAB_OK ||
            (st = read_rope_scaling(path, cJSON_GetObjectItemCaseSensitive(c, "rope_scaling"),
                                    src)) != TFAB_OK)
            goto out;
    }
out:
    cJSON_Delete(c);
    return st;
}

static tfab_status_t add_shard(hf_t *h, const char *file)
{
    char path[4096];
    if (strchr(file, '/') != NULL || strcmp(file, "..") == 0 || file[0] == '\0') {
        TFAB_ERROR(MOD,
                   "%s/model.safetensors.index.json: shard name '%.64s' is not a plain file "
                   "name",
                   h->dir, file);
        return TFAB_ERR_INVALID;
    }
    snprintf(path, sizeof(path), "%s/%s", h->dir, file);
    for (unsigned i = 0; i < h->n_shards; i++)
        if (strcmp(tfab_st_name(h->shards[i]), path) == 0)
            return TFAB_OK;
    if (h->n_shards == MAX_SHARDS) {
        TFAB_ERROR(MOD, "%s: more than %d safetensors shards", h->dir, MAX_SHARDS);
        return TFAB_ERR_INVALID;
    }
    return tfab_st_open(path, &h->shards[h->n_shards]) == TFAB_OK ? (h->n_shards++, TFAB_OK)
                                                                  : TFAB_ERR_INVALID;
}

tfab_status_t tfab_model_source_hf(const char *dir, tfab_model_source_t *src)
{
    tfab_status_t st;
    memset(src, 0, sizeof(*src));
    hf_t *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return TFAB_ERR_NOMEM;
    h->dir    = strdup(dir);
    h->shards = calloc(MAX_SHARDS, sizeof(*h->shards));
    if (h->dir == NULL || h->shards == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_close;
    }
    if ((st = read_config(dir, src, &h->tied)) != TFAB_OK)
        goto err_close;
    char path[4096];
    int  missing;
    snprintf(path, sizeof(path), "%s/model.safetensors.index.json", dir);
    cJSON *idx = parse_json_file(path, &missing);
    if (idx != NULL) {
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
        if (!cJSON_IsObject(wm)) {
            TFAB_ERROR(MOD, "%s: no 'weight_map' object", path);
            st = TFAB_ERR_INVALID;
        }
        for (const cJSON *e = wm ? wm->child : NULL; st == TFAB_OK && e; e = e->next) {
            if (!cJSON_IsString(e)) {
                TFAB_ERROR(MOD, "%s: weight_map entry '%.96s' is not a file name", path, e->string);
                st = TFAB_ERR_INVALID;
            } else {
                st = add_shard(h, e->valuestring);
            }
        }
        cJSON_Delete(idx);
        if (st != TFAB_OK)
            goto err_close;
    } else if (missing) {
        if ((st = add_shard(h, "model.safetensors")) != TFAB_OK)
            goto err_close;
    } else {
        st = TFAB_ERR_INVALID;
        goto err_close;
    }
    src->path        = h->dir;
    src->ctx         = h;
    src->find        = hf_find;
    src->native_name = hf_native_name;
    src->close       = hf_close;
    return TFAB_OK;

err_close:
    hf_close(h);
    return st;
}
