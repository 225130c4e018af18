/* vocab.c - builds the immutable vocabulary (token texts, hashes, merges, special-token index)
 * from format-independent parameters, and answers queries on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n && c < (1u << 31))
        c <<= 1;
    return c;
}

tfab_token_t tfab_vocab_find(const tfab_vocab_t *v, const char *text, size_t len)
{
    if (text == NULL)
        text = "";
    uint32_t i = vocab_hash(text, len) & v->tok_mask;
    for (;; i = (i + 1) & v->tok_mask) {
        int32_t id = v->tok_tab[i];
        if (id < 0)
            return TFAB_TOKEN_NULL;
        uint32_t    l;
        const char *t = vocab_text(v, id, &l);
        if (l == len && memcmp(t, text, len) == 0)
            return id;
    }
}

static void tok_insert(tfab_vocab_t *v, int32_t id)
{
    uint32_t    len;
    const char *text = vocab_text(v, id, &len);
    uint32_t    i    = vocab_hash(text, len) & v->tok_mask;
    for (;; i = (i + 1) & v->tok_mask) {
        int32_t old = v->tok_tab[i];
        if (old < 0) {
            v->tok_tab[i] = id;
            return;
        }
        uint32_t    l;
        const char *t = vocab_text(v, old, &l);
        if (l == len && memcmp(t, text, len) == 0) {
            v->tok_tab[i] = id; /* duplicate text: the last id wins */
            return;
        }
    }
}

static inline uint32_t merge_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key;
}

int32_t vocab_merge_rank(const tfab_vocab_t *v, int32_t left, int32_t right, int32_t *result_p)
{
    if (v->merge_tab == NULL || left < 0 || right < 0)
        return -1;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint32_t i = merge_hash(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        const merge_slot_t *s = &v->merge_tab[i];
        if (s->key == UINT64_MAX)
            return -1;
        if (s->key == key) {
            *result_p = s->result;
            return s->rank;
        }
    }
}

/* Insert a merge unless the pair is already there (the first, lowest rank, wins). */
static void merge_insert(tfab_vocab_t *v, int32_t left, int32_t right, int32_t rank, int32_t result)
{
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    for (uint32_t i = merge_hash(key) & v->merge_mask;; i = (i + 1) & v->merge_mask) {
        merge_slot_t *s = &v->merge_tab[i];
        if (s->key == key)
            return;
        if (s->key == UINT64_MAX) {
            s->key    = key;
            s->rank   = rank;
            s->result = result;
            return;
        }
    }
}

static int is_byte_token(const char *t, uint32_t len, uint8_t *b_p)
{
    static const char hex[] = "0123456789ABCDEF";
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>')
        return 0;
    const char *h = strchr(hex, t[3]), *l = strchr(hex, t[4]);
    if (h == NULL || l == NULL || t[3] == '\0' || t[4] == '\0')
        return 0;
    *b_p = (uint8_t)((h - hex) * 16 + (l - hex));
    return 1;
}

static int spec_cmp(const void *a, const void *b, const tfab_vocab_t *v)
{
    const spec_tok_t *x = a, *y = b;
    uint32_t          lx, ly;
    uint8_t           fx = (uint8_t)vocab_text(v, x->id, &lx)[0];
    uint8_t           fy = (uint8_t)vocab_text(v, y->id, &ly)[0];
    if (fx != fy)
        return fx < fy ? -1 : 1;
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* qsort has no context argument in C11: a small insertion-free merge sort with one. */
static void spec_sort(spec_tok_t *a, spec_tok_t *tmp, size_t n, const tfab_vocab_t *v)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    spec_sort(a, tmp, h, v);
    spec_sort(a + h, tmp, n - h, v);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = spec_cmp(&a[j], &a[i], v) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof(*a));
}

static tfab_status_t build_special_index(tfab_vocab_t *v)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        uint8_t t = v->types[i];
        if ((t == TFAB_TOKEN_TYPE_CONTROL || t == TFAB_TOKEN_TYPE_USER_DEFINED ||
             t == TFAB_TOKEN_TYPE_UNKNOWN) &&
            v->off[i + 1] - v->off[i] > 1)
            n++;
    }
    v->n_spec       = n;
    v->spec         = calloc(n ? n : 1, sizeof(*v->spec));
    spec_tok_t *tmp = calloc(n ? n : 1, sizeof(*tmp));
    if (v->spec == NULL || tmp == NULL) {
        free(tmp);
        return TFAB_ERR_NOMEM;
    }
    n = 0;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        uint8_t  t = v->types[i];
        uint32_t len;
        vocab_text(v, (int32_t)i, &len);
        if ((t == TFAB_TOKEN_TYPE_CONTROL || t == TFAB_TOKEN_TYPE_USER_DEFINED ||
             t == TFAB_TOKEN_TYPE_UNKNOWN) &&
            len > 0)
            v->spec[n++] = (spec_tok_t){.id = (int32_t)i, .len = len};
    }
    spec_sort(v->spec, tmp, n, v);
    free(tmp);
    uint32_t k = 0;
    for (uint32_t b = 0; b < 256; b++) {
        v->spec_first[b] = k;
        while (k < n) {
            uint32_t l;
            if ((uint8_t)vocab_text(v, v->spec[k].id, &l)[0] != b)
                break;
            k++;
        }
    }
    v->spec_first[256] = n;
    return TFAB_OK;
}

