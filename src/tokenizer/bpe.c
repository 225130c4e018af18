/* bpe.c - byte-level BPE: regex pre-tokenization, then per word the lowest-ranked merge first
 * over symbols that start as single bytes (GPT-2 byte-to-unicode mapped tokens). */
#include <stdlib.h>
#include <string.h>
#include "vocab_int.h"

static tfab_status_t try_merge(const tfab_vocab_t *v, const sym_t *syms, int32_t left,
                               int32_t right, bigram_heap_t *h)
{
    if (left < 0 || right < 0)
        return TFAB_OK;
    int32_t result;
    int32_t rank = vocab_merge_rank(v, syms[left].id, syms[right].id, &result);
    if (rank < 0)
        return TFAB_OK;
    return bigram_push(h, (bigram_t){.key = rank, .left = left, .right = right, .result = result});
}

/* The word mapped to byte-level unicode (each byte becomes one or two UTF-8 bytes). */
static size_t map_word(const char *w, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = bytemap_cp((uint8_t)w[i]);
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else {
            out[o++] = (char)(0xc0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    return o;
}

static tfab_status_t encode_word(const tfab_vocab_t *v, const char *w, size_t n, sym_t *syms,
                                 char *mapped, bigram_heap_t *heap, tok_vec_t *out)
{
    tfab_status_t st;
    if (v->ignore_merges) {
        tfab_token_t id = tfab_vocab_find(v, mapped, map_word(w, n, mapped));
        if (id != TFAB_TOKEN_NULL)
            return tok_push(out, id);
    }
    heap->n = 0;
    for (size_t i = 0; i < n; i++)
        syms[i] = (sym_t){.off  = (uint32_t)i,
                          .n    = 1,
                          .prev = (int32_t)i - 1,
                          .next = i + 1 < n ? (int32_t)i + 1 : -1,
                          .id   = v->byte_tok[(uint8_t)w[i]]};
    for (size_t i = 1; i < n; i++)
        if ((st = try_merge(v, syms, (int32_t)i - 1, (int32_t)i, heap)) != TFAB_OK)
            return st;
    while (heap->n) {
        bigram_t b = bigram_pop(heap);
        sym_t   *l = &syms[b.left], *r = &syms[b.right];
        int32_t  res;
        if (l->n == 0 || r->n == 0 || l->next != b.right ||
            vocab_merge_rank(v, l->id, r->id, &res) != (int32_t)b.key)
            continue; /* stale */
        l->n += r->n;
        l->id   = b.result;
        r->n    = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        if ((st = try_merge(v, syms, l->prev, b.left, heap)) != TFAB_OK ||
            (st = try_merge(v, syms, b.left, l->next, heap)) != TFAB_OK)
            return st;
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = syms[i].next)
        if (syms[i].id >= 0 && (st = tok_push(out, syms[i].id)) != TFAB_OK)
            return st; /* a byte with no token is dropped, as llama.cpp does */
    return TFAB_OK;
}

tfab_status_t bpe_encode(const tfab_vocab_t *v, const char *text, size_t len, tok_vec_t *out)
{
    tfab_status_t st;
    span_vec_t    words  = {0};
    bigram_heap_t heap   = {0};
    sym_t        *syms   = NULL;
    char         *mapped = NULL;
    if (len > UINT32_MAX / 2)
        return TFAB_ERR_RANGE;
    if ((st = pretok_split(v, text, (uint32_t)len, &words)) != TFAB_OK)
        return st;
    size_t maxw = 1;
    for (size_t i = 0; i < words.n; i++)
        if (words.v[i].len > maxw)
            maxw = words.v[i].len;
    syms   = malloc(maxw * sizeof(*syms));
    mapped = malloc(maxw * 2);
    if (syms == NULL || mapped == NULL) {
        st = TFAB_ERR_NOMEM;
        goto out_free;
    }
    for (size_t i = 0; i < words.n && st == TFAB_OK; i++)
        st = encode_word(v, text + words.v[i].start, words.v[i].len, syms, mapped, &heap, out);
out_free:
    free(mapped);
    free(syms);
    free(heap.v);
    free(words.v);
    return st;
}
