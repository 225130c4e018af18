/* fabric.c - fabric and endpoint lifecycle: backends, the listening sockets and their acceptor
 * (handshakes run there, off the data path), outgoing connects, ranked links (a session per
 * endpoint: one control connection, then one join per link, then Ready both ways), the
 * progress threads (one per backend), and orderly close (pending transfers fail with
 * TFAB_ERR_CANCELED, never vanish). */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <tfab/log.h>
#include "control.h"
#include "core.h"

#define MOD "fabric"

void tfab_core_lock(tfab_fabric_t *f) { pthread_mutex_lock(&f->lock); }
void tfab_core_unlock(tfab_fabric_t *f) { pthread_mutex_unlock(&f->lock); }

/* Split "host:port" (IPv4 or [IPv6]:port) into a socket address. */
static tfab_status_t parse_addr(const char *s, int passive, struct sockaddr_storage *ss,
                                socklen_t *len_p)
{
    char        host[128];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host) || colon[1] == '\0') {
        TFAB_ERROR(MOD, "'%s' is not an address of the form host:port", s);
        return TFAB_ERR_INVALID;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0},
                    *ai;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0) {
        TFAB_ERROR(MOD, "cannot resolve '%s': %s", s, gai_strerror(rc));
        return TFAB_ERR_INVALID;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len_p = ai->ai_addrlen;
    freeaddrinfo(ai);
    return TFAB_OK;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int  port                   = 0;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
        port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
        snprintf(buf, len, "%s:%d", host, port);
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
        port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        snprintf(buf, len, "[%s]:%d", host, port);
    }
}

/* The endpoint's best live link becomes active and the endpoint joins the fabric's list. */
static tfab_status_t go_live(tfab_ep_t *ep)
{
    tfab_fabric_t *f = ep->fabric;
    pthread_mutex_lock(&f->lock);
    unsigned k = 0;
    while (k < ep->n_links && ep->links[k].dead)
        k++;
    if (k == ep->n_links) {
        pthread_mutex_unlock(&f->lock);
        return TFAB_ERR_CONN;
    }
    uint64_t now = tfab_core_now_ns();
    ep->active   = k;
    ep->tl       = ep->links[k].tl;
    snprintf(ep->link, sizeof(ep->link), "%s", ep->links[k].name);
    ep->last_progress_ns = now;
    for (unsigned j = 0; j < ep->n_links; j++)
        ep->links[j].last_rx_ns = ep->links[j].last_tx_ns = now;
    ep->next_ep = f->eps;
    f->eps      = ep;
    pthread_mutex_unlock(&f->lock);
    return TFAB_OK;
}

/* Close every link still open (lock held). */
static void close_links(tfab_ep_t *ep)
{
    for (unsigned k = 0; k < ep->n_links; k++) {
        tfab_link_t *l = &ep->links[k];
        l->dead        = 1;
        if (l->tl_ep) {
            l->tl->ep_close(l->tl_ep); /* the backend defers freeing until no event names it */
            l->tl_ep = NULL;
        }
    }
}

/* An endpoint that never went live: close its links and free it. */
static void ep_discard(tfab_ep_t *ep)
{
    pthread_mutex_lock(&ep->fabric->lock);
    close_links(ep);
    pthread_mutex_unlock(&ep->fabric->lock);
    tfab_core_ep_fini(ep);
    free(ep);
}

/* Wrap a connected, authenticated socket into an endpoint and make it live. */
static tfab_status_t ep_create(tfab_fabric_t *f, int fd, const char *peer, int is_server,
                               tfab_ep_t **ep_p)
{
    tfab_ep_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return TFAB_ERR_NOMEM;
    tfab_status_t st = tfab_core_ep_init(ep, f);
    if (st != TFAB_OK)
        goto err_free;
    snprintf(ep->link, sizeof(ep->link), "%s %s", f->tl->name, peer);
    tfab_link_t *l = tfab_core_link_add(ep, f->tl, f->tl_domain, ep->link);
    /* frames may arrive the moment the backend registers the link (the peer is live): they
     * must find it active */
    pthread_mutex_lock(&f->lock);
    l->dead    = 0;
    ep->active = 0;
    pthread_mutex_unlock(&f->lock);
    /* unlocked: a backend may block here (verbs connects a queue pair) */
    st = f->tl->ep_open(f->tl_domain, l, fd, is_server, tfab_core_now_ns() + f->timeout_ns,
                        &l->tl_ep);
    if (st != TFAB_OK)
        goto err_fini;
    l->dead = 0;
    go_live(ep);
    *ep_p = ep;
    return TFAB_OK;

err_fini:
    tfab_core_ep_fini(ep);
err_free:
    free(ep);
    return st;
}

