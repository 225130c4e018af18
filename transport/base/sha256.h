/* sha256.h - SHA-256 and HMAC-SHA256 (transport-internal). */
#ifndef TFAB_SHA256_H
#define TFAB_SHA256_H
#include <stddef.h>
#include <stdint.h>

typedef struct tfab_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t  buf[64];
    size_t   fill;
} tfab_sha256_t;

void tfab_sha256_init(tfab_sha256_t *c);
void tfab_sha256_update(tfab_sha256_t *c, const void *data, size_t len);
void tfab_sha256_final(tfab_sha256_t *c, uint8_t out[32]);
/* HMAC-SHA256 of the concatenation of n_parts buffers. */
void tfab_hmac_sha256(const void *key, size_t key_len, const void *const *parts,
                      const size_t *part_lens, unsigned n_parts, uint8_t out[32]);
#endif