static tfab_status_t build_merges(tfab_vocab_t *v, const tfab_vocab_params_t *p)
{
    if (!(p->field_mask & TFAB_VOCAB_PARAM_MERGES) || p->n_merges == 0)
        return TFAB_OK;
    if (p->merges == NULL) {
        TFAB_ERROR(TOK_MOD, "vocab: %u merges but no merge array", p->n_merges);
        return TFAB_ERR_INVALID;
    }
    v->merge_mask = pow2_at_least(2ull * p->n_merges) - 1;
    v->merge_tab  = malloc(((size_t)v->merge_mask + 1) * sizeof(*v->merge_tab));
    if (v->merge_tab == NULL)
        return TFAB_ERR_NOMEM;
    for (size_t i = 0; i <= v->merge_mask; i++)
        v->merge_tab[i].key = UINT64_MAX;
    char  *buf    = NULL;
    size_t bufcap = 0, skipped = 0;
    for (uint32_t r = 0; r < p->n_merges; r++) {
        const char *m = p->merges[r];
        if (m == NULL) {
            skipped++;
            continue;
        }
        size_t      n  = strlen(m);
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        if (sp == NULL) {
            skipped++;
            continue;
        }
        size_t  ll = (size_t)(sp - m), rl = n - ll - 1;
        int32_t l = tfab_vocab_find(v, m, ll), rr = tfab_vocab_find(v, sp + 1, rl);
        if (ll + rl > bufcap) {
            char *nb = realloc(buf, ll + rl + 64);
            if (nb == NULL) {
                free(buf);
                return TFAB_ERR_NOMEM;
            }
            buf    = nb;
            bufcap = ll + rl + 64;
        }
        memcpy(buf, m, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t res = tfab_vocab_find(v, buf, ll + rl);
        if (l < 0 || rr < 0 || res < 0) {
            skipped++;
            continue;
        }
        merge_insert(v, l, rr, (int32_t)r, res);
    }
    free(buf);
    if (skipped)
        TFAB_DEBUG(TOK_MOD, "vocab: skipped %zu of %u merges whose parts are not tokens", skipped,
                   p->n_merges);
    return TFAB_OK;
}

static tfab_status_t check_special(const char *name, tfab_token_t id, uint32_t n)
{
    if (id == TFAB_TOKEN_NULL || (id >= 0 && (uint32_t)id < n))
        return TFAB_OK;
    TFAB_ERROR(TOK_MOD, "vocab: %s token id %d is outside the vocabulary (%u tokens)", name, id, n);
    return TFAB_ERR_INVALID;
}

tfab_status_t tfab_vocab_create(const tfab_vocab_params_t *p, tfab_vocab_t **vocab_p)
{
    tfab_status_t st;
    if (p == NULL || vocab_p == NULL || p->n_tokens == 0 || p->tokens == NULL ||
        (p->kind != TFAB_VOCAB_SPM && p->kind != TFAB_VOCAB_BPE)) {
        TFAB_ERROR(TOK_MOD, "vocab: need a kind (SPM or BPE) and at least one token");
        return TFAB_ERR_INVALID;
    }
    if (p->n_tokens > (1u << 30)) {
        TFAB_ERROR(TOK_MOD, "vocab: %u tokens is more than supported (2^30)", p->n_tokens);
        return TFAB_ERR_INVALID;
    }
    tfab_vocab_t *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return TFAB_ERR_NOMEM;
    v->kind     = p->kind;
    v->n_tokens = p->n_tokens;
    v->bos = v->eos = v->unk = v->pad = v->eot = TFAB_TOKEN_NULL;

    /* texts */
    uint64_t total = 0;
    for (uint32_t i = 0; i < p->n_tokens; i++) {
        if (p->tokens[i] == NULL) {
            TFAB_ERROR(TOK_MOD, "vocab: token %u has no text", i);
            st = TFAB_ERR_INVALID;
            goto err_free;
        }
        total += (p->token_lens ? p->token_lens[i] : strlen(p->tokens[i])) + 1;
    }
    v->off    = malloc(((size_t)p->n_tokens + 1) * sizeof(*v->off));
    v->pool   = malloc(total);
    v->scores = calloc(p->n_tokens, sizeof(*v->scores));
    v->types  = malloc(p->n_tokens);
    if (v->off == NULL || v->pool == NULL || v->scores == NULL || v->types == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_free;
    }
    uint64_t o = 0;
    for (uint32_t i = 0; i < p->n_tokens; i++) {
        size_t len = p->token_lens ? p->token_lens[i] : strlen(p->tokens[i]);
        v->off[i]  = o;
        memcpy(v->pool + o, p->tokens[i], len);
        v->pool[o + len] = '\0';
        o += len + 1;
        uint8_t b;
        int32_t t = TFAB_TOKEN_TYPE_NORMAL;
        if ((p->field_mask & TFAB_VOCAB_PARAM_TYPES) && p->types)
            t = p->types[i];
        else if (p->kind == TFAB_VOCAB_SPM && is_byte_token(p->tokens[i], (uint32_t)len, &b))
            t = TFAB_TOKEN_TYPE_BYTE;
        v->types[i] =
            (t >= 0 && t <= TFAB_TOKEN_TYPE_BYTE) ? (uint8_t)t : TFAB_TOKEN_TYPE_UNDEFINED;
        if ((p->field_mask & TFAB_VOCAB_PARAM_SCORES) && p->scores)
            v->scores[i] = p->scores[i];
    }
    v->off[p->n_tokens] = o;

    v->tok_mask = pow2_at_least(2ull * p->n_tokens) - 1;
    v->tok_tab  = malloc(((size_t)v->tok_mask + 1) * sizeof(*v->tok_tab));
    if (v->tok_tab == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_free;
    }
    memset(v->tok_tab, 0xff, ((size_t)v->tok_mask + 1) * sizeof(*v->tok_tab));
    for (uint32_t i = 0; i < p->n_tokens; i++)
        tok_insert(v, (int32_t)i);

    /* single-byte tokens */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int  n;
        if (p->kind == TFAB_VOCAB_SPM) {
            n = snprintf(buf, sizeof(buf), "<0x%02X>", b);
        } else {
            uint32_t cp = bytemap_cp((uint8_t)b);
            n           = cp < 0x80 ? 1 : 2; /* the mapping never exceeds U+07FF */
            if (n == 1)
                buf[0] = (char)cp;
            else {
                buf[0] = (char)(0xc0 | (cp >> 6));
                buf[1] = (char)(0x80 | (cp & 0x3f));
            }
        }
        v->byte_tok[b] = tfab_vocab_find(v, buf, (size_t)n);
    }

    /* special ids and flags */
    if (p->field_mask & TFAB_VOCAB_PARAM_SPECIAL_IDS) {
        if ((st = check_special("bos", p->bos, p->n_tokens)) != TFAB_OK ||
            (st = check_special("eos", p->eos, p->n_tokens)) != TFAB_OK ||
            (st = check_special("unk", p->unk, p->n_tokens)) != TFAB_OK ||
            (st = check_special("pad", p->pad, p->n_tokens)) != TFAB_OK ||
            (st = check_special("eot", p->eot, p->n_tokens)) != TFAB_OK)
            goto err_free;
        v->bos = p->bos;
        v->eos = p->eos;
        v->unk = p->unk;
        v->pad = p->pad;
        v->eot = p->eot;
    }
    v->add_space_prefix = p->kind == TFAB_VOCAB_SPM;
    if (p->field_mask & TFAB_VOCAB_PARAM_SPACE_PREFIX)
        v->add_space_prefix = p->add_space_prefix != 0 && p->kind == TFAB_VOCAB_SPM;
    v->add_bos = p->kind == TFAB_VOCAB_SPM;

    if (p->kind == TFAB_VOCAB_BPE) {
        const char *pre =
            (p->field_mask & TFAB_VOCAB_PARAM_PRE) && p->pre && p->pre[0] ? p->pre : "default";
        const char *const *pats;
        uint32_t           n_pats = 0;
        if ((p->field_mask & TFAB_VOCAB_PARAM_PRE_REGEX) && p->n_pre_regex) {
            pats   = p->pre_regex;
            n_pats = p->n_pre_regex;
            pre    = "custom";
        } else if ((pats = pretok_patterns(pre, &n_pats, &v->ignore_merges)) == NULL) {
            TFAB_ERROR(TOK_MOD,
                       "vocab: pre-tokenizer '%s' is not supported (known: default, gpt-2, "
                       "llama-bpe, qwen2, qwen35, starcoder, falcon, deepseek-llm, deepseek-coder)",
                       pre);
            st = TFAB_ERR_UNSUPPORTED;
            goto err_free;
        }
        if (n_pats > VOCAB_MAX_REGEX || pats == NULL) {
            TFAB_ERROR(TOK_MOD, "vocab: %u pre-tokenizer regexes, at most %d supported", n_pats,
                       VOCAB_MAX_REGEX);
            st = TFAB_ERR_INVALID;
            goto err_free;
        }
        snprintf(v->pre, sizeof(v->pre), "%s", pre);
        for (uint32_t i = 0; i < n_pats; i++) {
            if (pats[i] == NULL || (v->regex[i] = pretok_compile(pats[i])) == NULL) {
                st = TFAB_ERR_INVALID;
                goto err_free;
            }
            v->n_regex = i + 1;
        }
        /* llama3-style vocabs add BOS by default, like llama.cpp */
        v->add_bos = v->ignore_merges && strcmp(pre, "custom") != 0;
    }
    if ((p->field_mask & TFAB_VOCAB_PARAM_IGNORE_MERGES) && p->kind == TFAB_VOCAB_BPE)
        v->ignore_merges = p->ignore_merges != 0;
    if (p->field_mask & TFAB_VOCAB_PARAM_ADD_BOS)
        v->add_bos = p->add_bos != 0;
    if (p->field_mask & TFAB_VOCAB_PARAM_ADD_EOS)
        v->add_eos = p->add_eos != 0;
    if (v->add_bos && v->bos == TFAB_TOKEN_NULL)
        v->add_bos = 0;
    if (v->add_eos && v->eos == TFAB_TOKEN_NULL)
        v->add_eos = 0;

    if ((p->field_mask & TFAB_VOCAB_PARAM_CHAT_TMPL) && p->chat_template &&
        (v->chat_template = strdup(p->chat_template)) == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_free;
    }
    if ((st = build_merges(v, p)) != TFAB_OK || (st = build_special_index(v)) != TFAB_OK)
        goto err_free;
    *vocab_p = v;
    return TFAB_OK;

err_free:
    if (st == TFAB_ERR_NOMEM)
        TFAB_ERROR(TOK_MOD, "vocab: out of memory building a vocabulary of %u tokens", p->n_tokens);
    tfab_vocab_destroy(v);
    return st;
}