static void enqueue_accepted(tfab_fabric_t *f, tfab_ep_t *ep)
{
    pthread_mutex_lock(&f->lock);
    if (f->accept_tail)
        f->accept_tail->next_accept = ep;
    else
        f->accept_head = ep;
    f->accept_tail = ep;
    pthread_cond_broadcast(&f->accept_cond);
    pthread_mutex_unlock(&f->lock);
}

/* ---- ranked links: sessions (acceptor thread only) ---------------------------------------- */

int tfab_fabric_session_known(tfab_fabric_t *f, const uint8_t *id)
{
    for (fab_session_t *s = f->sessions; s; s = s->next)
        if (memcmp(s->id, id, sizeof(s->id)) == 0)
            return 1;
    return 0;
}

static void session_drop(tfab_fabric_t *f, fab_session_t *s, int keep_ep)
{
    for (fab_session_t **pp = &f->sessions; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    close(s->ctl_fd);
    if (!keep_ep)
        ep_discard(s->ep);
    free(s);
}

/* A client opened a session on fd: an endpoint with the chosen links, none open yet. */
static void session_open(tfab_fabric_t *f, int fd, const char *peer, const hs_result_t *res)
{
    fab_session_t *s  = calloc(1, sizeof(*s));
    tfab_ep_t     *ep = calloc(1, sizeof(*ep));
    if (s == NULL || ep == NULL || tfab_core_ep_init(ep, f) != TFAB_OK) {
        free(s);
        free(ep);
        close(fd);
        return;
    }
    ep->reliable = 1;
    for (unsigned k = 0; k < res->n_set; k++) {
        fab_link_cfg_t *c = &f->links[res->set[k]];
        char            name[160];
        snprintf(name, sizeof(name), "%s %s (from %s)", f->tls[c->tl]->name, c->address, peer);
        tfab_core_link_add(ep, f->tls[c->tl], f->tl_domains[c->tl], name);
        ep->link_cfg[k] = res->set[k];
    }
    memcpy(s->id, res->session, sizeof(s->id));
    s->ep          = ep;
    s->ctl_fd      = fd;
    /* the client joins the links one after another, and an unreachable standby link may take
     * it a timeout each to connect, authenticate and open: that must not cost the session */
    s->deadline_ns = tfab_core_now_ns() + (3ull * res->n_set + 1) * f->timeout_ns;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->next     = f->sessions;
    f->sessions = s;
}

/* A join on fd: it becomes link res->join - 1 of its session's endpoint. */
static void session_join(tfab_fabric_t *f, int fd, const char *peer, const hs_result_t *res)
{
    fab_session_t *s = f->sessions;
    while (s && memcmp(s->id, res->session, sizeof(s->id)) != 0)
        s = s->next;
    tfab_ep_t *ep = s ? s->ep : NULL;
    unsigned   k  = 0;
    while (ep && k < ep->n_links && ep->link_cfg[k] != res->join - 1)
        k++;
    if (ep == NULL || k == ep->n_links || ep->links[k].tl_ep != NULL) {
        TFAB_ERROR(MOD, "%s joined link %u, which its session did not choose (or joined twice)",
                   peer, res->join);
        close(fd);
        return;
    }
    tfab_link_t    *l = &ep->links[k];
    fab_link_cfg_t *c = &f->links[res->join - 1];
    snprintf(l->name, sizeof(l->name), "%s %s (from %s)", l->tl->name, c->address, peer);
    tfab_status_t st = l->tl->ep_open(l->tl_domain, l, fd, 1, tfab_core_now_ns() + f->timeout_ns,
                                      &l->tl_ep);
    if (st != TFAB_OK) {
        TFAB_WARN(MOD, "%s: link %s could not be opened (%s); the endpoint goes on without it",
                  peer, l->name, tfab_status_str(st));
        close(fd);
        return;
    }
    pthread_mutex_lock(&f->lock);
    l->dead = 0;
    pthread_mutex_unlock(&f->lock);
}

/* The links of ep that are open, as a Ready message's list (positions in its ranking). */
static unsigned live_links(tfab_ep_t *ep, uint32_t *out)
{
    unsigned n = 0;
    for (unsigned k = 0; k < ep->n_links; k++)
        if (!ep->links[k].dead && ep->links[k].tl_ep)
            out[n++] = k;
    return n;
}

/* Keep only the links both sides hold (lock not held). */
static void keep_links(tfab_ep_t *ep, const uint32_t *theirs, size_t n)
{
    pthread_mutex_lock(&ep->fabric->lock);
    for (unsigned k = 0; k < ep->n_links; k++) {
        int both = 0;
        for (size_t j = 0; j < n; j++)
            both |= theirs[j] == k;
        tfab_link_t *l = &ep->links[k];
        if (!both && l->tl_ep) {
            l->tl->ep_close(l->tl_ep);
            l->tl_ep = NULL;
        }
        if (!both)
            l->dead = 1;
    }
    pthread_mutex_unlock(&ep->fabric->lock);
}

static tfab_status_t send_ready(int fd, tfab_ep_t *ep, uint64_t deadline)
{
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Ready   r = TFAB__READY__INIT;
    uint32_t      mine[EP_MAX_LINKS];
    r.n_links       = live_links(ep, mine);
    r.links         = mine;
    c.msg_case      = TFAB__CONTROL__MSG_READY;
    c.ready         = &r;
    return tfab_ctl_send(fd, &c, deadline);
}

static tfab_status_t recv_ready(int fd, tfab_ep_t *ep, const char *peer, uint64_t deadline)
{
    Tfab__Control *m;
    char           err[256];
    tfab_status_t  st = tfab_ctl_recv(fd, deadline, &m, err, sizeof(err));
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "%s: waiting for Ready: %s", peer, err);
        return st;
    }
    if (m->msg_case != TFAB__CONTROL__MSG_READY) {
        TFAB_ERROR(MOD, "%s: expected Ready, got control message kind %d", peer, (int)m->msg_case);
        tfab__control__free_unpacked(m, NULL);
        return TFAB_ERR_PROTO;
    }
    keep_links(ep, m->ready->links, m->ready->n_links);
    tfab__control__free_unpacked(m, NULL);
    return TFAB_OK;
}

