/* handshake.c - negotiate, then commit: peers exchange versioned Hellos, the server proves it
 * knows the cluster token, then the client does (challenge-response, HMAC-SHA256 over both
 * nonces), they agree on a link from the intersection of their backends, and only then does
 * the data path start. Every step has a deadline; every refusal names its reason. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <tfab/log.h>
#include "../base/sha256.h"
#include "control.h"
#include "core.h"

#define MOD "handshake"

/* The links a fabric offers: its one backend (several, ranked, come with failover). */
#define N_OUR_BACKENDS 1

static void proof(const tfab_fabric_t *f, const char *label, const uint8_t *n1, const uint8_t *n2,
                  uint8_t out[32])
{
    const void *parts[] = {label, n1, n2};
    size_t      lens[]  = {strlen(label), CTL_NONCE_LEN, CTL_NONCE_LEN};
    const char *tok     = f->token ? f->token : "";
    tfab_hmac_sha256(tok, strlen(tok), parts, lens, 3, out);
}

/* Constant-time comparison: a mismatch position must not leak through timing. */
static int same(const uint8_t *a, const uint8_t *b, size_t n)
{
    uint8_t d = 0;
    for (size_t i = 0; i < n; i++)
        d |= a[i] ^ b[i];
    return d == 0;
}

static tfab_status_t make_nonce(uint8_t nonce[CTL_NONCE_LEN])
{
    if (getrandom(nonce, CTL_NONCE_LEN, 0) != (ssize_t)CTL_NONCE_LEN) {
        TFAB_ERROR(MOD, "getrandom failed");
        return TFAB_ERR_IO;
    }
    return TFAB_OK;
}

static void send_error(int fd, Tfab__Error__Code code, const char *text, uint64_t deadline)
{
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Error   e = TFAB__ERROR__INIT;
    e.code          = code;
    e.message       = (char *)text;
    c.msg_case      = TFAB__CONTROL__MSG_ERROR;
    c.error         = &e;
    tfab_ctl_send(fd, &c, deadline);
}

/* Receive a control message of kind want; an Error from the peer, another kind, or a malformed
 * frame fail with a message naming the peer. */
static tfab_status_t expect(int fd, uint64_t deadline, Tfab__Control__MsgCase want, const char *peer,
                            Tfab__Control **msg_p)
{
    char          err[256];
    Tfab__Control *m;
    tfab_status_t st = tfab_ctl_recv(fd, deadline, &m, err, sizeof(err));
    if (st != TFAB_OK) {
        TFAB_ERROR(MOD, "handshake with %s: %s", peer, err);
        return st;
    }
    if (m->msg_case == TFAB__CONTROL__MSG_ERROR) {
        TFAB_ERROR(MOD, "handshake with %s refused by the peer: %s", peer, m->error->message);
        st = m->error->code == TFAB__ERROR__CODE__AUTH ? TFAB_ERR_AUTH : TFAB_ERR_PROTO;
        tfab__control__free_unpacked(m, NULL);
        return st;
    }
    if (m->msg_case != want) {
        TFAB_ERROR(MOD, "handshake with %s: unexpected control message (kind %d, wanted %d)",
                   peer, (int)m->msg_case, (int)want);
        tfab__control__free_unpacked(m, NULL);
        return TFAB_ERR_PROTO;
    }
    *msg_p = m;
    return TFAB_OK;
}

static tfab_status_t send_hello(tfab_fabric_t *f, int fd, const uint8_t *nonce,
                                const uint8_t *proof_or_null, uint64_t deadline)
{
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Hello   h = TFAB__HELLO__INIT;
    char          node[64];
    gethostname(node, sizeof(node));
    node[sizeof(node) - 1] = '\0';
    h.major                = CTL_PROTO_MAJOR;
    h.minor                = CTL_PROTO_MINOR;
    const char *backends[N_OUR_BACKENDS] = {f->tl->name};
    h.n_backends           = N_OUR_BACKENDS;
    h.backends             = (char **)backends;
    h.nonce                = (ProtobufCBinaryData){CTL_NONCE_LEN, (uint8_t *)nonce};
    if (proof_or_null)
        h.proof = (ProtobufCBinaryData){32, (uint8_t *)proof_or_null};
    h.node     = node;
    c.msg_case = TFAB__CONTROL__MSG_HELLO;
    c.hello    = &h;
    return tfab_ctl_send(fd, &c, deadline);
}

/* The first of our backends the peer also offers, or NULL. */
static const char *common_link(const tfab_fabric_t *f, const Tfab__Hello *h)
{
    for (size_t k = 0; k < h->n_backends; k++)
        if (strcmp(f->tl->name, h->backends[k]) == 0)
            return f->tl->name;
    return NULL;
}

