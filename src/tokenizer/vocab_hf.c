/* vocab_hf.c - builds a vocabulary from a Hugging Face tokenizer.json (model type BPE, byte-level
 * or SentencePiece-style with byte fallback), parsed with cJSON. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

#define HF_MAX_TOKENS (1u << 24)

static const cJSON *get(const cJSON *o, const char *key)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *s = get(o, key);
    return cJSON_IsString(s) ? s->valuestring : NULL;
}

static int is_type(const cJSON *o, const char *type)
{
    const char *t = get_str(o, "type");
    return t != NULL && strcmp(t, type) == 0;
}

/* Collects Split regexes and notes a ByteLevel step that splits with GPT-2's regex. */
typedef struct pre_info {
    const char *regex[VOCAB_MAX_REGEX];
    uint32_t    n;
    int         bytelevel, too_many;
} pre_info_t;

static void collect_pre(const cJSON *pt, pre_info_t *pi, int depth)
{
    if (!cJSON_IsObject(pt) || depth > 8)
        return;
    if (is_type(pt, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(pt, "pretokenizers")) collect_pre(e, pi, depth + 1);
    } else if (is_type(pt, "Split")) {
        const char *re = get_str(get(pt, "pattern"), "Regex");
        if (re == NULL)
            re = get_str(get(pt, "pattern"), "String"); /* literal: fine for plain strings */
        if (re != NULL) {
            if (pi->n < VOCAB_MAX_REGEX)
                pi->regex[pi->n++] = re;
            else
                pi->too_many = 1;
        }
    } else if (is_type(pt, "ByteLevel")) {
        const cJSON *ur = get(pt, "use_regex");
        pi->bytelevel   = 1;
        if (!cJSON_IsFalse(ur)) {
            if (pi->n < VOCAB_MAX_REGEX)
                pi->regex[pi->n++] =
                    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
            else
                pi->too_many = 1;
        }
    }
}

/* The TemplateProcessing "single" template: special token before and after the sequence. */
static void find_template(const cJSON *pp, const char **bos, const char **eos, int depth)
{
    if (!cJSON_IsObject(pp) || depth > 8)
        return;
    if (is_type(pp, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, get(pp, "processors")) find_template(e, bos, eos, depth + 1);
        return;
    }
    if (!is_type(pp, "TemplateProcessing"))
        return;
    const cJSON *e;
    int          seen_seq = 0;
    cJSON_ArrayForEach(e, get(pp, "single"))
    {
        const char *id = get_str(get(e, "SpecialToken"), "id");
        if (get(e, "Sequence"))
            seen_seq = 1;
        else if (id && !seen_seq)
            *bos = id;
        else if (id && seen_seq)
            *eos = id;
    }
}

static void *grow(void *p, size_t n, size_t size)
{
    return realloc(p, n * size);
}