static void log_links(tfab_ep_t *ep, const char *peer)
{
    char     buf[512];
    size_t   o = 0;
    unsigned n = 0;
    for (unsigned k = 0; k < ep->n_links && o < sizeof(buf); k++)
        if (!ep->links[k].dead) {
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s", n++ ? ", then " : "",
                                  ep->links[k].name);
        }
    TFAB_INFO(MOD, "%s: %u ranked link%s: %s", peer, n, n == 1 ? "" : "s", buf);
}

/* The client sent Ready on the session's control connection: answer, go live. */
static void session_ready(tfab_fabric_t *f, fab_session_t *s)
{
    uint64_t  deadline = tfab_core_now_ns() + f->timeout_ns;
    tfab_ep_t *ep      = s->ep;
    if (recv_ready(s->ctl_fd, ep, s->peer, deadline) != TFAB_OK) {
        session_drop(f, s, 0);
        return;
    }
    /* live before answering: the client may send the moment it reads our Ready */
    if (go_live(ep) != TFAB_OK) {
        TFAB_ERROR(MOD, "%s: no link both sides hold", s->peer);
        session_drop(f, s, 0);
        return;
    }
    log_links(ep, s->peer);
    if (send_ready(s->ctl_fd, ep, deadline) != TFAB_OK) {
        pthread_mutex_lock(&f->lock);
        tfab_core_ep_fail(ep, TFAB_ERR_CONN, "the peer left before the endpoint went live");
        pthread_mutex_unlock(&f->lock);
    }
    session_drop(f, s, 1);
    enqueue_accepted(f, ep);
}

static void accept_one(tfab_fabric_t *f, int lfd)
{
    struct sockaddr_storage ss;
    socklen_t               sl = sizeof(ss);
    int                     fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    char peer[96];
    addr_str((struct sockaddr *)&ss, peer, sizeof(peer));
    hs_result_t res;
    tfab_ep_t  *ep;
    if (tfab_handshake_server(f, fd, peer, &res) != TFAB_OK) {
        close(fd);
        return;
    }
    if (f->n_links == 0) {
        if (ep_create(f, fd, peer, 1, &ep) != TFAB_OK)
            close(fd);
        else
            enqueue_accepted(f, ep);
    } else if (res.join) {
        session_join(f, fd, peer, &res);
    } else {
        session_open(f, fd, peer, &res);
    }
}