tfab_status_t tfab_handshake_client(tfab_fabric_t *f, int fd, const char *peer)
{
    uint64_t      deadline = tfab_core_now_ns() + f->timeout_ns;
    uint8_t       nc[CTL_NONCE_LEN], want[32];
    Tfab__Control *m;
    tfab_status_t st;
    if ((st = make_nonce(nc)) != TFAB_OK || (st = send_hello(f, fd, nc, NULL, deadline)) != TFAB_OK)
        return st;
    if ((st = expect(fd, deadline, TFAB__CONTROL__MSG_HELLO, peer, &m)) != TFAB_OK)
        return st;
    Tfab__Hello *h = m->hello;
    if (h->major != CTL_PROTO_MAJOR) {
        TFAB_ERROR(MOD, "%s speaks protocol %u.%u, we speak %u.%u", peer, h->major, h->minor,
                   CTL_PROTO_MAJOR, CTL_PROTO_MINOR);
        st = TFAB_ERR_PROTO;
        goto out;
    }
    proof(f, "tfab-server", nc, h->nonce.data, want);
    if (h->proof.len != 32 || !same(want, h->proof.data, 32)) {
        TFAB_ERROR(MOD, "%s does not know our cluster token: refusing before revealing anything",
                   peer);
        send_error(fd, TFAB__ERROR__CODE__AUTH, "server proof does not match the cluster token",
                   deadline);
        st = TFAB_ERR_AUTH;
        goto out;
    }
    const char *link = common_link(f, h);
    if (link == NULL) {
        TFAB_ERROR(MOD, "%s offers %s%s, we offer %s: no common link", peer, h->backends[0],
                   h->n_backends > 1 ? ", ..." : "", f->tl->name);
        send_error(fd, TFAB__ERROR__CODE__NO_COMMON_LINK, "no common link", deadline);
        st = TFAB_ERR_UNSUPPORTED;
        goto out;
    }
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Auth    a = TFAB__AUTH__INIT;
    uint8_t       mine[32];
    proof(f, "tfab-client", h->nonce.data, nc, mine);
    a.proof    = (ProtobufCBinaryData){32, mine};
    a.link     = (char *)link;
    c.msg_case = TFAB__CONTROL__MSG_AUTH;
    c.auth     = &a;
    if ((st = tfab_ctl_send(fd, &c, deadline)) != TFAB_OK)
        goto out;
    tfab__control__free_unpacked(m, NULL);
    m = NULL;
    if ((st = expect(fd, deadline, TFAB__CONTROL__MSG_WELCOME, peer, &m)) != TFAB_OK)
        return st;
    if (m->welcome->credits != f->credits || m->welcome->eager_max != f->eager_max) {
        TFAB_ERROR(MOD, "%s runs with credits %u and eager_max %llu, we with %u and %zu: "
                   "configure both alike", peer, m->welcome->credits,
                   (unsigned long long)m->welcome->eager_max, f->credits, f->eager_max);
        st = TFAB_ERR_PROTO;
        goto out;
    }
    TFAB_INFO(MOD, "connected to %s over %s", peer, m->welcome->link);
out:
    if (m)
        tfab__control__free_unpacked(m, NULL);
    return st;
}

tfab_status_t tfab_handshake_server(tfab_fabric_t *f, int fd, const char *peer)
{
    uint64_t      deadline = tfab_core_now_ns() + f->timeout_ns;
    uint8_t       ns[CTL_NONCE_LEN], nc[CTL_NONCE_LEN], p[32], want[32];
    Tfab__Control *m;
    tfab_status_t st;
    if ((st = expect(fd, deadline, TFAB__CONTROL__MSG_HELLO, peer, &m)) != TFAB_OK)
        return st;
    Tfab__Hello *h = m->hello;
    if (h->major != CTL_PROTO_MAJOR) {
        char text[96];
        snprintf(text, sizeof(text), "protocol %u.%u is not %u.x", h->major, h->minor,
                 CTL_PROTO_MAJOR);
        TFAB_ERROR(MOD, "%s: %s", peer, text);
        send_error(fd, TFAB__ERROR__CODE__VERSION, text, deadline);
        tfab__control__free_unpacked(m, NULL);
        return TFAB_ERR_PROTO;
    }
    memcpy(nc, h->nonce.data, CTL_NONCE_LEN);
    tfab__control__free_unpacked(m, NULL);
    if ((st = make_nonce(ns)) != TFAB_OK)
        return st;
    proof(f, "tfab-server", nc, ns, p);
    if ((st = send_hello(f, fd, ns, p, deadline)) != TFAB_OK)
        return st;
    if ((st = expect(fd, deadline, TFAB__CONTROL__MSG_AUTH, peer, &m)) != TFAB_OK)
        return st;
    proof(f, "tfab-client", ns, nc, want);
    if (!same(want, m->auth->proof.data, 32)) {
        TFAB_ERROR(MOD, "%s: wrong cluster token: refused", peer);
        send_error(fd, TFAB__ERROR__CODE__AUTH, "client proof does not match the cluster token",
                   deadline);
        tfab__control__free_unpacked(m, NULL);
        return TFAB_ERR_AUTH;
    }
    int known = strcmp(f->tl->name, m->auth->link) == 0;
    tfab__control__free_unpacked(m, NULL);
    if (!known) {
        send_error(fd, TFAB__ERROR__CODE__NO_COMMON_LINK, "chosen link not offered", deadline);
        return TFAB_ERR_PROTO;
    }
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Welcome w = TFAB__WELCOME__INIT;
    w.link          = (char *)f->tl->name;
    w.credits       = f->credits;
    w.eager_max     = f->eager_max;
    c.msg_case      = TFAB__CONTROL__MSG_WELCOME;
    c.welcome       = &w;
    if ((st = tfab_ctl_send(fd, &c, deadline)) != TFAB_OK)
        return st;
    TFAB_INFO(MOD, "accepted %s over %s", peer, w.link);
    return TFAB_OK;
}
