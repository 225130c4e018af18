/* encode.c - tfab_tokenize: splits out special tokens (leftmost, longest first), runs the
 * vocab's algorithm on the text between them, and adds bos/eos. */
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

tfab_status_t tok_push(tok_vec_t *tv, int32_t id)
{
    if (tv->n == tv->cap) {
        size_t   cap = tv->cap ? tv->cap * 2 : 64;
        int32_t *nv  = realloc(tv->v, cap * sizeof(*nv));
        if (nv == NULL)
            return TFAB_ERR_NOMEM;
        tv->v   = nv;
        tv->cap = cap;
    }
    tv->v[tv->n++] = id;
    return TFAB_OK;
}

/* Id of the longest eligible special token starting at text[pos], or -1. */
static int32_t match_special(const tfab_vocab_t *v, const char *text, size_t len, size_t pos,
                             int parse_special, uint32_t *mlen_p)
{
    uint8_t b = (uint8_t)text[pos];
    for (uint32_t k = v->spec_first[b]; k < v->spec_first[b + 1]; k++) {
        const spec_tok_t *s = &v->spec[k];
        if (s->len > len - pos)
            continue;
        if (!parse_special && v->types[s->id] != TFAB_TOKEN_TYPE_USER_DEFINED)
            continue; /* user-defined tokens are always split out; control ones on request */
        uint32_t    l;
        const char *t = vocab_text(v, s->id, &l);
        if (memcmp(t, text + pos, l) == 0) {
            *mlen_p = l;
            return s->id;
        }
    }
    return -1;
}

/* SPM: optional leading space, then every ' ' becomes U+2581. */
static tfab_status_t spm_fragment(const tfab_vocab_t *v, const char *text, size_t len, int prefix,
                                  char **buf, size_t *cap, tok_vec_t *out)
{
    size_t need = (len + 1) * 3;
    if (need > *cap) {
        char *nb = realloc(*buf, need);
        if (nb == NULL)
            return TFAB_ERR_NOMEM;
        *buf = nb;
        *cap = need;
    }
    char  *b = *buf;
    size_t o = 0;
    for (size_t i = 0; i < len + (size_t)prefix; i++) {
        char c = i < (size_t)prefix ? ' ' : text[i - (size_t)prefix];
        if (c == ' ') {
            memcpy(b + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            b[o++] = c;
        }
    }
    return spm_encode(v, b, o, out);
}

static tfab_status_t fragment(const tfab_vocab_t *v, const char *text, size_t len, int prev_special,
                              char **buf, size_t *cap, tok_vec_t *out)
{
    if (v->kind == TFAB_VOCAB_SPM)
        return spm_fragment(v, text, len, v->add_space_prefix && prev_special, buf, cap, out);
    return bpe_encode(v, text, len, out);
}

tfab_status_t tfab_tokenize(const tfab_vocab_t *v, const char *text, size_t len, unsigned flags,
                            tfab_token_t *out, size_t max, size_t *n_p)
{
    tfab_status_t st   = TFAB_OK;
    tok_vec_t     toks = {0};
    char         *buf  = NULL;
    size_t        cap = 0, start = 0, pos = 0;
    int           prev_special = 1; /* SPM: the first fragment gets the space prefix */
    int           parse        = (flags & TFAB_ENCODE_PARSE_SPECIAL) != 0;
    if (v == NULL || (text == NULL && len) || n_p == NULL || (out == NULL && max)) {
        TFAB_ERROR(TOK_MOD, "tokenize: NULL argument");
        return TFAB_ERR_INVALID;
    }
    if ((flags & TFAB_ENCODE_ADD_SPECIAL) && v->add_bos &&
        (st = tok_push(&toks, v->bos)) != TFAB_OK)
        goto out_free;
    while (pos < len) {
        uint32_t mlen;
        int32_t  id = match_special(v, text, len, pos, parse, &mlen);
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > start && (st = fragment(v, text + start, pos - start, prev_special, &buf, &cap,
                                          &toks)) != TFAB_OK)
            goto out_free;
        if ((st = tok_push(&toks, id)) != TFAB_OK)
            goto out_free;
        prev_special = 1;
        pos = start = pos + mlen;
    }
    if (len > start &&
        (st = fragment(v, text + start, len - start, prev_special, &buf, &cap, &toks)) != TFAB_OK)
        goto out_free;
    if ((flags & TFAB_ENCODE_ADD_SPECIAL) && v->add_eos &&
        (st = tok_push(&toks, v->eos)) != TFAB_OK)
        goto out_free;
    if (toks.n && max)
        memcpy(out, toks.v, (toks.n < max ? toks.n : max) * sizeof(*out));
    *n_p = toks.n;
    if (toks.n > max)
        st = TFAB_ERR_RANGE;
out_free:
    if (st == TFAB_ERR_NOMEM)
        TFAB_ERROR(TOK_MOD, "tokenize: out of memory on %zu bytes of text", len);
    free(buf);
    free(toks.v);
    return st;
}