static void *accept_main(void *arg)
{
    tfab_fabric_t *f = arg;
    while (!f->stop) {
        struct pollfd  pfd[EP_MAX_LINKS + 1 + 32];
        fab_session_t *sess[32];
        unsigned       n = 0, n_listen, n_sess = 0;
        if (f->n_links == 0)
            pfd[n++] = (struct pollfd){.fd = f->listen_fd, .events = POLLIN};
        for (unsigned k = 0; k < f->n_links; k++)
            if (f->links[k].listen_fd >= 0)
                pfd[n++] = (struct pollfd){.fd = f->links[k].listen_fd, .events = POLLIN};
        n_listen = n;
        uint64_t now = tfab_core_now_ns();
        for (fab_session_t *s = f->sessions, *next; s; s = next) {
            next = s->next;
            if (now > s->deadline_ns) {
                TFAB_ERROR(MOD, "%s opened a session but did not finish joining its links in "
                           "time", s->peer);
                session_drop(f, s, 0);
            } else if (n_sess < 32) {
                sess[n_sess++] = s;
                pfd[n++]       = (struct pollfd){.fd = s->ctl_fd, .events = POLLIN};
            }
        }
        if (poll(pfd, n, 100) <= 0)
            continue;
        for (unsigned i = 0; i < n_listen; i++)
            if (pfd[i].revents & POLLIN)
                accept_one(f, pfd[i].fd);
        for (unsigned i = 0; i < n_sess; i++)
            if (pfd[n_listen + i].revents)
                session_ready(f, sess[i]);
    }
    while (f->sessions)
        session_drop(f, f->sessions, 0);
    return NULL;
}

unsigned tfab_fabric_progress(tfab_fabric_t *f, uint64_t timeout_ns)
{
    int ms = (int)(timeout_ns / 1000000);
    if (f->n_tls == 1) {
        f->tl->progress(f->tl_domain, ms);
    } else { /* several backends: look at each, wait (briefly) on the first only */
        for (unsigned k = 0; k < f->n_tls; k++)
            f->tls[k]->progress(f->tl_domains[k], k == 0 ? (ms < 1 ? ms : 1) : 0);
    }
    tfab_core_check_timeouts(f);
    return tfab_core_deliver(f);
}

typedef struct progress_arg {
    tfab_fabric_t *f;
    unsigned       tl;
} progress_arg_t;

/* One progress thread per backend, each waiting on its own events. */
static void *progress_main(void *arg)
{
    tfab_fabric_t *f  = ((progress_arg_t *)arg)->f;
    unsigned       tl = ((progress_arg_t *)arg)->tl;
    free(arg);
    while (!f->stop) {
        f->tls[tl]->progress(f->tl_domains[tl], 50);
        tfab_core_check_timeouts(f);
        tfab_core_deliver(f);
    }
    return NULL;
}

static tfab_status_t start_listening(const char *listen_addr, int *fd_p, char *bound, size_t blen)
{
    struct sockaddr_storage ss;
    socklen_t               sl;
    tfab_status_t           st = parse_addr(listen_addr, 1, &ss, &sl);
    if (st != TFAB_OK)
        return st;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return tfab_status_from_errno(errno);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0) {
        TFAB_ERROR(MOD, "cannot listen on %s: %s", listen_addr, strerror(errno));
        close(fd);
        return TFAB_ERR_IO;
    }
    sl = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    addr_str((struct sockaddr *)&ss, bound, blen);
    *fd_p = fd;
    return TFAB_OK;
}

static const tfab_tl_ops_t *tl_by_name(const char *name, size_t len)
{
    if (len == 3 && strncmp(name, "tcp", 3) == 0)
        return &tfab_tl_tcp_ops;
#if TFAB_HAVE_VERBS
    if (len == 5 && strncmp(name, "verbs", 5) == 0)
        return &tfab_tl_verbs_ops;
#endif
    return NULL;
}

