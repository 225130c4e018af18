/* vocab_gguf.c - builds a vocabulary from GGUF tokenizer.ggml.* metadata (via tfab/gguf.h). */
#include <stdlib.h>
#include <string.h>
#include <tfab/gguf.h>
#include <tfab/log.h>
#include "vocab_int.h"

/* Optional token id key: sets *id_p when present and valid. */
static tfab_status_t get_id(const tfab_gguf_t *g, const char *key, tfab_token_t *id_p)
{
    uint32_t      u;
    tfab_status_t st = tfab_gguf_get_u32(g, key, &u);
    if (st == TFAB_ERR_NOT_FOUND)
        return TFAB_OK;
    if (st != TFAB_OK)
        return st;
    if (u > INT32_MAX) {
        TFAB_ERROR(TOK_MOD, "%s: %s = %u is not a token id", tfab_gguf_name(g), key, u);
        return TFAB_ERR_INVALID;
    }
    *id_p = (tfab_token_t)u;
    return TFAB_OK;
}

static tfab_status_t get_flag(const tfab_gguf_t *g, const char *key, int *v_p, uint64_t bit,
                              uint64_t *mask)
{
    int           b;
    tfab_status_t st = tfab_gguf_get_bool(g, key, &b);
    if (st == TFAB_ERR_NOT_FOUND)
        return TFAB_OK;
    if (st != TFAB_OK)
        return st;
    *v_p = b;
    *mask |= bit;
    return TFAB_OK;
}

