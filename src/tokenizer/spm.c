/* spm.c - SentencePiece-style BPE: merge adjacent symbols whose concatenation is a token, the
 * highest-scoring first, then fall back to <0xXX> byte tokens for what is left. */
#include <stdlib.h>
#include <string.h>
#include "vocab_int.h"

/* Length of the UTF-8 character at s (n bytes left); an invalid sequence is one byte, so a
 * broken character never swallows the bytes (e.g. an escaped space) that follow it. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t  l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (l > n)
        return 1;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 1;
    return l;
}

static tfab_status_t try_bigram(const tfab_vocab_t *v, const char *text, const sym_t *syms,
                                int32_t left, int32_t right, bigram_heap_t *h)
{
    if (left < 0 || right < 0)
        return TFAB_OK;
    uint32_t     n  = syms[left].n + syms[right].n;
    tfab_token_t id = tfab_vocab_find(v, text + syms[left].off, n);
    if (id == TFAB_TOKEN_NULL)
        return TFAB_OK;
    return bigram_push(
        h,
        (bigram_t){
            .key = -(double)v->scores[id], .left = left, .right = right, .size = n, .result = id});
}

tfab_status_t spm_encode(const tfab_vocab_t *v, const char *text, size_t len, tok_vec_t *out)
{
    tfab_status_t st   = TFAB_OK;
    bigram_heap_t heap = {0};
    sym_t        *syms = malloc((len ? len : 1) * sizeof(*syms));
    int32_t       n    = 0;
    if (syms == NULL)
        return TFAB_ERR_NOMEM;
    for (size_t off = 0; off < len; n++) {
        size_t cl = utf8_len((const uint8_t *)text + off, len - off);
        syms[n]   = (sym_t){
              .off = (uint32_t)off, .n = (uint32_t)cl, .prev = n - 1, .next = n + 1, .id = -1};
        off += cl;
    }
    if (n > 0)
        syms[n - 1].next = -1;
    for (int32_t i = 1; i < n; i++)
        if ((st = try_bigram(v, text, syms, i - 1, i, &heap)) != TFAB_OK)
            goto out_free;
    while (heap.n) {
        bigram_t b = bigram_pop(&heap);
        sym_t   *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue; /* stale: one side has changed since it was queued */
        l->n += r->n;
        r->n    = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        if ((st = try_bigram(v, text, syms, l->prev, b.left, &heap)) != TFAB_OK ||
            (st = try_bigram(v, text, syms, b.left, l->next, &heap)) != TFAB_OK)
            goto out_free;
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = syms[i].next) {
        tfab_token_t id = tfab_vocab_find(v, text + syms[i].off, syms[i].n);
        if (id != TFAB_TOKEN_NULL) {
            if ((st = tok_push(out, id)) != TFAB_OK)
                goto out_free;
            continue;
        }
        for (uint32_t k = 0; k < syms[i].n; k++) {
            int32_t bt = v->byte_tok[(uint8_t)text[syms[i].off + k]];
            if (bt < 0)
                bt = v->unk;
            if (bt >= 0 && (st = tok_push(out, bt)) != TFAB_OK)
                goto out_free;
        }
    }
out_free:
    free(heap.v);
    free(syms);
    return st;
}