/* The backend's index in f->tls, added if new. */
static int tl_index(tfab_fabric_t *f, const tfab_tl_ops_t *tl)
{
    for (unsigned k = 0; k < f->n_tls; k++)
        if (f->tls[k] == tl)
            return (int)k;
    if (f->n_tls == FAB_MAX_TLS)
        return -1;
    f->tls[f->n_tls] = tl;
    return (int)f->n_tls++;
}

/* Parse "backend [ip:port], ..." into f->links. */
static tfab_status_t parse_links(tfab_fabric_t *f, const char *spec)
{
    const char *p = spec;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *end = p;
        while (*end && *end != ',')
            end++;
        const char *sp = p;
        while (sp < end && *sp != ' ')
            sp++;
        const tfab_tl_ops_t *tl = tl_by_name(p, (size_t)(sp - p));
        if (tl == NULL) {
            TFAB_ERROR(MOD, "links '%s': '%.*s' is not a backend of this build (tcp%s)", spec,
                       (int)(sp - p), p, TFAB_HAVE_VERBS ? ", verbs" : "");
            return TFAB_ERR_INVALID;
        }
        if (f->n_links == EP_MAX_LINKS) {
            TFAB_ERROR(MOD, "links '%s': more than %u links", spec, EP_MAX_LINKS);
            return TFAB_ERR_INVALID;
        }
        fab_link_cfg_t *c = &f->links[f->n_links];
        c->listen_fd      = -1;
        int idx           = tl_index(f, tl);
        while (sp < end && *sp == ' ')
            sp++;
        const char *ae = end;
        while (ae > sp && ae[-1] == ' ')
            ae--;
        if (idx < 0 || (size_t)(ae - sp) >= sizeof(c->address)) {
            TFAB_ERROR(MOD, "links '%s': entry %u is malformed", spec, f->n_links + 1);
            return TFAB_ERR_INVALID;
        }
        c->tl = (unsigned)idx;
        memcpy(c->address, sp, (size_t)(ae - sp));
        c->address[ae - sp] = '\0';
        for (unsigned k = 0; k < f->n_links; k++)
            if (tl == &tfab_tl_tcp_ops ? 0 : f->links[k].tl == c->tl) {
                TFAB_ERROR(MOD, "links '%s': one %s link per fabric", spec, tl->name);
                return TFAB_ERR_INVALID;
            }
        f->n_links++;
        p = end;
    }
    if (f->n_links == 0) {
        TFAB_ERROR(MOD, "links '%s' names no link", spec);
        return TFAB_ERR_INVALID;
    }
    return TFAB_OK;
}

static void fabric_stop_threads(tfab_fabric_t *f)
{
    f->stop = 1;
    if (f->have_accept_thread)
        pthread_join(f->accept_thread, NULL);
    f->have_accept_thread = 0;
    for (unsigned k = 0; k < f->n_tls && f->have_progress_thread; k++) {
        f->tls[k]->wake(f->tl_domains[k]);
        pthread_join(f->progress_threads[k], NULL);
    }
    f->have_progress_thread = 0;
}

static void fabric_close_backends(tfab_fabric_t *f)
{
    for (unsigned k = f->n_tls; k-- > 0;)
        if (f->tl_domains[k])
            f->tls[k]->domain_close(f->tl_domains[k]);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    for (unsigned k = 0; k < f->n_links; k++)
        if (f->links[k].listen_fd >= 0)
            close(f->links[k].listen_fd);
}

