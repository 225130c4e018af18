/* fabric.c - fabric and endpoint lifecycle: backends, the listening socket and its acceptor
 * (handshakes run there, off the data path), outgoing connects, the progress thread, and
 * orderly close (pending transfers fail with TFAB_ERR_CANCELED, never vanish). */
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
    /* unlocked: a backend may block here (verbs connects a queue pair) */
    st = f->tl->ep_open(f->tl_domain, ep, fd, is_server, tfab_core_now_ns() + f->timeout_ns,
                        &ep->tl_ep);
    if (st != TFAB_OK)
        goto err_fini;
    pthread_mutex_lock(&f->lock);
    ep->next_ep = f->eps;
    f->eps      = ep;
    pthread_mutex_unlock(&f->lock);
    *ep_p = ep;
    return TFAB_OK;

err_fini:
    tfab_core_ep_fini(ep);
err_free:
    free(ep);
    return st;
}

static void *accept_main(void *arg)
{
    tfab_fabric_t *f = arg;
    while (!f->stop) {
        struct pollfd pfd = {.fd = f->listen_fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        struct sockaddr_storage ss;
        socklen_t               sl = sizeof(ss);
        int                     fd = accept4(f->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        char peer[96];
        addr_str((struct sockaddr *)&ss, peer, sizeof(peer));
        tfab_ep_t *ep;
        if (tfab_handshake_server(f, fd, peer) != TFAB_OK || ep_create(f, fd, peer, 1, &ep) != TFAB_OK) {
            close(fd);
            continue;
        }
        pthread_mutex_lock(&f->lock);
        if (f->accept_tail)
            f->accept_tail->next_accept = ep;
        else
            f->accept_head = ep;
        f->accept_tail = ep;
        pthread_cond_broadcast(&f->accept_cond);
        pthread_mutex_unlock(&f->lock);
    }
    return NULL;
}

unsigned tfab_fabric_progress(tfab_fabric_t *f, uint64_t timeout_ns)
{
    f->tl->progress(f->tl_domain, (int)(timeout_ns / 1000000));
    tfab_core_check_timeouts(f);
    return tfab_core_deliver(f);
}

static void *progress_main(void *arg)
{
    tfab_fabric_t *f = arg;
    while (!f->stop)
        tfab_fabric_progress(f, 50 * 1000000ull);
    return NULL;
}

static tfab_status_t start_listening(tfab_fabric_t *f, const char *listen_addr)
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
    addr_str((struct sockaddr *)&ss, f->address, sizeof(f->address));
    f->listen_fd = fd;
    return TFAB_OK;
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
    f->pool       = params->pool;
    f->eager_max  = (m & TFAB_FABRIC_PARAM_EAGER_MAX) ? params->eager_max : 8192;
    f->credits    = (m & TFAB_FABRIC_PARAM_CREDITS) ? params->credits : 64;
    f->timeout_ns = (m & TFAB_FABRIC_PARAM_TIMEOUT) ? params->timeout_ns : 10000000000ull;
    f->mode       = (m & TFAB_FABRIC_PARAM_PROGRESS) ? params->progress : TFAB_PROGRESS_THREAD;
    f->tl         = &tfab_tl_tcp_ops;
    f->listen_fd  = -1;
    tfab_status_t st = TFAB_ERR_INVALID;
    if ((m & TFAB_FABRIC_PARAM_BACKEND) && params->backend && strcmp(params->backend, "tcp") != 0) {
#if TFAB_HAVE_VERBS
        if (strcmp(params->backend, "verbs") == 0)
            f->tl = &tfab_tl_verbs_ops;
#endif
        if (f->tl == &tfab_tl_tcp_ops) {
            TFAB_ERROR(MOD, "backend '%s' is not available in this build (tcp%s)", params->backend,
                       TFAB_HAVE_VERBS ? ", verbs" : "");
            goto err_free;
        }
    }
    if (f->credits == 0 || f->credits > EP_MAX_CREDITS || f->eager_max == 0 ||
        f->eager_max > (1u << 20) || f->timeout_ns == 0) {
        TFAB_ERROR(MOD, "credits must be 1..%u, eager_max 1..1 MiB, timeout > 0", EP_MAX_CREDITS);
        goto err_free;
    }
    if ((m & TFAB_FABRIC_PARAM_TOKEN) && params->token && (f->token = strdup(params->token)) == NULL) {
        st = TFAB_ERR_NOMEM;
        goto err_free;
    }
    if (pthread_mutex_init(&f->lock, NULL) != 0 || pthread_cond_init(&f->accept_cond, NULL) != 0) {
        st = TFAB_ERR_NOMEM;
        goto err_free_token;
    }
    /* listen first (a backend may listen on the same address), accept once the backend is up */
    if ((m & TFAB_FABRIC_PARAM_LISTEN) && params->listen &&
        (st = start_listening(f, params->listen)) != TFAB_OK)
        goto err_destroy_lock;
    if ((st = f->tl->domain_open(f, &f->tl_domain)) != TFAB_OK)
        goto err_close_listen;
    if (f->listen_fd >= 0) {
        if (pthread_create(&f->accept_thread, NULL, accept_main, f) != 0) {
            st = TFAB_ERR_NOMEM;
            goto err_close_domain;
        }
        f->have_accept_thread = 1;
    }
    if (f->mode == TFAB_PROGRESS_THREAD) {
        if (pthread_create(&f->progress_thread, NULL, progress_main, f) != 0) {
            st = TFAB_ERR_NOMEM;
            goto err_stop_accept;
        }
        f->have_progress_thread = 1;
    }
    TFAB_INFO(MOD, "fabric up: backend %s%s%s", f->tl->name, f->address[0] ? ", listening on " : "",
              f->address);
    *fabric_p = f;
    return TFAB_OK;

err_stop_accept:
    if (f->have_accept_thread) {
        f->stop = 1;
        pthread_join(f->accept_thread, NULL);
    }
err_close_domain:
    f->tl->domain_close(f->tl_domain);
err_close_listen:
    if (f->listen_fd >= 0)
        close(f->listen_fd);
err_destroy_lock:
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->accept_cond);
err_free_token:
    free(f->token);
err_free:
    free(f);
    return st;
}

