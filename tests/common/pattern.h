/* pattern.h - deterministic test data and checksums shared by transfer tests: any byte of a
 * stream can be regenerated from (seed, offset), so a receiver verifies without a copy. */
#ifndef TFAB_TEST_PATTERN_H
#define TFAB_TEST_PATTERN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint64_t pattern_word(uint64_t seed, uint64_t index)
{
    uint64_t z = seed + (index + 1) * 0x9e3779b97f4a7c15ull; /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fill buf with bytes [offset, offset + len) of the stream named by seed. offset % 8 == 0. */
static inline void pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t offset)
{
    uint8_t *p = (uint8_t *)buf;
    uint64_t i = offset / 8;
    for (; len >= 8; len -= 8, p += 8, i++) {
        uint64_t w = pattern_word(seed, i);
        memcpy(p, &w, 8);
    }
    if (len) {
        uint64_t w = pattern_word(seed, i);
        memcpy(p, &w, len);
    }
}

/* Offset of the first byte of buf that differs from the stream, or len when all match. */
static inline size_t pattern_check(const void *buf, size_t len, uint64_t seed, uint64_t offset)
{
    const uint8_t *p = (const uint8_t *)buf;
    uint64_t       i = offset / 8;
    size_t         pos = 0;
    for (; pos + 8 <= len; pos += 8, i++) {
        uint64_t w = pattern_word(seed, i), got;
        memcpy(&got, p + pos, 8);
        if (got != w)
            break;
    }
    for (; pos < len; pos++) {
        uint64_t w = pattern_word(seed, (offset + pos) / 8);
        if (p[pos] != (uint8_t)(w >> (8 * ((offset + pos) % 8))))
            return pos;
    }
    return len;
}

/* FNV-1a over 64-bit words (tail bytes one by one): order-sensitive, cheap. Feed data that
 * arrives in pieces through checksum64_update in multiples of 8 bytes, starting from
 * CHECKSUM64_INIT; the result equals checksum64 over the whole. */
#define CHECKSUM64_INIT 0xcbf29ce484222325ull

static inline uint64_t checksum64_update(uint64_t h, const void *buf, size_t len)
{
    const uint8_t *p = (const uint8_t *)buf;
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; len; len--, p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return h;
}

static inline uint64_t checksum64(const void *buf, size_t len)
{
    return checksum64_update(CHECKSUM64_INIT, buf, len);
}

#endif