tfab_status_t tfab_fabric_create(const tfab_fabric_params_t *params, tfab_fabric_t **fabric_p)
{
    uint64_t m = params ? params->field_mask : 0;
    if (!(m & TFAB_FABRIC_PARAM_POOL) || params->pool == NULL) {
        TFAB_ERROR(MOD, "a fabric needs a pool (TFAB_FABRIC_PARAM_POOL)");
        return TFAB_ERR_INVALID;
    }
    tfab_fabric_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return TFAB_ERR_NOMEM;
    f->pool         = params->pool;
    f->eager_max    = (m & TFAB_FABRIC_PARAM_EAGER_MAX) ? params->eager_max : 8192;
    f->credits      = (m & TFAB_FABRIC_PARAM_CREDITS) ? params->credits : 64;
    f->timeout_ns   = (m & TFAB_FABRIC_PARAM_TIMEOUT) ? params->timeout_ns : 10000000000ull;
    f->mode         = (m & TFAB_FABRIC_PARAM_PROGRESS) ? params->progress : TFAB_PROGRESS_THREAD;
    f->heartbeat_ns = (m & TFAB_FABRIC_PARAM_HEARTBEAT) ? params->heartbeat_ns : 0;
    f->listen_fd    = -1;
    tfab_status_t st = TFAB_ERR_INVALID;
    if (f->credits == 0 || f->credits > EP_MAX_CREDITS || f->eager_max == 0 ||
        f->eager_max > (1u << 20) || f->timeout_ns == 0) {
        TFAB_ERROR(MOD, "credits must be 1..%u, eager_max 1..1 MiB, timeout > 0", EP_MAX_CREDITS);
        goto err_free;
    }
    if (f->heartbeat_ns != 0 && f->heartbeat_ns >= f->timeout_ns) {
        TFAB_ERROR(MOD, "the heartbeat interval (%llu ms) must be shorter than the timeout "
                   "(%llu ms)", (unsigned long long)(f->heartbeat_ns / 1000000),
                   (unsigned long long)(f->timeout_ns / 1000000));
        goto err_free;
    }
    if ((m & TFAB_FABRIC_PARAM_LINKS) && params->links) {
        if ((st = parse_links(f, params->links)) != TFAB_OK)
            goto err_free;
    } else {
        const tfab_tl_ops_t *tl = &tfab_tl_tcp_ops;
        if ((m & TFAB_FABRIC_PARAM_BACKEND) && params->backend &&
            (tl = tl_by_name(params->backend, strlen(params->backend))) == NULL) {
            TFAB_ERROR(MOD, "backend '%s' is not available in this build (tcp%s)", params->backend,
                       TFAB_HAVE_VERBS ? ", verbs" : "");
            goto err_free;
        }
        tl_index(f, tl);
    }
    f->tl = f->tls[0];
    if ((m & TFAB_FABRIC_PARAM_TOKEN) && params->token && (f->token = strdup(params->token)) == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_free;
    }
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    if (pthread_mutex_init(&f->lock, NULL) != 0 || pthread_cond_init(&f->accept_cond, NULL) != 0 ||
        pthread_mutex_init(&f->deliver_lock, &ma) != 0) {
        st = TFAB_ERR_NOMEM;
        goto err_free_token;
    }
    /* listen first (a backend may listen on the same address), accept once the backends are up */
    const char *tl_listen[FAB_MAX_TLS] = {NULL};
    if (f->n_links == 0) {
        if ((m & TFAB_FABRIC_PARAM_LISTEN) && params->listen &&
            (st = start_listening(params->listen, &f->listen_fd, f->address, sizeof(f->address))) != TFAB_OK)
            goto err_close;
        tl_listen[0] = f->address[0] ? f->address : NULL;
    } else {
        for (unsigned k = 0; k < f->n_links; k++) {
            fab_link_cfg_t *c = &f->links[k];
            if (c->address[0] == '\0')
                continue;
            char bound[80];
            if ((st = start_listening(c->address, &c->listen_fd, bound, sizeof(bound))) != TFAB_OK)
                goto err_close;
            snprintf(c->address, sizeof(c->address), "%s", bound);
            if (f->address[0] == '\0')
                snprintf(f->address, sizeof(f->address), "%s", bound);
            tl_listen[c->tl] = c->address;
        }
    }
    for (unsigned k = 0; k < f->n_tls; k++)
        if ((st = f->tls[k]->domain_open(f, tl_listen[k], &f->tl_domains[k])) != TFAB_OK)
            goto err_close;
    f->tl_domain = f->tl_domains[0];
    if (f->address[0]) {
        if (pthread_create(&f->accept_thread, NULL, accept_main, f) != 0) {
            st = TFAB_ERR_NOMEM;
            goto err_close;
        }
        f->have_accept_thread = 1;
    }
    if (f->mode == TFAB_PROGRESS_THREAD) {
        for (unsigned k = 0; k < f->n_tls; k++) {
            progress_arg_t *pa = malloc(sizeof(*pa));
            if (pa)
                *pa = (progress_arg_t){f, k};
            if (pa == NULL || pthread_create(&f->progress_threads[k], NULL, progress_main, pa) != 0) {
                free(pa);
                /* join the ones started */
                f->stop = 1;
                for (unsigned j = 0; j < k; j++) {
                    f->tls[j]->wake(f->tl_domains[j]);
                    pthread_join(f->progress_threads[j], NULL);
                }
                st = TFAB_ERR_NOMEM;
                goto err_close;
            }
        }
        f->have_progress_thread = 1;
    }
    if (f->n_links == 0) {
        TFAB_INFO(MOD, "fabric up: backend %s%s%s", f->tl->name,
                  f->address[0] ? ", listening on " : "", f->address);
    } else {
        char   buf[512];
        size_t o = 0;
        for (unsigned k = 0; k < f->n_links && o < sizeof(buf); k++)
            o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s%s%s", k ? ", " : "",
                                  f->tls[f->links[k].tl]->name, f->links[k].address[0] ? " " : "",
                                  f->links[k].address);
        TFAB_INFO(MOD, "fabric up: ranked links %s", buf);
    }
    *fabric_p = f;
    return TFAB_OK;

