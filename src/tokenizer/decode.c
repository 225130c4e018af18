/* decode.c - token ids back to bytes: U+2581 -> ' ' (SPM), byte-level unicode -> bytes (BPE),
 * <0xXX> byte tokens, special tokens on request. */
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

/* Decode one UTF-8 sequence at s (n bytes left): codepoint and length; invalid -> byte. */
static uint32_t utf8_next(const uint8_t *s, size_t n, size_t *len_p)
{
    uint32_t c = s[0];
    size_t   l = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (l == 0 || l > n) {
        *len_p = 1;
        return 0xffffffffu;
    }
    if (l == 1) {
        *len_p = 1;
        return c;
    }
    c &= 0x7fu >> l;
    for (size_t i = 1; i < l; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len_p = 1;
            return 0xffffffffu;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *len_p = l;
    return c;
}

/* Write the piece of id at buf[o..] if it fits; returns its length either way. */
static size_t piece(const tfab_vocab_t *v, int32_t id, unsigned flags, char *buf, size_t o,
                    size_t cap, int *first)
{
    uint32_t       len;
    const uint8_t *t = (const uint8_t *)vocab_text(v, id, &len);
    size_t         n = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + n < cap)                                                                           \
            buf[o + n] = (char)(c);                                                                \
        n++;                                                                                       \
    } while (0)
    switch (v->types[id]) {
    case TFAB_TOKEN_TYPE_CONTROL:
    case TFAB_TOKEN_TYPE_UNKNOWN:
        if (!(flags & TFAB_DECODE_SPECIAL))
            return 0;
        /* fall through */
    case TFAB_TOKEN_TYPE_USER_DEFINED:
        for (uint32_t i = 0; i < len; i++)
            PUT(t[i]);
        return n;
    case TFAB_TOKEN_TYPE_BYTE: {
        static const char hex[] = "0123456789ABCDEF";
        if (len == 6) {
            const char *h = memchr(hex, t[3], 16), *l = memchr(hex, t[4], 16);
            if (h && l)
                PUT((h - hex) * 16 + (l - hex));
        }
        return n;
    }
    case TFAB_TOKEN_TYPE_NORMAL:
        break;
    default:
        return 0; /* unused and undefined tokens render as nothing */
    }
    if (v->kind == TFAB_VOCAB_SPM) {
        int strip = *first && (flags & TFAB_DECODE_STRIP_SPACE) && v->add_space_prefix;
        *first    = 0; /* the strip applies to the first normal token only */
        for (uint32_t i = 0; i < len; i++) {
            if (i + 2 < len && t[i] == 0xe2 && t[i + 1] == 0x96 && t[i + 2] == 0x81) {
                i += 2;
                if (strip && n == 0) {
                    strip = 0;
                    continue;
                }
                PUT(' ');
            } else {
                PUT(t[i]);
            }
            strip = 0;
        }
        return n;
    }
    for (size_t i = 0; i < len;) {
        size_t   l;
        uint32_t cp = utf8_next(t + i, len - i, &l);
        int      b  = cp == 0xffffffffu ? -1 : bytemap_byte(cp);
        if (b >= 0) {
            PUT(b);
        } else { /* not a mapped byte: keep the text as written */
            for (size_t k = 0; k < l; k++)
                PUT(t[i + k]);
        }
        i += l;
    }
    return n;
#undef PUT
}

tfab_status_t tfab_token_piece(const tfab_vocab_t *v, tfab_token_t id, unsigned flags, char *buf,
                               size_t cap, size_t *len_p)
{
    if (v == NULL || len_p == NULL || (buf == NULL && cap))
        return TFAB_ERR_INVALID;
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return TFAB_ERR_INVALID;
    int    first = 0;
    size_t n     = piece(v, id, flags & ~(unsigned)TFAB_DECODE_STRIP_SPACE, buf, 0, cap, &first);
    *len_p       = n;
    return n > cap ? TFAB_ERR_RANGE : TFAB_OK;
}

tfab_status_t tfab_detokenize(const tfab_vocab_t *v, const tfab_token_t *tokens, size_t n,
                              unsigned flags, char *buf, size_t cap, size_t *len_p)
{
    if (v == NULL || len_p == NULL || (tokens == NULL && n) || (buf == NULL && cap)) {
        TFAB_ERROR(TOK_MOD, "detokenize: NULL argument");
        return TFAB_ERR_INVALID;
    }
    size_t o     = 0;
    int    first = 1;
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= v->n_tokens) {
            TFAB_ERROR(TOK_MOD, "detokenize: token %d is outside the vocabulary (%u tokens)",
                       tokens[i], v->n_tokens);
            return TFAB_ERR_INVALID;
        }
        o += piece(v, tokens[i], flags, buf, o, cap, &first);
    }
    *len_p = o;
    return o > cap ? TFAB_ERR_RANGE : TFAB_OK;
}
