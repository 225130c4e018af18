/* wire.c - checks of the pipeline engine's messages received from peers (wire.h). */
#include <stdio.h>
#include <string.h>
#include "wire.h"

tfab_status_t wire_check(pipe_msg_t *m, size_t len, uint32_t want_type, uint32_t chunk,
                         uint32_t n_embd, uint32_t n_vocab, uint32_t n_ctx, char *why,
                         size_t why_len)
{
    if (len < sizeof(*m)) {
        snprintf(why, why_len, "message of %zu bytes, shorter than its %zu-byte header", len,
                 sizeof(*m));
        return TFAB_ERR_PROTO;
    }
    if (m->magic != PIPE_MAGIC || m->version != PIPE_VERSION) {
        snprintf(why, why_len, "bad magic 0x%08x or version %u (want 0x%08x, %u)", m->magic,
                 m->version, PIPE_MAGIC, PIPE_VERSION);
        return TFAB_ERR_PROTO;
    }
    m->addr[sizeof(m->addr) - 1]   = '\0';
    m->text[sizeof(m->text) - 1]   = '\0';
    m->model[sizeof(m->model) - 1] = '\0';
    if (m->type != want_type) {
        snprintf(why, why_len, "message type %u where %u was expected", m->type, want_type);
        return TFAB_ERR_PROTO;
    }
    if (m->type == PM_BATCH) {
        if (m->n == 0 || m->n > chunk || m->n_out > m->n || len != wire_batch_bytes(m->n, n_embd)) {
            snprintf(why, why_len,
                     "batch of %u tokens (%u with logits) in %zu bytes: need 1..%u tokens and "
                     "%zu bytes",
                     m->n, m->n_out, len, chunk, m->n ? wire_batch_bytes(m->n, n_embd) : 0);
            return TFAB_ERR_PROTO;
        }
        const uint32_t *pos  = (const uint32_t *)(m + 1);
        const uint8_t  *want = (const uint8_t *)(pos + m->n);
        uint32_t        n_w  = 0;
        for (uint32_t i = 0; i < m->n; i++) {
            if (pos[i] >= n_ctx) {
                snprintf(why, why_len, "batch token %u at position %u beyond n_ctx %u", i, pos[i],
                         n_ctx);
                return TFAB_ERR_PROTO;
            }
            n_w += want[i] != 0;
        }
        if (n_w != m->n_out) {
            snprintf(why, why_len, "batch says %u rows want logits, its flags say %u", m->n_out,
                     n_w);
            return TFAB_ERR_PROTO;
        }
    } else if (m->type == PM_LOGITS) {
        if (m->n_out == 0 || m->n_out > chunk || len != wire_logits_bytes(m->n_out, n_vocab)) {
            snprintf(why, why_len, "logits of %u rows in %zu bytes (want 1..%u rows of %u)",
                     m->n_out, len, chunk, n_vocab);
            return TFAB_ERR_PROTO;
        }
    }
    return TFAB_OK;
}
