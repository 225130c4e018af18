/* tfab/transport.h - the fabric: endpoints to peers and tagged transfers between pool buffers,
 * over whichever backend (verbs, TCP) the peers agree on. The engine sees only this header. */
#ifndef TFAB_TRANSPORT_H
#define TFAB_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/pool.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tfab_fabric tfab_fabric_t;
typedef struct tfab_ep     tfab_ep_t;

enum {
    TFAB_FABRIC_PARAM_POOL        = 1u << 0,
    TFAB_FABRIC_PARAM_LISTEN      = 1u << 1,
    TFAB_FABRIC_PARAM_TOKEN       = 1u << 2,
    TFAB_FABRIC_PARAM_EAGER_MAX   = 1u << 3,
    TFAB_FABRIC_PARAM_CREDITS     = 1u << 4,
    TFAB_FABRIC_PARAM_TIMEOUT     = 1u << 5,
    TFAB_FABRIC_PARAM_PROGRESS    = 1u << 6,
    TFAB_FABRIC_PARAM_BACKEND     = 1u << 7,
    TFAB_FABRIC_PARAM_LINKS       = 1u << 8,
    TFAB_FABRIC_PARAM_HEARTBEAT   = 1u << 9,
};

typedef enum tfab_progress_mode {
    TFAB_PROGRESS_THREAD = 0, /* the fabric runs its own progress thread (default) */
    TFAB_PROGRESS_MANUAL      /* the caller calls tfab_fabric_progress() */
} tfab_progress_mode_t;

typedef struct tfab_fabric_params {
    uint64_t             field_mask;  /* TFAB_FABRIC_PARAM_* bits of the fields set */
    tfab_pool_t         *pool;        /* required: every buffer handed to send/recv lives here */
    const char          *listen;      /* "ip:port" to accept peers on; "ip:0" picks a port;
                                         NULL: this fabric only connects out */
    const char          *token;       /* shared cluster secret; peers with another are refused
                                         before any buffer address is revealed */
    size_t               eager_max;   /* messages up to this size are copied through eager
                                         slots; larger ones go zero-copy by rendezvous
                                         (default 8 KiB) */
    unsigned             credits;     /* eager slots per endpoint and direction (default 64) */
    uint64_t             timeout_ns;  /* handshakes, and transfers without progress
                                         (default 10 s) */
    tfab_progress_mode_t progress;
    const char          *backend;     /* "tcp" (default) or "verbs": the link this fabric
                                         offers; peers offering another are refused with the
                                         reason. With verbs, the listen address must be an IP
                                         an RDMA device carries; the handshake still runs over
                                         TCP on it, then a queue pair connects to the same
                                         ip:port (rdma_cm). */
    /* Appended (set the bit in field_mask to use them): */
    const char          *links;       /* ranked links for failover, best first, comma-separated
                                         "backend ip:port" entries, e.g. "verbs 10.0.0.1:7400,
                                         tcp 10.1.0.1:7400" (the order `tfab topo` resolves
                                         from the topology file). A listening fabric listens on
                                         each (port 0 picks one); a connecting one may give
                                         only backends ("verbs,tcp"). Replaces listen and
                                         backend. Both peers must give links; an endpoint then
                                         holds every link both can open, moves messages over
                                         the best live one, and when it fails re-issues each
                                         message the peer has not acknowledged on the next:
                                         every message arrives once and intact. */
    uint64_t             heartbeat_ns; /* interval of heartbeats on idle links (0: none, the
                                         default). A link silent for timeout_ns is dead: its
                                         endpoint fails over, or its transfers fail, receives
                                         included. Peers must agree (checked at connect). */
} tfab_fabric_params_t;

/* Create a fabric over pool: opens the backends, and listens when params->listen is set.
 * Setup path (allocates, may block). Errors: TFAB_ERR_INVALID (params), TFAB_ERR_IO (bind or
 * listen failed; logged with the address), TFAB_ERR_NOMEM. */
TFAB_API tfab_status_t tfab_fabric_create(const tfab_fabric_params_t *params,
                                          tfab_fabric_t **fabric_p);

/* Close every endpoint (their pending transfers complete with TFAB_ERR_CANCELED), stop the
 * progress thread, free everything. Must not be called from a completion callback. */
TFAB_API void tfab_fabric_destroy(tfab_fabric_t *fabric);

/* The address peers connect to ("10.0.0.1:7400"), valid while the fabric lives. */
TFAB_API const char *tfab_fabric_address(const tfab_fabric_t *fabric);

/* Connect to a peer's listen address and run the handshake (versions, token, link choice).
 * With ranked links, addr is the peer's fabric address (its first link); the endpoint then
 * joins every link of the peer's that this fabric can open, one connection each. 
 * Blocks up to the fabric timeout. Errors: TFAB_ERR_CONN (refused/unreachable),
 * TFAB_ERR_TIMEOUT, TFAB_ERR_AUTH (token mismatch), TFAB_ERR_PROTO (version mismatch or a
 * malformed hello); each logged once with the peer's address and the reason. */