tfab_status_t tfab_vocab_load_hf_json(const char *json, size_t len, tfab_vocab_t **vocab_p)
{
    tfab_status_t       st    = TFAB_ERR_INVALID;
    tfab_vocab_params_t p     = {.bos = TFAB_TOKEN_NULL,
                                 .eos = TFAB_TOKEN_NULL,
                                 .unk = TFAB_TOKEN_NULL,
                                 .pad = TFAB_TOKEN_NULL,
                                 .eot = TFAB_TOKEN_NULL};
    const char        **texts = NULL, **merges = NULL;
    int32_t            *types  = NULL;
    float              *scores = NULL;
    char               *mpool  = NULL;
    pre_info_t          pi     = {0};
    cJSON              *root   = cJSON_ParseWithLength(json, len);
    if (root == NULL) {
        TFAB_ERROR(TOK_MOD, "tokenizer.json: not valid JSON (near byte %zu)",
                   (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
        return TFAB_ERR_INVALID;
    }
    const cJSON *model = get(root, "model"), *vocab = get(model, "vocab");
    const cJSON *added = get(root, "added_tokens"), *mj = get(model, "merges"), *e;
    if (!is_type(model, "BPE") || !cJSON_IsObject(vocab)) {
        TFAB_ERROR(TOK_MOD, "tokenizer.json: model must be of type BPE with a vocab object "
                            "(WordPiece, Unigram and WordLevel are not supported)");
        st = model && !is_type(model, "BPE") ? TFAB_ERR_UNSUPPORTED : TFAB_ERR_INVALID;
        goto out_free;
    }
    /* ids: the vocab and the added tokens together, gaps filled */
    int64_t max_id = -1;
    cJSON_ArrayForEach(e, vocab)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= HF_MAX_TOKENS ||
            e->valuedouble != (double)(int32_t)e->valuedouble)
            goto bad_id;
        if (e->valueint > max_id)
            max_id = e->valueint;
    }
    cJSON_ArrayForEach(e, added)
    {
        const cJSON *id = get(e, "id");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= HF_MAX_TOKENS ||
            id->valuedouble != (double)(int32_t)id->valuedouble || get_str(e, "content") == NULL)
            goto bad_id;
        if (id->valueint > max_id)
            max_id = id->valueint;
    }
    if (max_id < 0) {
        TFAB_ERROR(TOK_MOD, "tokenizer.json: empty vocabulary");
        goto out_free;
    }
    p.n_tokens = (uint32_t)max_id + 1;
    texts      = calloc(p.n_tokens, sizeof(*texts));
    types      = calloc(p.n_tokens, sizeof(*types));
    scores     = calloc(p.n_tokens, sizeof(*scores));
    if (texts == NULL || types == NULL || scores == NULL)
        goto out_nomem;
    cJSON_ArrayForEach(e, vocab)
    {
        texts[e->valueint] = e->string;
        types[e->valueint] = TFAB_TOKEN_TYPE_NORMAL;
    }
    cJSON_ArrayForEach(e, added)
    {
        int id    = get(e, "id")->valueint;
        texts[id] = get_str(e, "content");
        types[id] = cJSON_IsTrue(get(e, "special")) ? TFAB_TOKEN_TYPE_CONTROL
                                                    : TFAB_TOKEN_TYPE_USER_DEFINED;
    }
    for (uint32_t i = 0; i < p.n_tokens; i++)
        if (texts[i] == NULL) {
            texts[i] = "";
            types[i] = TFAB_TOKEN_TYPE_UNUSED;
        }

    /* kind: byte fallback or a U+2581 normalizer means SentencePiece-style */
    char *norm = cJSON_PrintUnformatted(get(root, "normalizer"));
    int   spm =
        cJSON_IsTrue(get(model, "byte_fallback")) || (norm && strstr(norm, "\xe2\x96\x81") != NULL);
    free(norm);
    p.kind = spm ? TFAB_VOCAB_SPM : TFAB_VOCAB_BPE;

    /* merges: "a b" strings or ["a", "b"] pairs */
    int n_merges = cJSON_GetArraySize(mj);
    if (n_merges > 0) {
        size_t total = 0;
        cJSON_ArrayForEach(e, mj)
        {
            if (cJSON_IsString(e))
                total += strlen(e->valuestring) + 1;
            else if (cJSON_GetArraySize(e) == 2 && cJSON_IsString(cJSON_GetArrayItem(e, 0)) &&
                     cJSON_IsString(cJSON_GetArrayItem(e, 1)))
                total += strlen(cJSON_GetArrayItem(e, 0)->valuestring) +
                         strlen(cJSON_GetArrayItem(e, 1)->valuestring) + 2;
            else {
                TFAB_ERROR(TOK_MOD,
                           "tokenizer.json: a merge is neither \"a b\" nor [\"a\", \"b\"]");
                goto out_free;
            }
        }
        merges = grow(NULL, (size_t)n_merges, sizeof(*merges));
        mpool  = malloc(total ? total : 1);
        if (merges == NULL || mpool == NULL)
            goto out_nomem;
        size_t o = 0;
        int    r = 0;
        cJSON_ArrayForEach(e, mj)
        {
            merges[r] = mpool + o;
            if (cJSON_IsString(e)) {
                o += (size_t)sprintf(mpool + o, "%s", e->valuestring) + 1;
            } else {
                o += (size_t)sprintf(mpool + o, "%s %s", cJSON_GetArrayItem(e, 0)->valuestring,
                                     cJSON_GetArrayItem(e, 1)->valuestring) +
                     1;
            }
            r++;
        }
        p.merges   = merges;
        p.n_merges = (uint32_t)n_merges;
        p.field_mask |= TFAB_VOCAB_PARAM_MERGES;
    }
    p.tokens = texts;
    if (spm) {
        /* SentencePiece merges by score: earlier merges score higher. The text -> id lookups go
         * through a first, score-less vocab (hashed). */
        tfab_vocab_t       *tmp;
        tfab_vocab_params_t tp = {.kind = TFAB_VOCAB_SPM, .n_tokens = p.n_tokens, .tokens = texts};
        if ((st = tfab_vocab_create(&tp, &tmp)) != TFAB_OK)
            goto out_free;
        for (uint32_t i = 0; i < p.n_tokens; i++)
            scores[i] = -1e9f;
        for (int r = n_merges - 1; r >= 0; r--) {
            const char *sp = strchr(merges[r] + (merges[r][0] != '\0'), ' ');
            char        buf[512];
            if (sp == NULL || strlen(merges[r]) >= sizeof(buf))
                continue;
            size_t ll = (size_t)(sp - merges[r]);
            memcpy(buf, merges[r], ll);
            strcpy(buf + ll, sp + 1);
            tfab_token_t id = tfab_vocab_find(tmp, buf, strlen(buf));
            if (id != TFAB_TOKEN_NULL)
                scores[id] = -(float)r;
        }
        tfab_vocab_destroy(tmp);
        for (uint32_t i = 0; i < p.n_tokens; i++) {
            const char *t = texts[i];
            if (strlen(t) == 6 && strncmp(t, "<0x", 3) == 0 && t[5] == '>' &&
                types[i] == TFAB_TOKEN_TYPE_NORMAL)
                types[i] = TFAB_TOKEN_TYPE_BYTE;
        }
        p.scores = scores;
        p.field_mask |= TFAB_VOCAB_PARAM_SCORES;
        /* Prepend U+2581 in the normalizer is the add_space_prefix of GGUF */
        norm               = cJSON_PrintUnformatted(get(root, "normalizer"));
        p.add_space_prefix = norm != NULL && strstr(norm, "Prepend") != NULL;
        free(norm);
        p.field_mask |= TFAB_VOCAB_PARAM_SPACE_PREFIX;
    } else {
        collect_pre(get(root, "pre_tokenizer"), &pi, 0);
        if (pi.too_many) {
            TFAB_ERROR(TOK_MOD, "tokenizer.json: more than %d pre-tokenizer regexes",
                       VOCAB_MAX_REGEX);
            st = TFAB_ERR_UNSUPPORTED;
            goto out_free;
        }
        if (pi.n == 0) /* one word per fragment */
            pi.regex[pi.n++] = "(?s:.+)";
        p.pre_regex   = pi.regex;
        p.n_pre_regex = pi.n;
        p.field_mask |= TFAB_VOCAB_PARAM_PRE_REGEX;
        p.ignore_merges = cJSON_IsTrue(get(model, "ignore_merges"));
        p.field_mask |= TFAB_VOCAB_PARAM_IGNORE_MERGES;
    }
    p.types = types;
    p.field_mask |= TFAB_VOCAB_PARAM_TYPES | TFAB_VOCAB_PARAM_SPECIAL_IDS;

    /* special ids: bos/eos from the post-processor template, eos by name otherwise */
    const char *bos = NULL, *eos = NULL, *unk = get_str(model, "unk_token");
    find_template(get(root, "post_processor"), &bos, &eos, 0);
    static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>",
                                            "<|im_end|>", "<|eot_id|>"};
    for (uint32_t i = 0; i < p.n_tokens; i++) {
        const char *t = texts[i];
        if (bos && strcmp(t, bos) == 0)
            p.bos = (tfab_token_t)i;
        if (eos && strcmp(t, eos) == 0)
            p.eos = (tfab_token_t)i;
        if (unk && strcmp(t, unk) == 0)
            p.unk = (tfab_token_t)i;
    }
    p.add_bos = p.bos != TFAB_TOKEN_NULL;
    p.add_eos = p.eos != TFAB_TOKEN_NULL;
    p.field_mask |= TFAB_VOCAB_PARAM_ADD_BOS | TFAB_VOCAB_PARAM_ADD_EOS;
    for (size_t k = 0; k < sizeof(eos_names) / sizeof(eos_names[0]) && p.eos == TFAB_TOKEN_NULL;
         k++)
        for (uint32_t i = 0; i < p.n_tokens; i++)
            if (types[i] == TFAB_TOKEN_TYPE_CONTROL && strcmp(texts[i], eos_names[k]) == 0) {
                p.eos = (tfab_token_t)i;
                break;
            }
    st = tfab_vocab_create(&p, vocab_p);
    goto out_free;

bad_id:
    TFAB_ERROR(TOK_MOD,
               "tokenizer.json: token ids must be integers in [0, %u) and added tokens "
               "need a content string",
               HF_MAX_TOKENS);
    st = TFAB_ERR_INVALID;
    goto out_free;
out_nomem:
    TFAB_ERROR(TOK_MOD, "tokenizer.json: out of memory");
    st = TFAB_ERR_NOMEM;
out_free:
    free(mpool);
    free(merges);
    free(scores);
    free(types);
    free(texts);
    cJSON_Delete(root);
    return st;
}

tfab_status_t tfab_vocab_load_hf_file(const char *path, tfab_vocab_t **vocab_p)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        TFAB_ERROR(TOK_MOD, "%s: cannot open: %m", path);
        return TFAB_ERR_IO;
    }
    char  *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap      = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                TFAB_ERROR(TOK_MOD, "%s: out of memory reading the file", path);
                return TFAB_ERR_NOMEM;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        TFAB_ERROR(TOK_MOD, "%s: read error", path);
        return TFAB_ERR_IO;
    }
    tfab_status_t st = tfab_vocab_load_hf_json(buf, n, vocab_p);
    free(buf);
    return st;
}