const char *tfab_fabric_address(const tfab_fabric_t *f) { return f->address; }

tfab_status_t tfab_ep_connect(tfab_fabric_t *f, const char *addr, tfab_ep_t **ep_p)
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
    if ((st = tfab_handshake_client(f, fd, addr)) != TFAB_OK ||
        (st = ep_create(f, fd, addr, 0, ep_p)) != TFAB_OK) {
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
    tfab_core_ep_failed(ep, TFAB_ERR_CANCELED, "closed");
    pthread_mutex_unlock(&f->lock);
    tfab_core_deliver(f); /* the cancellations reach their callbacks */
    pthread_mutex_lock(&f->lock);
    for (tfab_ep_t **pp = &f->eps; *pp; pp = &(*pp)->next_ep) {
        if (*pp == ep) {
            *pp = ep->next_ep;
            break;
        }
    }
    f->tl->ep_close(ep->tl_ep); /* the backend defers freeing until no event can name it */
    pthread_mutex_unlock(&f->lock);
    tfab_core_ep_fini(ep);
    free(ep);
}

void tfab_fabric_destroy(tfab_fabric_t *f)
{
    if (f == NULL)
        return;
    f->stop = 1;
    if (f->have_accept_thread)
        pthread_join(f->accept_thread, NULL);
    if (f->have_progress_thread) {
        f->tl->wake(f->tl_domain);
        pthread_join(f->progress_thread, NULL);
    }
    while (f->eps)
        tfab_ep_close(f->eps);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    f->tl->domain_close(f->tl_domain);
    pthread_cond_destroy(&f->accept_cond);
    pthread_mutex_destroy(&f->lock);
    free(f->token);
    free(f);
}