void tfab_vocab_destroy(tfab_vocab_t *v)
{
    if (v == NULL)
        return;
    for (uint32_t i = 0; i < v->n_regex; i++)
        pretok_free(v->regex[i]);
    free(v->chat_template);
    free(v->spec);
    free(v->merge_tab);
    free(v->tok_tab);
    free(v->types);
    free(v->scores);
    free(v->pool);
    free(v->off);
    free(v);
}

tfab_vocab_kind_t tfab_vocab_kind(const tfab_vocab_t *v)
{
    return v->kind;
}
uint32_t tfab_vocab_n_tokens(const tfab_vocab_t *v)
{
    return v->n_tokens;
}
tfab_token_t tfab_vocab_bos(const tfab_vocab_t *v)
{
    return v->bos;
}
tfab_token_t tfab_vocab_eos(const tfab_vocab_t *v)
{
    return v->eos;
}
tfab_token_t tfab_vocab_unk(const tfab_vocab_t *v)
{
    return v->unk;
}
tfab_token_t tfab_vocab_pad(const tfab_vocab_t *v)
{
    return v->pad;
}
int tfab_vocab_add_bos(const tfab_vocab_t *v)
{
    return v->add_bos;
}
int tfab_vocab_add_eos(const tfab_vocab_t *v)
{
    return v->add_eos;
}
const char *tfab_vocab_pre(const tfab_vocab_t *v)
{
    return v->pre;
}
const char *tfab_vocab_chat_template(const tfab_vocab_t *v)
{
    return v->chat_template;
}

const char *tfab_vocab_token_text(const tfab_vocab_t *v, tfab_token_t id, size_t *len_p)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return NULL;
    uint32_t    len;
    const char *t = vocab_text(v, id, &len);
    if (len_p)
        *len_p = len;
    return t;
}

tfab_token_type_t tfab_vocab_token_type(const tfab_vocab_t *v, tfab_token_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return TFAB_TOKEN_TYPE_UNDEFINED;
    return (tfab_token_type_t)v->types[id];
}

float tfab_vocab_token_score(const tfab_vocab_t *v, tfab_token_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0.0f;
    return v->scores[id];
}

int tfab_vocab_is_eog(const tfab_vocab_t *v, tfab_token_t id)
{
    static const char *const names[] = {"<|eot_id|>",     "<|im_end|>",    "<|end|>",
                                        "<|eom_id|>",     "<end_of_turn>", "<|endoftext|>",
                                        "<|end_of_text|>"};
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0;
    if (id == v->eos || id == v->eot)
        return 1;
    if (v->types[id] != TFAB_TOKEN_TYPE_CONTROL)
        return 0;
    uint32_t    len;
    const char *t = vocab_text(v, id, &len);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == len && memcmp(names[i], t, len) == 0)
            return 1;
    return 0;
}
