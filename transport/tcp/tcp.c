/* tcp.c - the TCP backend: frames (32-byte header + payload) over one non-blocking socket per
 * endpoint, driven by epoll. Payloads are written straight from pool buffers (writev) and
 * read straight into the buffer the core names (the granted receive), so a rendezvous moves
 * no byte through an intermediate copy on either side. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <tfab/log.h>
#include "../core/core.h"
#include "../core/tl.h"

#define MOD       "tcp"
#define TX_CAP    4096u /* frames queued per endpoint */
#define MAX_BATCH 64

typedef struct tcp_frame {
    wire_hdr_t     hdr;
    const uint8_t *payload;
    size_t         len;
    size_t         off; /* bytes of header + payload written */
    void          *ctx;
} tcp_frame_t;

typedef struct tcp_domain tcp_domain_t;

typedef struct tcp_ep {
    tfab_link_t  *link;
    tcp_domain_t *dom;
    int           fd;
    int           dead;
    int           want_out;
    tcp_frame_t  *tx; /* ring of TX_CAP */
    unsigned      tx_head, tx_count;
    wire_hdr_t    rx_hdr;
    size_t        rx_hdr_got;
    uint8_t      *rx_dest; /* NULL: discard */
    size_t        rx_left, rx_got;
    struct tcp_ep *next_dead; /* graveyard link */
} tcp_ep_t;

struct tcp_domain {
    tfab_fabric_t *fabric;
    int            epfd;
    int            evfd;
    tcp_ep_t      *graveyard; /* closed endpoints an in-flight epoll event may still name */
    struct linger_fd {
        int      fd;
        uint64_t deadline_ns;
    } lingering[64];          /* closed sockets waiting for the peer's FIN */
    unsigned       n_lingering;
    uint8_t        discard[65536];
};

static void linger_service(tcp_domain_t *d, int wait);

static void bury(tcp_domain_t *d)
{
    while (d->graveyard) {
        tcp_ep_t *t  = d->graveyard;
        d->graveyard = t->next_dead;
        free(t->tx);
        free(t);
    }
}

static tfab_status_t tcp_domain_open(tfab_fabric_t *fabric, const char *listen, void **domain_p)
{
    (void)listen; /* the core accepts TCP links and hands each socket over */
    tcp_domain_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return TFAB_ERR_NOMEM;
    d->fabric = fabric;
    d->epfd   = epoll_create1(EPOLL_CLOEXEC);
    if (d->epfd < 0)
        goto err_free;
    d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->evfd < 0)
        goto err_close_ep;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->evfd, &ev) != 0)
        goto err_close_ev;
    *domain_p = d;
    return TFAB_OK;

err_close_ev:
    close(d->evfd);
err_close_ep:
    close(d->epfd);
err_free:
    TFAB_ERROR(MOD, "creating the epoll set failed: %s", strerror(errno));
    free(d);
    return TFAB_ERR_IO;
}

static void tcp_domain_close(void *domain)
{
    tcp_domain_t *d = domain;
    linger_service(d, 1);
    bury(d);
    close(d->evfd);
    close(d->epfd);
    free(d);
}

static tfab_status_t tcp_ep_open(void *domain, tfab_link_t *link, int fd, int is_server,
                                 uint64_t deadline_ns, void **tl_ep_p)
{
    tcp_domain_t *d = domain;
    tcp_ep_t     *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return TFAB_ERR_NOMEM;
    t->tx = calloc(TX_CAP, sizeof(*t->tx));
    if (t->tx == NULL) {
        free(t);
        return TFAB_ERR_NOMEM;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    t->link = link;
    t->dom  = d;
    t->fd   = fd;
    /* published before epoll can report the socket: the first frame's upcalls need it */
    tfab_core_lock(d->fabric);
    *tl_ep_p              = t;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = t};
    int                rc = epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
    if (rc != 0)
        *tl_ep_p = NULL;
    tfab_core_unlock(d->fabric);
    if (rc != 0) {
        TFAB_ERROR(MOD, "epoll_ctl(ADD) failed: %s", strerror(errno));
        free(t->tx);
        free(t);
        return TFAB_ERR_IO;
    }
    return TFAB_OK;
}

static void detach(tcp_ep_t *t)
{
    if (t->fd >= 0) {
        epoll_ctl(t->dom->epfd, EPOLL_CTL_DEL, t->fd, NULL);
        close(t->fd);
        t->fd = -1;
    }
}

