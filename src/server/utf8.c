/* utf8.c - the UTF-8 rules of generated text: where a character is cut short, what is
 * well-formed (RFC 3629). */
#include "srv.h"

/* Bytes at the end of text[0..len) that start an incomplete UTF-8 character. */
size_t srv_utf8_partial_tail(const char *text, size_t len)
{
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        unsigned char c = (unsigned char)text[len - k];
        if ((c & 0xc0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

/* Length of the well-formed UTF-8 character at p[0..n) (RFC 3629: no overlongs, surrogates or
 * code points above U+10FFFF), or 0 if there is none (invalid or cut short). */
size_t srv_utf8_char_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t        len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
                      : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (len == 0 || len > n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if ((p[k] & 0xc0) != 0x80)
            return 0;
    return len;
}