err_close:
    fabric_stop_threads(f);
    fabric_close_backends(f);
    pthread_mutex_destroy(&f->deliver_lock);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->accept_cond);
err_free_token:
    free(f->token);
err_free:
    free(f);
    return st;
}

const char *tfab_fabric_address(const tfab_fabric_t *f) { return f->address; }

/* A TCP connection to addr, within the fabric timeout. */
static tfab_status_t dial(tfab_fabric_t *f, const char *addr, int *fd_p)
{
    struct sockaddr_storage ss;
    socklen_t               sl;
    tfab_status_t           st = parse_addr(addr, 0, &ss, &sl);
    if (st != TFAB_OK)
        return st;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return tfab_status_from_errno(errno);
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
        TFAB_ERROR(MOD, "connect to %s: %s", addr, strerror(errno));
        close(fd);
        return TFAB_ERR_CONN;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int           err = 0;
    socklen_t     el  = sizeof(err);
    if (poll(&pfd, 1, (int)(f->timeout_ns / 1000000)) != 1) {
        TFAB_ERROR(MOD, "connect to %s: timed out after %llu ms", addr,
                   (unsigned long long)(f->timeout_ns / 1000000));
        close(fd);
        return TFAB_ERR_TIMEOUT;
    }
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) {
        TFAB_ERROR(MOD, "connect to %s: %s", addr, strerror(err));
        close(fd);
        return TFAB_ERR_CONN;
    }
    *fd_p = fd;
    return TFAB_OK;
}

/* Ranked links: the handshake on fd opened a session; join each chosen link, then agree on
 * the ones both sides hold (Ready both ways) and go live. */
static tfab_status_t connect_ranked(tfab_fabric_t *f, int fd, const char *addr,
                                    const hs_result_t *res, tfab_ep_t **ep_p)
{
    tfab_ep_t *ep = calloc(1, sizeof(*ep));
    if (ep == NULL)
        return TFAB_ERR_NOMEM;
    tfab_status_t st = tfab_core_ep_init(ep, f);
    if (st != TFAB_OK) {
        free(ep);
        return st;
    }
    ep->reliable = 1;
    for (unsigned k = 0; k < res->n_set; k++) {
        const char *name = res->names[res->set[k]];
        const char *sp   = strchr(name, ' ');
        int         tl   = -1;
        for (unsigned j = 0; j < f->n_tls; j++)
            if (strlen(f->tls[j]->name) == (size_t)(sp - name) &&
                strncmp(f->tls[j]->name, name, (size_t)(sp - name)) == 0)
                tl = (int)j;
        tfab_core_link_add(ep, f->tls[tl], f->tl_domains[tl], name);
    }
    for (unsigned k = 0; k < ep->n_links; k++) {
        tfab_link_t *l     = &ep->links[k];
        const char  *laddr = strchr(l->name, ' ') + 1;
        int          lfd;
        hs_result_t  jr;
        if ((st = dial(f, laddr, &lfd)) != TFAB_OK)
            goto skip;
        if ((st = tfab_handshake_client(f, lfd, laddr, res->session, res->set[k] + 1, &jr)) != TFAB_OK) {
            close(lfd);
            goto skip;
        }
        st = l->tl->ep_open(l->tl_domain, l, lfd, 0, tfab_core_now_ns() + f->timeout_ns, &l->tl_ep);
        if (st != TFAB_OK) {
            close(lfd);
            goto skip;
        }
        pthread_mutex_lock(&f->lock);
        l->dead = 0;
        pthread_mutex_unlock(&f->lock);
        continue;
    skip:
        TFAB_WARN(MOD, "%s: link %s could not be opened (%s); the endpoint goes on without it",
                  addr, l->name, tfab_status_str(st));
    }
    /* the server goes live when it reads our Ready and may send at once: our best link must
     * take frames before its answer arrives (go_live settles on the links both hold) */
    pthread_mutex_lock(&f->lock);
    for (ep->active = 0; ep->active < ep->n_links && ep->links[ep->active].dead; ep->active++)
        ;
    if (ep->active < ep->n_links)
        ep->tl = ep->links[ep->active].tl;
    pthread_mutex_unlock(&f->lock);
    uint64_t deadline = tfab_core_now_ns() + f->timeout_ns;
    if ((st = send_ready(fd, ep, deadline)) != TFAB_OK || (st = recv_ready(fd, ep, addr, deadline)) != TFAB_OK)
        goto err;
    if ((st = go_live(ep)) != TFAB_OK) {
        TFAB_ERROR(MOD, "%s: no link both sides hold", addr);
        goto err;
    }
    log_links(ep, addr);
    close(fd);
    *ep_p = ep;
    return TFAB_OK;
err:
    close(fd);
    ep_discard(ep);
    return st;
}

