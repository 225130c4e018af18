/* core.h - the transport core's internal state: fabric, endpoints, transfer slots. Shared by
 * the core's files (fabric.c: lifecycle and threads; proto.c: matching, credits, rendezvous;
 * handshake.c: hello and authentication). */
#ifndef TFAB_CORE_H
#define TFAB_CORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <tfab/transport.h>
#include "tl.h"

#define EP_MAX_OPS    1024u /* transfers in flight per endpoint and direction */
#define EP_MAX_CREDITS 256u
#define NIL32         UINT32_MAX

enum op_state {
    OP_FREE = 0,
    OP_STALLED,   /* send waiting for a credit */
    OP_EAGER,     /* send: eager frame queued */
    OP_WAIT_CTS,  /* send: RTS sent */
    OP_DATA,      /* send: DATA queued */
    OP_POSTED,    /* recv: waiting for a match */
    OP_WAIT_DATA, /* recv: CTS sent, waiting for DATA */
    OP_LANDING,   /* recv: eager payload being read into the buffer */
};

typedef struct op {
    uint8_t        state;
    uint16_t       gen;  /* bumps on reuse: stale ids from the peer are caught */
    uint32_t       next; /* list link (stall queue, posted queue, free list) */
    void          *buf;
    size_t         len;  /* send: bytes; recv: room */
    size_t         got;  /* recv: message length */
    uint64_t       tag;
    uint32_t       peer_id; /* recv: the sender's transfer id (rendezvous) */
    uint32_t       grant;   /* recv: the backend's grant handle while OP_WAIT_DATA */
    tfab_status_t  status;
    tfab_xfer_cb_t cb;
    void          *arg;
} op_t;

typedef struct unexp {       /* an arrival that matched no posted receive yet */
    uint8_t  kind;           /* WIRE_EAGER or WIRE_RTS; 0 = free */
    uint8_t  ready;          /* eager: payload fully in the slot */
    uint32_t next;
    uint64_t tag;
    uint64_t len;
    uint32_t peer_id;        /* RTS: the sender's transfer id */
} unexp_t;

typedef struct comp {
    tfab_xfer_cb_t cb;
    void          *arg;
    tfab_status_t  status;
    size_t         len;
} comp_t;

struct tfab_ep {
    tfab_fabric_t       *fabric;
    const tfab_tl_ops_t *tl;
    void                *tl_ep;
    char                 link[96];
    int                  failed;
    tfab_status_t        fail_status;
    int                  closed;
    tfab_ep_t           *next_ep;     /* fabric's list */
    tfab_ep_t           *next_accept; /* accept queue */
    uint64_t             last_progress_ns;
    /* credits */
    unsigned             credits;        /* slots we may still use at the peer */
    unsigned             credits_owed;   /* slots we freed and not yet told the peer about */
    /* sends */
    op_t                 sends[EP_MAX_OPS];
    uint32_t             send_free;
    uint32_t             stall_head, stall_tail;
    unsigned             sends_live;
    /* receives */
    op_t                 recvs[EP_MAX_OPS];
    uint32_t             recv_free;
    uint32_t             posted_head, posted_tail;
    unsigned             recvs_live;
    /* unexpected arrivals, in arrival order; entry i owns eager slot i */
    unexp_t              unexp[EP_MAX_CREDITS];
    uint32_t             unexp_head, unexp_tail;
    uint8_t             *slots;          /* credits x eager_max, from the pool */
    uint32_t             landing_recv;   /* receive an eager payload is landing in directly */
    /* completions waiting for delivery outside the lock */
    comp_t               comp[2 * EP_MAX_OPS + EP_MAX_CREDITS];
    unsigned             comp_head, comp_count;
    tfab_ep_stats_t      stats;
};

struct tfab_fabric {
    tfab_pool_t         *pool;
    char                 address[64];
    char                *token;
    size_t               eager_max;
    unsigned             credits;
    uint64_t             timeout_ns;
    tfab_progress_mode_t mode;
    const tfab_tl_ops_t *tl;
    void                *tl_domain;
    pthread_mutex_t      lock;
    pthread_cond_t       accept_cond;
    tfab_ep_t           *eps;
    tfab_ep_t           *accept_head, *accept_tail;
    int                  listen_fd;
    _Atomic int          stop;
    pthread_t            progress_thread, accept_thread;
    int                  have_progress_thread, have_accept_thread;
};

uint64_t tfab_core_now_ns(void);

/* proto.c */
tfab_status_t tfab_core_ep_init(tfab_ep_t *ep, tfab_fabric_t *fabric);
void          tfab_core_ep_fini(tfab_ep_t *ep);
void          tfab_core_check_timeouts(tfab_fabric_t *fabric);
/* Deliver queued completions (call without the lock). Returns how many. */
unsigned      tfab_core_deliver(tfab_fabric_t *fabric);

/* handshake.c: run the hello/auth exchange on a connected blocking socket. */
tfab_status_t tfab_handshake_client(tfab_fabric_t *fabric, int fd, const char *peer);
tfab_status_t tfab_handshake_server(tfab_fabric_t *fabric, int fd, const char *peer);

#endif
