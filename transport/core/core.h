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
#define EP_MAX_LINKS   8u    /* ranked links per endpoint (CTL_MAX_LINKS) */
#define FAB_MAX_TLS    2u    /* backends per fabric: tcp, verbs */
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
    OP_WAIT_ACK,  /* send (ranked links): on the wire, kept until the peer acknowledges it */
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
    uint64_t       seq;     /* send: its sequence number; recv: the matched message's */
    uint64_t       order;   /* recv: when it was posted (a failover puts it back in place) */
    uint8_t        acked;   /* send: the peer acknowledged it (the backend may still hold it) */
    uint8_t        regrant; /* recv: its grant died with a link; grant again on the RTS */
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
    uint64_t seq;            /* ranked links: the message's sequence number */
} unexp_t;

typedef struct comp {
    tfab_xfer_cb_t cb;
    void          *arg;
    tfab_status_t  status;
    size_t         len;
} comp_t;

/* One way to the peer. An endpoint has one (a fabric without ranked links) or several, ranked
 * by the topology; it moves frames over the best live one. */
struct tfab_link {
    tfab_ep_t           *ep;
    const tfab_tl_ops_t *tl;
    void                *tl_domain;
    void                *tl_ep;
    char                 name[160];   /* "tcp 10.0.0.1:7400" */
    int                  dead;        /* failed or given up; closed */
    uint64_t             last_rx_ns;  /* heartbeats: when the peer was last heard on it */
    uint64_t             last_tx_ns;
};

struct tfab_ep {
    tfab_fabric_t       *fabric;
    const tfab_tl_ops_t *tl;          /* the active link's backend */
    tfab_link_t          links[EP_MAX_LINKS];
    unsigned             n_links, active;
    unsigned             in_failover; /* depth of failover() on the stack: no new sends start
                                         (they would take sequence numbers among re-issues) */
    int                  reliable;    /* ranked links: sequence numbers and ACKs */
    unsigned             link_cfg[EP_MAX_LINKS]; /* server: which of the fabric's links each is */
    char                 link[160];
    int                  failed;
    tfab_status_t        fail_status;
    int                  closed;
    tfab_ep_t           *next_ep;     /* fabric's list */
    tfab_ep_t           *next_accept; /* accept queue */
    uint64_t             last_progress_ns;
    /* credits: the header carries cumulative counts (mod 2^16) of slots freed */
    unsigned             credits;        /* slots we may still use at the peer */
    uint16_t             peer_freed;     /* the peer's count of slots it freed, last seen */
    uint16_t             freed, freed_told; /* our count, and what our last frame said */
    /* ranked links: sequence numbers */
    uint64_t             tx_seq;         /* next send's */
    uint64_t             rx_next;        /* every message below this one arrived */
    int                  rx_partial;     /* an eager payload (rx_next - 1) is still landing */
    int                  rx_dup;         /* the frame being received repeats one we have */
    uint64_t             recv_order;
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

typedef struct fab_link_cfg { /* a link this fabric offers: backend and address */
    unsigned tl;               /* index into tls[] */
    char     address[80];      /* "ip:port" as given; after listening, the bound one */
    int      listen_fd;        /* -1: not listening */
} fab_link_cfg_t;

typedef struct fab_session { /* ranked links: an accepted endpoint waiting for its joins */
    uint8_t              id[16];
    tfab_ep_t           *ep;
    int                  ctl_fd;     /* the control connection; Ready arrives here */
    char                 peer[96];
    uint64_t             deadline_ns;
    struct fab_session  *next;
} fab_session_t;

struct tfab_fabric {
    tfab_pool_t         *pool;
    char                 address[80];
    char                *token;
    size_t               eager_max;
    unsigned             credits;
    uint64_t             timeout_ns;
    tfab_progress_mode_t mode;
    const tfab_tl_ops_t *tl;          /* tls[0]: a fabric without ranked links has one */
    void                *tl_domain;
    const tfab_tl_ops_t *tls[FAB_MAX_TLS];
    void                *tl_domains[FAB_MAX_TLS];
    unsigned             n_tls;
    fab_link_cfg_t       links[EP_MAX_LINKS]; /* ranked links offered (none: one backend) */
    unsigned             n_links;
    fab_session_t       *sessions;   /* acceptor thread only */
    uint64_t             heartbeat_ns;
    pthread_mutex_t      deliver_lock; /* callbacks run one at a time, in order */
    pthread_mutex_t      lock;
    pthread_cond_t       accept_cond;
    tfab_ep_t           *eps;
    tfab_ep_t           *accept_head, *accept_tail;
    int                  listen_fd;
    _Atomic int          stop;
    pthread_t            progress_thread, accept_thread, progress_threads[FAB_MAX_TLS];
    int                  have_progress_thread, have_accept_thread;
};

uint64_t tfab_core_now_ns(void);

/* proto.c */
tfab_status_t tfab_core_ep_init(tfab_ep_t *ep, tfab_fabric_t *fabric);
/* Add a link (its backend endpoint not open yet: the caller opens it unlocked, into
 * link->tl_ep). The first one added is active. */
tfab_link_t  *tfab_core_link_add(tfab_ep_t *ep, const tfab_tl_ops_t *tl, void *tl_domain,
                                 const char *name);
/* Fail every pending transfer (closing: TFAB_ERR_CANCELED); lock held. */
void          tfab_core_ep_fail(tfab_ep_t *ep, tfab_status_t st, const char *why);
void          tfab_core_ep_fini(tfab_ep_t *ep);
void          tfab_core_check_timeouts(tfab_fabric_t *fabric);
/* Deliver queued completions (call without the lock). Returns how many. */
unsigned      tfab_core_deliver(tfab_fabric_t *fabric);

/* handshake.c: run the hello/auth exchange on a connected blocking socket. */
typedef struct hs_result {  /* ranked links: what the handshake agreed */
    unsigned n_set;                       /* client opening a session: the chosen links */
    unsigned set[EP_MAX_LINKS];           /* indices into the server's links, best first */
    char     names[EP_MAX_LINKS][96];     /* "tcp ip:port" of each server link */
    unsigned n_names;
    uint8_t  session[16];
    int      has_session;
    unsigned join;                        /* server: 1 + the link a join attaches to */
} hs_result_t;
/* join: 0 for a first connection; 1 + link index to join session (client side). */
tfab_status_t tfab_handshake_client(tfab_fabric_t *fabric, int fd, const char *peer,
                                    const uint8_t *session, unsigned join, hs_result_t *res);
tfab_status_t tfab_handshake_server(tfab_fabric_t *fabric, int fd, const char *peer,
                                    hs_result_t *res);
/* fabric.c: is session a live one of ours (acceptor thread)? */
int           tfab_fabric_session_known(tfab_fabric_t *fabric, const uint8_t *session);

#endif
