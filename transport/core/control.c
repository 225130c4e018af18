/* control.c - control messages on the wire: a 4-byte little-endian length, then a protobuf-c
 * Control message; every field checked before use, since it comes from a peer. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include "control.h"
#include "core.h"

#define MAX_STR      256
#define MAX_BACKENDS 8

static int str_ok(const char *s) { return s != NULL && strnlen(s, MAX_STR + 1) <= MAX_STR; }

tfab_status_t tfab_ctl_decode(const uint8_t *buf, size_t len, Tfab__Control **msg_p, char *err,
                              size_t err_len)
{
    if (len > CTL_MAX_FRAME) {
        snprintf(err, err_len, "control frame of %zu bytes exceeds %u", len, CTL_MAX_FRAME);
        return TFAB_ERR_PROTO;
    }
    Tfab__Control *m = tfab__control__unpack(NULL, len, buf);
    if (m == NULL) {
        snprintf(err, err_len, "control frame of %zu bytes is not a valid protobuf Control", len);
        return TFAB_ERR_PROTO;
    }
    const char *bad = NULL;
    switch (m->msg_case) {
    case TFAB__CONTROL__MSG_HELLO: {
        Tfab__Hello *h = m->hello;
        if (h->nonce.len != CTL_NONCE_LEN)
            bad = "hello.nonce must be 32 bytes";
        else if (h->proof.len != 0 && h->proof.len != 32)
            bad = "hello.proof must be empty or 32 bytes";
        else if (h->n_backends == 0 || h->n_backends > MAX_BACKENDS)
            bad = "hello.backends must list 1 to 8 links";
        else if (!str_ok(h->node))
            bad = "hello.node too long";
        else if (h->n_links > CTL_MAX_LINKS)
            bad = "hello.links lists more than 8 links";
        for (size_t i = 0; !bad && i < h->n_backends; i++)
            if (!str_ok(h->backends[i]) || h->backends[i][0] == '\0')
                bad = "hello.backends has an empty or too long entry";
        for (size_t i = 0; !bad && i < h->n_links; i++)
            if (!str_ok(h->links[i]) || strchr(h->links[i], ' ') == NULL)
                bad = "hello.links has an entry that is not 'backend address'";
        break;
    }
    case TFAB__CONTROL__MSG_AUTH:
        if (m->auth->proof.len != 32)
            bad = "auth.proof must be 32 bytes";
        else if (!str_ok(m->auth->link) || m->auth->link[0] == '\0')
            bad = "auth.link missing or too long";
        else if (m->auth->n_link_set > CTL_MAX_LINKS)
            bad = "auth.link_set lists more than 8 links";
        else if (m->auth->session.len != 0 && m->auth->session.len != CTL_SESSION_LEN)
            bad = "auth.session must be empty or 16 bytes";
        else if (m->auth->join > CTL_MAX_LINKS || (m->auth->join != 0) != (m->auth->session.len != 0))
            bad = "auth.join must name a link (1..8) exactly when a session is given";
        for (size_t i = 0; !bad && i < m->auth->n_link_set; i++)
            if (m->auth->link_set[i] >= CTL_MAX_LINKS)
                bad = "auth.link_set names a link index out of range";
        break;
    case TFAB__CONTROL__MSG_WELCOME:
        if (!str_ok(m->welcome->link) || m->welcome->credits == 0 || m->welcome->eager_max == 0)
            bad = "welcome needs link, credits and eager_max";
        else if (m->welcome->session.len != 0 && m->welcome->session.len != CTL_SESSION_LEN)
            bad = "welcome.session must be empty or 16 bytes";
        break;
    case TFAB__CONTROL__MSG_READY:
        if (m->ready->n_links > CTL_MAX_LINKS)
            bad = "ready.links lists more than 8 links";
        for (size_t i = 0; !bad && i < m->ready->n_links; i++)
            if (m->ready->links[i] >= CTL_MAX_LINKS)
                bad = "ready.links names a link index out of range";
        break;
    case TFAB__CONTROL__MSG_ERROR:
        if (!str_ok(m->error->message))
            bad = "error.message too long";
        break;
    default:
        bad = "control message of unknown kind";
    }
    if (bad != NULL) {
        snprintf(err, err_len, "%s", bad);
        tfab__control__free_unpacked(m, NULL);
        return TFAB_ERR_PROTO;
    }
    *msg_p = m;
    return TFAB_OK;
}

static tfab_status_t io_full(int fd, void *buf, size_t len, int out, uint64_t deadline_ns)
{
    uint8_t *p = buf;
    while (len) {
        uint64_t now = tfab_core_now_ns();
        if (now >= deadline_ns)
            return TFAB_ERR_TIMEOUT;
        struct pollfd pfd = {.fd = fd, .events = out ? POLLOUT : POLLIN};
        int           n   = poll(&pfd, 1, (int)((deadline_ns - now) / 1000000) + 1);
        if (n < 0 && errno != EINTR)
            return tfab_status_from_errno(errno);
        if (n <= 0)
            continue;
        ssize_t r = out ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT)
                        : recv(fd, p, len, MSG_DONTWAIT);
        if (r == 0)
            return TFAB_ERR_CONN;
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return TFAB_ERR_CONN;
        }
        p += r;
        len -= (size_t)r;
    }
    return TFAB_OK;
}

tfab_status_t tfab_ctl_send(int fd, const Tfab__Control *msg, uint64_t deadline_ns)
{
    uint8_t buf[4 + CTL_MAX_FRAME];
    size_t  n = tfab__control__get_packed_size(msg);
    if (n > CTL_MAX_FRAME)
        return TFAB_ERR_INVALID;
    tfab__control__pack(msg, buf + 4);
    buf[0] = (uint8_t)n;
    buf[1] = (uint8_t)(n >> 8);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 24);
    return io_full(fd, buf, n + 4, 1, deadline_ns);
}

tfab_status_t tfab_ctl_recv(int fd, uint64_t deadline_ns, Tfab__Control **msg_p, char *err,
                            size_t err_len)
{
    uint8_t       hdr[4], buf[CTL_MAX_FRAME];
    tfab_status_t st = io_full(fd, hdr, 4, 0, deadline_ns);
    if (st != TFAB_OK) {
        snprintf(err, err_len, "%s", st == TFAB_ERR_TIMEOUT ? "timed out waiting for the peer"
                                                            : "connection closed by the peer");
        return st;
    }
    size_t len = hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
    if (len > CTL_MAX_FRAME) {
        snprintf(err, err_len, "control frame of %zu bytes exceeds %u (not a tfab peer?)", len,
                 CTL_MAX_FRAME);
        return TFAB_ERR_PROTO;
    }
    if ((st = io_full(fd, buf, len, 0, deadline_ns)) != TFAB_OK) {
        snprintf(err, err_len, "connection lost inside a control frame");
        return st;
    }
    return tfab_ctl_decode(buf, len, msg_p, err, err_len);
}
