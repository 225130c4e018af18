/* wire.h - the pipeline engine's messages between coordinator and nodes: one fixed header,
 * followed for batches by positions, logit flags and the hidden state, for logits by the rows.
 * Everything received is checked (engine/wire.c) before use. */
#ifndef TFAB_ENGINE_WIRE_H
#define TFAB_ENGINE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>

#define PIPE_MAGIC   0x50504654u /* "TFPP" */
#define PIPE_VERSION 1

/* fabric tags: control (join/assign/ready/stop), heartbeats, activations, logits */
#define TAG_CTRL   0x7466700000000001ull
#define TAG_HB     0x7466700000000002ull
#define TAG_ACT    0x7466700000000003ull
#define TAG_LOGITS 0x7466700000000004ull

enum {
    PM_JOIN   = 1, /* node -> coordinator: rank (or -1), listen address, free memory */
    PM_ASSIGN = 2, /* coordinator -> node: rank, stage, model, next address (or a refusal) */
    PM_READY  = 3, /* node -> coordinator: stage loaded, next stage connected (or why not) */
    PM_STOP   = 4, /* coordinator -> node: leave */
    PM_HB     = 5, /* node -> coordinator, every heartbeat_ms */
    PM_BATCH  = 6, /* stage -> next stage: n tokens' positions, flags, hidden [n][n_embd] */
    PM_LOGITS = 7, /* last stage -> coordinator: n_out rows of n_vocab */
    PM_BYE    = 8, /* node -> coordinator: stopped, links to neighbours closed */
    PM_CLOSE  = 9  /* coordinator -> node: closing the control link now */
};

typedef struct pipe_msg {
    uint32_t magic, version, type;
    int32_t  status; /* tfab_status_t of ASSIGN/READY */
    int32_t  rank;
    uint32_t size;
    uint32_t layer_begin, layer_end, n_layer, n_embd, n_vocab;
    uint32_t n_ctx, chunk, heartbeat_ms, dead_ms;
    uint32_t n, n_out; /* BATCH: tokens; BATCH/LOGITS: rows with logits */
    uint32_t tp_size;  /* ASSIGN: > 1: tensor parallel over all ranks (rank = tp rank) */
    uint64_t free_mem, pool_bytes, seq_no;
    char     addr[80];   /* JOIN: listen address; ASSIGN: the next stage's ("" for the last) */
    char     text[256];  /* ASSIGN/READY: why it failed */
    char     model[512]; /* ASSIGN: the coordinator's model path */
} pipe_msg_t;
_Static_assert(sizeof(pipe_msg_t) == 944, "pipe_msg_t is a wire header: keep its size");

/* BATCH layout after the header: uint32 pos[n], uint8 want[n] (padded to 64 bytes), then
 * float hidden[n][n_embd] at a 64-byte aligned offset; under tensor parallelism the
 * coordinator sends int32 token ids there instead (the size of n_embd 1). */
static inline size_t wire_batch_hidden_off(uint32_t n)
{
    size_t off = sizeof(pipe_msg_t) + (size_t)n * 5;
    return (off + 63) & ~(size_t)63;
}
static inline size_t wire_batch_bytes(uint32_t n, uint32_t n_embd)
{
    return wire_batch_hidden_off(n) + (size_t)n * n_embd * sizeof(float);
}
static inline size_t wire_logits_bytes(uint32_t n_out, uint32_t n_vocab)
{
    return sizeof(pipe_msg_t) + (size_t)n_out * n_vocab * sizeof(float);
}

/* Check a received message: length, magic, version, type; text fields terminated. BATCH: n in
 * 1..chunk, n_out <= n, exact length for n_embd, positions < n_ctx. LOGITS: exact length.
 * Writes what is wrong into why. */
tfab_status_t wire_check(pipe_msg_t *m, size_t len, uint32_t want_type, uint32_t chunk,
                         uint32_t n_embd, uint32_t n_vocab, uint32_t n_ctx, char *why,
                         size_t why_len);

#endif
