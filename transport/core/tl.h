/* tl.h - what a transport backend ("tl") implements, and the upcalls it makes into the core.
 * Only the transport core includes this. The core owns protocol state (matching, credits,
 * rendezvous); a backend only moves frames: a 32-byte wire header and an optional payload. */
#ifndef TFAB_TL_H
#define TFAB_TL_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/version.h>
#include <tfab/status.h>
#include "wire.h"

typedef struct tfab_fabric tfab_fabric_t;
typedef struct tfab_ep     tfab_ep_t;
typedef struct tfab_link   tfab_link_t; /* one of an endpoint's links: what a backend serves */

typedef struct tfab_tl_ops {
    size_t      size; /* sizeof(tfab_tl_ops_t) at build time: guards appended ops */
    const char *name; /* "tcp", "verbs" */
    /* setup path: may allocate or block */
    /* listen: "ip:port" this backend accepts links on (verbs: its rdma_cm listener), or NULL */
    tfab_status_t (*domain_open)(tfab_fabric_t *fabric, const char *listen, void **domain_p);
    void          (*domain_close)(void *domain);
    /* make this endpoint's link, after the handshake on the control socket fd agreed on this
     * backend: TCP adopts fd; verbs connects a queue pair to the same peer (is_server: wait
     * for it) and keeps fd only as the control channel. Blocks until deadline_ns at most. */
    tfab_status_t (*ep_open)(void *domain, tfab_link_t *link, int fd, int is_server,
                             uint64_t deadline_ns, void **tl_ep_p);
    void          (*ep_close)(void *tl_ep);
    /* data path: never blocks, never allocates. Queue one frame; payload (may be NULL) must
     * stay valid until core_tx_done(ep, ctx) */
    tfab_status_t (*ep_post)(void *tl_ep, const wire_hdr_t *hdr, const void *payload,
                             size_t len, void *ctx);
    /* wait up to timeout_ms for events and handle them (upcalls run here, lock held) */
    int           (*progress)(void *domain, int timeout_ms);
    /* make a progress() that is waiting return now */
    void          (*wake)(void *domain);
    /* data path: let the peer write [buf, +len) and nothing else, for one transfer; returns the
     * key the peer must use (0 where the link needs none) and a handle for ungrant. The grant is
     * in force before any frame posted after it reaches the peer. */
    tfab_status_t (*grant)(void *tl_ep, void *buf, size_t len, uint32_t *rkey_p,
                           uint32_t *handle_p);
    /* revoke a grant once its data arrived (or the receive was abandoned) */
    void          (*ungrant)(void *tl_ep, uint32_t handle);
} tfab_tl_ops_t;

/* Upcalls, made from progress() with the fabric lock held. Each names the link it came from;
 * the core decides what a frame on a standby or failed link means. */

/* A header arrived. For frames with a payload, set *dest_p to where it goes (len bytes of
 * room are guaranteed), or NULL to discard it. A non-OK status means the frame is malformed
 * or breaks the protocol: the backend fails the endpoint with it. */
tfab_status_t tfab_core_rx_header(tfab_link_t *link, const wire_hdr_t *hdr, void **dest_p);
/* The frame's payload (if any) is in place at dest. */
void  tfab_core_rx_done(tfab_link_t *link, const wire_hdr_t *hdr, void *dest);
/* The frame posted with ctx is on the wire; its payload buffer may be reused. */
void  tfab_core_tx_done(tfab_link_t *link, void *ctx);
/* The link failed (peer gone, reset, error completion, device removed, malformed frame). With
 * another healthy link ranked below it, the endpoint fails over (transfers not acknowledged
 * are re-issued there); otherwise every pending transfer fails. The backend posts nothing on
 * the link afterwards; the core closes it. */
void  tfab_core_link_failed(tfab_link_t *link, tfab_status_t status, const char *why);
/* "tcp 10.0.0.1:7400": for log messages. */
const char *tfab_core_link_name(const tfab_link_t *link);

/* The fabric lock, for backends whose progress() waits unlocked and handles events locked. */
void tfab_core_lock(tfab_fabric_t *fabric);
void tfab_core_unlock(tfab_fabric_t *fabric);

extern const tfab_tl_ops_t tfab_tl_tcp_ops;
#if TFAB_HAVE_VERBS
extern const tfab_tl_ops_t tfab_tl_verbs_ops;
#endif

#endif