tfab_status_t tfab_ep_connect(tfab_fabric_t *f, const char *addr, tfab_ep_t **ep_p)
{
    int           fd;
    hs_result_t   res = {0};
    tfab_status_t st  = dial(f, addr, &fd);
    if (st != TFAB_OK)
        return st;
    if ((st = tfab_handshake_client(f, fd, addr, NULL, 0, &res)) != TFAB_OK) {
        close(fd);
        return st;
    }
    if (f->n_links > 0)
        return connect_ranked(f, fd, addr, &res, ep_p);
    if ((st = ep_create(f, fd, addr, 0, ep_p)) != TFAB_OK) {
        close(fd);
        return st;
    }
    return TFAB_OK;
}

tfab_status_t tfab_fabric_accept(tfab_fabric_t *f, uint64_t timeout_ns, tfab_ep_t **ep_p)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + timeout_ns;
    ts.tv_sec += (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    pthread_mutex_lock(&f->lock);
    while (f->accept_head == NULL && !f->stop)
        if (pthread_cond_timedwait(&f->accept_cond, &f->lock, &ts) == ETIMEDOUT)
            break;
    tfab_ep_t *ep = f->accept_head;
    if (ep) {
        f->accept_head = ep->next_accept;
        if (f->accept_head == NULL)
            f->accept_tail = NULL;
    }
    pthread_mutex_unlock(&f->lock);
    if (ep == NULL)
        return f->listen_fd < 0 ? TFAB_ERR_INVALID : TFAB_ERR_TIMEOUT;
    *ep_p = ep;
    return TFAB_OK;
}

const char *tfab_ep_link(const tfab_ep_t *ep) { return ep->link; }

void tfab_ep_close(tfab_ep_t *ep)
{
    tfab_fabric_t *f = ep->fabric;
    pthread_mutex_lock(&f->lock);
    ep->closed = 1;
    tfab_core_ep_fail(ep, TFAB_ERR_CANCELED, "closed");
    pthread_mutex_unlock(&f->lock);
    tfab_core_deliver(f); /* the cancellations reach their callbacks */
    pthread_mutex_lock(&f->lock);
    for (tfab_ep_t **pp = &f->eps; *pp; pp = &(*pp)->next_ep) {
        if (*pp == ep) {
            *pp = ep->next_ep;
            break;
        }
    }
    close_links(ep);
    pthread_mutex_unlock(&f->lock);
    tfab_core_ep_fini(ep);
    free(ep);
}

void tfab_fabric_destroy(tfab_fabric_t *f)
{
    if (f == NULL)
        return;
    fabric_stop_threads(f);
    while (f->eps)
        tfab_ep_close(f->eps);
    fabric_close_backends(f);
    pthread_cond_destroy(&f->accept_cond);
    pthread_mutex_destroy(&f->deliver_lock);
    pthread_mutex_destroy(&f->lock);
    free(f->token);
    free(f);
}