TFAB_API tfab_status_t tfab_ep_connect(tfab_fabric_t *fabric, const char *addr,
                                       tfab_ep_t **ep_p);

/* Wait up to timeout_ns for a peer that connected and passed the handshake. */
TFAB_API tfab_status_t tfab_fabric_accept(tfab_fabric_t *fabric, uint64_t timeout_ns,
                                          tfab_ep_t **ep_p);

/* Close an endpoint: its pending transfers complete with TFAB_ERR_CANCELED. */
TFAB_API void tfab_ep_close(tfab_ep_t *ep);

/* The link this endpoint uses now, e.g. "tcp 10.0.0.2:7400" (changes on failover). */
TFAB_API const char *tfab_ep_link(const tfab_ep_t *ep);

/* Called once per transfer, from the progress context, with the final status and the bytes
 * moved (for a receive: the sender's length). A callback may post new transfers. */
typedef void (*tfab_xfer_cb_t)(tfab_status_t status, size_t length, void *arg);

/* Send len bytes at buf (inside the fabric's pool) to the peer under tag. Returns
 * TFAB_INPROGRESS; cb fires when buf may be reused. Sends on one endpoint with the same tag
 * match receives in order. Never blocks, never allocates. Errors (returned, cb not called):
 * TFAB_ERR_RANGE (buf outside the pool), TFAB_ERR_CONN (endpoint failed or closed),
 * TFAB_ERR_BUSY (too many transfers in flight on this endpoint). Thread-safe. */
TFAB_API tfab_status_t tfab_ep_send(tfab_ep_t *ep, const void *buf, size_t len, uint64_t tag,
                                    tfab_xfer_cb_t cb, void *arg);

/* Receive into buf (inside the pool, len bytes of room) the next message sent under tag.
 * A message longer than len completes with TFAB_ERR_RANGE and is dropped, and the endpoint
 * stays usable. Same return values and rules as tfab_ep_send. */
TFAB_API tfab_status_t tfab_ep_recv(tfab_ep_t *ep, void *buf, size_t len, uint64_t tag,
                                    tfab_xfer_cb_t cb, void *arg);

/* Drive transfers (TFAB_PROGRESS_MANUAL), waiting up to timeout_ns for something to do.
 * Returns the number of completions delivered. */
TFAB_API unsigned tfab_fabric_progress(tfab_fabric_t *fabric, uint64_t timeout_ns);

typedef struct tfab_ep_stats {
    uint64_t bytes_sent, bytes_received;
    uint64_t eager_sent, rndv_sent;     /* messages by protocol */
    uint64_t credit_stalls;             /* sends that waited for credits */
    /* appended: ranked links */
    uint64_t failovers;                 /* times the endpoint moved to a lower-ranked link */
    uint64_t resent;                    /* messages re-issued after a failover */
    uint64_t heartbeats_sent;
} tfab_ep_stats_t;

TFAB_API void tfab_ep_get_stats(tfab_ep_t *ep, tfab_ep_stats_t *stats);

/* ---- ring collectives (written once here, over whatever link the endpoints use) -------- */

typedef struct tfab_ring tfab_ring_t;

/* A ring of size ranks: this process is rank, receiving from left (rank - 1) and sending to
 * right (rank + 1). scratch_bytes bounds the largest collective (taken from the pool now, so
 * collectives never allocate). The endpoints stay owned by the caller and must outlive the
 * ring. With size 1, left and right may be NULL. A collective that times out (or whose send
 * fails after its receive was posted) breaks the ring: later collectives return that error,
 * and the transfer left posted completes only when its endpoint fails or is closed (until then
 * it may still write into the collective's buffer). Close the endpoints, then destroy. */
TFAB_API tfab_status_t tfab_ring_create(tfab_fabric_t *fabric, int rank, int size, tfab_ep_t *left,
                                        tfab_ep_t *right, size_t scratch_bytes,
                                        tfab_ring_t **ring_p);
TFAB_API void          tfab_ring_destroy(tfab_ring_t *ring);

/* Sum count floats at buf (in the pool) across all ranks, leaving the sum in every rank's buf:
 * reduce-scatter then all-gather, 2 (size - 1) steps moving 2 (size - 1) / size of the data
 * per rank. Blocking; every rank must call it with the same count. Bit-identical result on
 * every rank (each chunk is reduced in the same order on one rank, then copied). Errors:
 * TFAB_ERR_RANGE (buf outside the pool or over scratch_bytes), transfer errors (the first
 * one seen), TFAB_ERR_TIMEOUT. */
TFAB_API tfab_status_t tfab_ring_allreduce_f32(tfab_ring_t *ring, float *buf, size_t count);

/* Gather: rank r contributes buf[r * bytes_per_rank .. +bytes_per_rank); afterwards every
 * rank's buf holds all size contributions. Blocking. */
TFAB_API tfab_status_t tfab_ring_allgather(tfab_ring_t *ring, void *buf, size_t bytes_per_rank);

#ifdef __cplusplus
}
#endif
#endif