/* A NUL-terminated copy of a GGUF string value. */
static char *dup_str(const tfab_gguf_t *g, const char *key)
{
    const char *s;
    size_t      n;
    if (tfab_gguf_get_str(g, key, &s, &n) != TFAB_OK)
        return NULL;
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

tfab_status_t tfab_vocab_load_gguf(const tfab_gguf_t *g, tfab_vocab_t **vocab_p)
{
    tfab_status_t       st;
    tfab_vocab_params_t p = {.bos = TFAB_TOKEN_NULL,
                             .eos = TFAB_TOKEN_NULL,
                             .unk = TFAB_TOKEN_NULL,
                             .pad = TFAB_TOKEN_NULL,
                             .eot = TFAB_TOKEN_NULL};
    tfab_gguf_arr_t     toks, arr;
    const char         *name  = tfab_gguf_name(g);
    char               *model = NULL, *pre = NULL, *tmpl = NULL, *mpool = NULL;
    const char        **texts = NULL, **merges = NULL;
    uint32_t           *lens   = NULL;
    float              *scores = NULL;
    int32_t            *types  = NULL;

    if ((model = dup_str(g, "tokenizer.ggml.model")) == NULL) {
        TFAB_ERROR(TOK_MOD, "%s: no tokenizer.ggml.model string: not a model with a vocabulary",
                   name);
        return TFAB_ERR_INVALID;
    }
    if (strcmp(model, "llama") == 0) {
        p.kind = TFAB_VOCAB_SPM;
    } else if (strcmp(model, "gpt2") == 0) {
        p.kind = TFAB_VOCAB_BPE;
    } else {
        TFAB_ERROR(TOK_MOD, "%s: tokenizer model '%s' is not supported (llama, gpt2)", name, model);
        st = TFAB_ERR_UNSUPPORTED;
        goto out_free;
    }
    if ((st = tfab_gguf_get_arr(g, "tokenizer.ggml.tokens", &toks)) != TFAB_OK ||
        toks.type != TFAB_GGUF_STRING || toks.n == 0 || toks.n > (1u << 30)) {
        TFAB_ERROR(TOK_MOD, "%s: tokenizer.ggml.tokens must be a non-empty string array", name);
        st = TFAB_ERR_INVALID;
        goto out_free;
    }
    p.n_tokens = (uint32_t)toks.n;
    texts      = malloc(toks.n * sizeof(*texts));
    lens       = malloc(toks.n * sizeof(*lens));
    if (texts == NULL || lens == NULL) {
        st = TFAB_ERR_NOMEM;
        goto out_free;
    }
    for (uint64_t i = 0; i < toks.n; i++) {
        size_t n;
        if ((st = tfab_gguf_arr_str(g, &toks, i, &texts[i], &n)) != TFAB_OK)
            goto out_free;
        if (n > UINT32_MAX / 2) {
            st = TFAB_ERR_INVALID;
            goto out_free;
        }
        lens[i] = (uint32_t)n;
    }
    p.tokens     = texts;
    p.token_lens = lens;

    st = tfab_gguf_get_arr(g, "tokenizer.ggml.scores", &arr);
    if (st == TFAB_OK) {
        if (arr.type != TFAB_GGUF_F32 || arr.n < toks.n) {
            TFAB_ERROR(TOK_MOD, "%s: tokenizer.ggml.scores must be f32[%u]", name, p.n_tokens);
            st = TFAB_ERR_INVALID;
            goto out_free;
        }
        if ((scores = malloc(toks.n * sizeof(*scores))) == NULL) {
            st = TFAB_ERR_NOMEM;
            goto out_free;
        }
        for (uint64_t i = 0; i < toks.n; i++)
            scores[i] = tfab_gguf_arr_f32(&arr, i);
        p.scores = scores;
        p.field_mask |= TFAB_VOCAB_PARAM_SCORES;
    } else if (st != TFAB_ERR_NOT_FOUND) {
        goto out_free;
    }
    st = tfab_gguf_get_arr(g, "tokenizer.ggml.token_type", &arr);
    if (st == TFAB_OK) {
        if ((arr.type != TFAB_GGUF_I32 && arr.type != TFAB_GGUF_U32) || arr.n < toks.n) {
            TFAB_ERROR(TOK_MOD, "%s: tokenizer.ggml.token_type must be i32[%u]", name, p.n_tokens);
            st = TFAB_ERR_INVALID;
            goto out_free;
        }
        if ((types = malloc(toks.n * sizeof(*types))) == NULL) {
            st = TFAB_ERR_NOMEM;
            goto out_free;
        }
        for (uint64_t i = 0; i < toks.n; i++)
            types[i] = tfab_gguf_arr_i32(&arr, i);
        p.types = types;
        p.field_mask |= TFAB_VOCAB_PARAM_TYPES;
    } else if (st != TFAB_ERR_NOT_FOUND) {
        goto out_free;
    }
    st = tfab_gguf_get_arr(g, "tokenizer.ggml.merges", &arr);
    if (st == TFAB_OK) {
        if (arr.type != TFAB_GGUF_STRING || arr.n > (1u << 30)) {
            TFAB_ERROR(TOK_MOD, "%s: tokenizer.ggml.merges must be a string array", name);
            st = TFAB_ERR_INVALID;
            goto out_free;
        }
        size_t total = 0;
        for (uint64_t i = 0; i < arr.n; i++) {
            const char *s;
            size_t      n;
            if ((st = tfab_gguf_arr_str(g, &arr, i, &s, &n)) != TFAB_OK)
                goto out_free;
            total += n + 1;
        }
        merges = malloc((arr.n ? arr.n : 1) * sizeof(*merges));
        mpool  = malloc(total ? total : 1);
        if (merges == NULL || mpool == NULL) {
            st = TFAB_ERR_NOMEM;
            goto out_free;
        }
        size_t o = 0;
        for (uint64_t i = 0; i < arr.n; i++) {
            const char *s;
            size_t      n;
            (void)tfab_gguf_arr_str(g, &arr, i, &s, &n);
            memcpy(mpool + o, s, n);
            mpool[o + n] = '\0';
            /* a NUL inside a merge would cut it short: such a merge then fails to resolve */
            merges[i] = mpool + o;
            o += n + 1;
        }
        p.merges   = merges;
        p.n_merges = (uint32_t)arr.n;
        p.field_mask |= TFAB_VOCAB_PARAM_MERGES;
    } else if (st != TFAB_ERR_NOT_FOUND) {
        goto out_free;
    }
    if ((pre = dup_str(g, "tokenizer.ggml.pre")) != NULL) {
        p.pre = pre;
        p.field_mask |= TFAB_VOCAB_PARAM_PRE;
    }
    if ((tmpl = dup_str(g, "tokenizer.chat_template")) != NULL) {
        p.chat_template = tmpl;
        p.field_mask |= TFAB_VOCAB_PARAM_CHAT_TMPL;
    }
    p.field_mask |= TFAB_VOCAB_PARAM_SPECIAL_IDS;
    if ((st = get_id(g, "tokenizer.ggml.bos_token_id", &p.bos)) != TFAB_OK ||
        (st = get_id(g, "tokenizer.ggml.eos_token_id", &p.eos)) != TFAB_OK ||
        (st = get_id(g, "tokenizer.ggml.unknown_token_id", &p.unk)) != TFAB_OK ||
        (st = get_id(g, "tokenizer.ggml.padding_token_id", &p.pad)) != TFAB_OK ||
        (st = get_id(g, "tokenizer.ggml.eot_token_id", &p.eot)) != TFAB_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_bos_token", &p.add_bos, TFAB_VOCAB_PARAM_ADD_BOS,
                       &p.field_mask)) != TFAB_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_eos_token", &p.add_eos, TFAB_VOCAB_PARAM_ADD_EOS,
                       &p.field_mask)) != TFAB_OK ||
        (st = get_flag(g, "tokenizer.ggml.add_space_prefix", &p.add_space_prefix,
                       TFAB_VOCAB_PARAM_SPACE_PREFIX, &p.field_mask)) != TFAB_OK)
        goto out_free;
    st = tfab_vocab_create(&p, vocab_p);
out_free:
    if (st == TFAB_ERR_NOMEM)
        TFAB_ERROR(TOK_MOD, "%s: out of memory loading the vocabulary", name);
    free(mpool);
    free(merges);
    free(types);
    free(scores);
    free(lens);
    free(texts);
    free(tmpl);
    free(pre);
    free(model);
    return st;
}

tfab_status_t tfab_vocab_load_gguf_file(const char *path, tfab_vocab_t **vocab_p)
{
    tfab_gguf_t  *g;
    tfab_status_t st = tfab_gguf_open(path, &g);
    if (st != TFAB_OK)
        return st;
    st = tfab_vocab_load_gguf(g, vocab_p);
    tfab_gguf_close(g);
    return st;
}
