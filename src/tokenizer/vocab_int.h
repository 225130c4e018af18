/* vocab_int.h - the private layout of tfab_vocab_t shared by the tokenizer's files. */
#ifndef TFAB_VOCAB_INT_H
#define TFAB_VOCAB_INT_H

#include <stdint.h>
#include <stdlib.h>
#include <tfab/tokenizer.h>

#define TOK_MOD         "tokenizer"
#define VOCAB_MAX_REGEX 6

typedef struct merge_slot {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX when empty */
    int32_t  rank;
    int32_t  result; /* token id of the concatenation */
} merge_slot_t;

typedef struct spec_tok {
    int32_t  id;
    uint32_t len;
} spec_tok_t;

struct tfab_vocab {
    tfab_vocab_kind_t kind;
    uint32_t          n_tokens;
    char             *pool;     /* token texts back to back, each NUL-terminated */
    uint64_t         *off;      /* [n_tokens + 1] offsets into pool (len = off[i+1]-off[i]-1) */
    float            *scores;   /* [n_tokens] */
    uint8_t          *types;    /* [n_tokens] tfab_token_type_t */
    uint32_t          tok_mask; /* text -> id hash: capacity - 1 (power of two) */
    int32_t          *tok_tab;  /* [tok_mask + 1], -1 empty */
    uint32_t          merge_mask;
    merge_slot_t     *merge_tab;     /* [merge_mask + 1] or NULL */
    int32_t           byte_tok[256]; /* token for a single byte: SPM <0xXX>, BPE its mapped char */
    spec_tok_t       *spec;          /* control/user-defined/unknown tokens, by first byte then
                                        longest first */
    uint32_t     n_spec;
    uint32_t     spec_first[257]; /* spec[spec_first[b] .. spec_first[b+1]) start with b */
    tfab_token_t bos, eos, unk, pad, eot;
    int          add_bos, add_eos, add_space_prefix, ignore_merges;
    char         pre[32];
    uint32_t     n_regex;
    void        *regex[VOCAB_MAX_REGEX]; /* pcre2_code_8 * */
    char        *chat_template;
};

/* Token text and length (id must be valid). */
static inline const char *vocab_text(const tfab_vocab_t *v, int32_t id, uint32_t *len_p)
{
    *len_p = (uint32_t)(v->off[id + 1] - v->off[id] - 1);
    return v->pool + v->off[id];
}

/* FNV-1a over bytes. */
static inline uint32_t vocab_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Merge lookup: rank and result of merging left and right, or -1. */
int32_t vocab_merge_rank(const tfab_vocab_t *v, int32_t left, int32_t right, int32_t *result_p);

/* GPT-2 byte-to-unicode table: codepoint for byte b; and the reverse (-1 if cp is not one). */
uint32_t bytemap_cp(uint8_t b);
int      bytemap_byte(uint32_t cp);

/* Pre-tokenizer regexes for a name; NULL pattern list if unknown. Sets *n_p. */
const char *const *pretok_patterns(const char *name, uint32_t *n_p, int *ignore_merges_p);
/* Compile a pattern (with \s widened to Unicode White_Space); NULL on error (logged). */
void *pretok_compile(const char *pattern);
void  pretok_free(void *re);

/* A growable list of (start, len) spans. */
typedef struct span {
    uint32_t start, len;
} span_t;
typedef struct span_vec {
    span_t *v;
    size_t  n, cap;
} span_vec_t;
tfab_status_t span_push(span_vec_t *sv, uint32_t start, uint32_t len);

/* Split text[0..len) by the vocab's regexes into words (spans relative to text). */
tfab_status_t pretok_split(const tfab_vocab_t *v, const char *text, uint32_t len, span_vec_t *out);

/* A growable list of token ids. */
typedef struct tok_vec {
    int32_t *v;
    size_t   n, cap;
} tok_vec_t;
tfab_status_t tok_push(tok_vec_t *tv, int32_t id);

/* The model algorithms on one fragment of plain text (no special tokens inside). */
tfab_status_t spm_encode(const tfab_vocab_t *v, const char *text, size_t len, tok_vec_t *out);
tfab_status_t bpe_encode(const tfab_vocab_t *v, const char *text, size_t len, tok_vec_t *out);

/* A binary min-heap of candidate merges ordered by (key, left): the best merge first and, among
 * equals, the leftmost, as SentencePiece and Hugging Face BPE do. */
typedef struct bigram {
    double   key; /* SPM: -score; BPE: rank */
    int32_t  left, right;
    uint32_t size; /* SPM: byte length of the merge, to detect stale entries */
    int32_t  result;
} bigram_t;
typedef struct bigram_heap {
    bigram_t *v;
    size_t    n, cap;
} bigram_heap_t;

static inline int bigram_less(const bigram_t *a, const bigram_t *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static inline tfab_status_t bigram_push(bigram_heap_t *h, bigram_t b)
{
    if (h->n == h->cap) {
        size_t    cap = h->cap ? h->cap * 2 : 64;
        bigram_t *nv  = (bigram_t *)realloc(h->v, cap * sizeof(*nv));
        if (nv == NULL)
            return TFAB_ERR_NOMEM;
        h->v   = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && bigram_less(&b, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i       = (i - 1) / 2;
    }
    h->v[i] = b;
    return TFAB_OK;
}

static inline bigram_t bigram_pop(bigram_heap_t *h)
{
    bigram_t top  = h->v[0];
    bigram_t last = h->v[--h->n];
    size_t   i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bigram_less(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bigram_less(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i       = c;
    }
    if (n)
        h->v[i] = last;
    return top;
}

/* A symbol of the merge loop: a byte range of the text, linked to its neighbours. */
typedef struct sym {
    uint32_t off, n; /* n == 0: merged away */
    int32_t  prev, next;
    int32_t  id; /* BPE: token id of the range, or -1 */
} sym_t;

#endif