/* Read and drop what a lingering socket has; 1 once the peer closed its side or it failed. */
static int linger_drain(tcp_domain_t *d, int fd)
{
    for (;;) {
        ssize_t r = recv(fd, d->discard, sizeof(d->discard), MSG_DONTWAIT);
        if (r > 0)
            continue;
        return r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* Service lingering sockets; with wait, block until each is done or past its deadline. */
static void linger_service(tcp_domain_t *d, int wait)
{
    for (unsigned i = 0; i < d->n_lingering;) {
        struct linger_fd *l = &d->lingering[i];
        int               done;
        while (!(done = linger_drain(d, l->fd)) && wait && tfab_core_now_ns() < l->deadline_ns) {
            struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
            poll(&pfd, 1, 10);
        }
        if (done || tfab_core_now_ns() >= l->deadline_ns) {
            close(l->fd);
            *l = d->lingering[--d->n_lingering];
        } else {
            i++;
        }
    }
}

/* Called with the fabric lock held. An orderly close: FIN after every byte already written,
 * then the socket lingers (reading and dropping) until the peer closes too, for at most a
 * second. Closing at once with unread bytes would send RST, and an RST makes the peer's
 * kernel discard data it received but had not read yet: our last frames.
 * The struct is freed at the start of the next progress round, when no event fetched before
 * the close can be pending any more. */
static void tcp_ep_close(void *tl_ep)
{
    tcp_ep_t     *t = tl_ep;
    tcp_domain_t *d = t->dom;
    t->dead         = 1;
    if (t->fd >= 0 && d->n_lingering < sizeof(d->lingering) / sizeof(d->lingering[0])) {
        epoll_ctl(d->epfd, EPOLL_CTL_DEL, t->fd, NULL);
        shutdown(t->fd, SHUT_WR);
        d->lingering[d->n_lingering++] = (struct linger_fd){t->fd, tfab_core_now_ns() + 1000000000ull};
        t->fd                          = -1;
    }
    detach(t);
    t->next_dead      = t->dom->graveyard;
    t->dom->graveyard = t;
}

static void fail(tcp_ep_t *t, tfab_status_t st, const char *why)
{
    if (t->dead)
        return;
    t->dead = 1;
    detach(t);
    tfab_core_link_failed(t->link, st, why);
}

static void set_want_out(tcp_ep_t *t, int on)
{
    if (t->want_out == on || t->fd < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.ptr = t};
    epoll_ctl(t->dom->epfd, EPOLL_CTL_MOD, t->fd, &ev);
    t->want_out = on;
}

/* Write queued frames until the socket is full. */
static void flush(tcp_ep_t *t)
{
    while (t->tx_count && !t->dead) {
        struct iovec iov[2 * MAX_BATCH];
        int          n = 0;
        for (unsigned k = 0; k < t->tx_count && k < MAX_BATCH; k++) {
            tcp_frame_t *f   = &t->tx[(t->tx_head + k) % TX_CAP];
            size_t       off = f->off;
            if (off < sizeof(wire_hdr_t)) {
                iov[n++] = (struct iovec){(uint8_t *)&f->hdr + off, sizeof(wire_hdr_t) - off};
                off      = 0;
            } else {
                off -= sizeof(wire_hdr_t);
            }
            if (f->len > off)
                iov[n++] = (struct iovec){(void *)(f->payload + off), f->len - off};
        }
        /* sendmsg, not writev: a peer that reset the connection must not SIGPIPE us */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t       w  = sendmsg(t->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            fail(t, TFAB_ERR_CONN, strerror(errno));
            return;
        }
        size_t left = (size_t)w;
        while (t->tx_count) {
            tcp_frame_t *f     = &t->tx[t->tx_head];
            size_t       total = sizeof(wire_hdr_t) + f->len;
            size_t       take  = total - f->off < left ? total - f->off : left;
            f->off += take;
            left -= take;
            if (f->off < total)
                break;
            void *ctx  = f->ctx;
            t->tx_head = (t->tx_head + 1) % TX_CAP;
            t->tx_count--;
            if (ctx != NULL)
                tfab_core_tx_done(t->link, ctx);
        }
    }
    set_want_out(t, t->tx_count > 0 && !t->dead);
}

static tfab_status_t tcp_ep_post(void *tl_ep, const wire_hdr_t *hdr, const void *payload, size_t len,
                                 void *ctx)
{
    tcp_ep_t *t = tl_ep;
    if (t->dead)
        return TFAB_ERR_CONN;
    if (t->tx_count == TX_CAP)
        return TFAB_ERR_BUSY;
    tcp_frame_t *f = &t->tx[(t->tx_head + t->tx_count) % TX_CAP];
    *f = (tcp_frame_t){.hdr = *hdr, .payload = payload, .len = len, .ctx = ctx};
    t->tx_count++;
    flush(t);
    return TFAB_OK;
}

/* Read everything the socket has: headers, then payloads straight into their destination. */
static void drain(tcp_ep_t *t)
{
    while (!t->dead) {
        ssize_t r;
        if (t->rx_hdr_got < sizeof(wire_hdr_t)) {
            r = recv(t->fd, (uint8_t *)&t->rx_hdr + t->rx_hdr_got,
                     sizeof(wire_hdr_t) - t->rx_hdr_got, 0);
        } else {
            size_t   want = t->rx_left;
            uint8_t *dst  = t->rx_dest ? t->rx_dest + t->rx_got : t->dom->discard;
            if (t->rx_dest == NULL && want > sizeof(t->dom->discard))
                want = sizeof(t->dom->discard);
            r = recv(t->fd, dst, want, 0);
        }
        if (r == 0) {
            fail(t, TFAB_ERR_CONN, "peer closed the connection");
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EINTR)
                continue;
            fail(t, TFAB_ERR_CONN, strerror(errno));
            return;
        }
        if (t->rx_hdr_got < sizeof(wire_hdr_t)) {
            t->rx_hdr_got += (size_t)r;
            if (t->rx_hdr_got < sizeof(wire_hdr_t))
                continue;
            /* a whole header: ask the core where its payload goes */
            void         *dest = NULL;
            tfab_status_t st   = tfab_core_rx_header(t->link, &t->rx_hdr, &dest);
            if (st != TFAB_OK) {
                fail(t, st, "malformed frame");
                return;
            }
            int has_payload = t->rx_hdr.op == WIRE_EAGER || t->rx_hdr.op == WIRE_DATA;
            t->rx_dest      = dest;
            t->rx_got       = 0;
            t->rx_left      = has_payload ? t->rx_hdr.len : 0;
        } else {
            t->rx_left -= (size_t)r;
            if (t->rx_dest)
                t->rx_got += (size_t)r;
        }
        if (t->rx_left == 0) {
            wire_hdr_t hdr = t->rx_hdr;
            void      *dst = t->rx_dest;
            t->rx_hdr_got  = 0;
            tfab_core_rx_done(t->link, &hdr, dst);
        }
    }
}

static int tcp_progress(void *domain, int timeout_ms)
{
    tcp_domain_t      *d = domain;
    struct epoll_event evs[64];
    tfab_core_lock(d->fabric);
    bury(d);
    linger_service(d, 0);
    tfab_core_unlock(d->fabric);
    int n = epoll_wait(d->epfd, evs, 64, timeout_ms);
    if (n <= 0)
        return 0;
    tfab_core_lock(d->fabric);
    for (int i = 0; i < n; i++) {
        tcp_ep_t *t = evs[i].data.ptr;
        if (t == NULL) { /* the wake-up eventfd */
            uint64_t v;
            ssize_t  rr = read(d->evfd, &v, sizeof(v));
            (void)rr;
            continue;
        }
        if (t->dead)
            continue;
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            drain(t);
        if (!t->dead && (evs[i].events & EPOLLOUT))
            flush(t);
    }
    tfab_core_unlock(d->fabric);
    return n;
}

static void tcp_wake(void *domain)
{
    tcp_domain_t *d = domain;
    uint64_t      one = 1;
    ssize_t       w   = write(d->evfd, &one, sizeof(one));
    (void)w;
}

/* TCP lands a payload only where the core says (the granted buffer): no key needed. */
static tfab_status_t tcp_grant(void *tl_ep, void *buf, size_t len, uint32_t *rkey_p,
                               uint32_t *handle_p)
{
    *rkey_p   = 0;
    *handle_p = 0;
    return TFAB_OK;
}

static void tcp_ungrant(void *tl_ep, uint32_t handle) {}

const tfab_tl_ops_t tfab_tl_tcp_ops = {
    .size         = sizeof(tfab_tl_ops_t),
    .name         = "tcp",
    .domain_open  = tcp_domain_open,
    .domain_close = tcp_domain_close,
    .ep_open      = tcp_ep_open,
    .ep_close     = tcp_ep_close,
    .ep_post      = tcp_ep_post,
    .progress     = tcp_progress,
    .wake         = tcp_wake,
    .grant        = tcp_grant,
    .ungrant      = tcp_ungrant,
};
