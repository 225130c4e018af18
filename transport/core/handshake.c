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
    const char *backends[FAB_MAX_TLS];
    char        links[EP_MAX_LINKS][112];
    char       *link_ptrs[EP_MAX_LINKS];
    for (unsigned k = 0; k < f->n_tls; k++)
        backends[k] = f->tls[k]->name;
    for (unsigned k = 0; k < f->n_links; k++) {
        snprintf(links[k], sizeof(links[k]), "%s %s", f->tls[f->links[k].tl]->name,
                 f->links[k].address[0] ? f->links[k].address : "-");
        link_ptrs[k] = links[k];
    }
    h.n_backends           = f->n_tls;
    h.backends             = (char **)backends;
    h.n_links              = f->n_links;
    h.links                = link_ptrs;
    h.nonce                = (ProtobufCBinaryData){CTL_NONCE_LEN, (uint8_t *)nonce};
    if (proof_or_null)
        h.proof = (ProtobufCBinaryData){32, (uint8_t *)proof_or_null};
    h.node     = node;
    c.msg_case = TFAB__CONTROL__MSG_HELLO;
    c.hello    = &h;
    return tfab_ctl_send(fd, &c, deadline);
}

/* Our backend named name (its index), or -1. */
static int our_tl(const tfab_fabric_t *f, const char *name, size_t len)
{
    for (unsigned k = 0; k < f->n_tls; k++)
        if (strlen(f->tls[k]->name) == len && strncmp(f->tls[k]->name, name, len) == 0)
            return (int)k;
    return -1;
}

/* The first of our backends the peer also offers, or NULL. */
static const char *common_link(const tfab_fabric_t *f, const Tfab__Hello *h)
{
    for (size_t k = 0; k < h->n_backends; k++)
        if (our_tl(f, h->backends[k], strlen(h->backends[k])) >= 0)
            return h->backends[k];
    return NULL;
}

/* Ranked links, client opening a session: of the server's links, those we can open, in the
 * server's order (both ends read it from the same topology file). */
static unsigned choose_links(const tfab_fabric_t *f, const Tfab__Hello *h, hs_result_t *res)
{
    res->n_set = res->n_names = 0;
    for (size_t k = 0; k < h->n_links && k < EP_MAX_LINKS; k++) {
        snprintf(res->names[k], sizeof(res->names[k]), "%s", h->links[k]);
        res->n_names++;
        const char *sp = strchr(h->links[k], ' ');
        if (our_tl(f, h->links[k], (size_t)(sp - h->links[k])) >= 0)
            res->set[res->n_set++] = (unsigned)k;
    }
    return res->n_set;
}

tfab_status_t tfab_handshake_client(tfab_fabric_t *f, int fd, const char *peer,
                                    const uint8_t *session, unsigned join, hs_result_t *res)
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
    if ((h->n_links > 0) != (f->n_links > 0)) {
        TFAB_ERROR(MOD, "%s %s ranked links and we %s: configure links on both sides or on "
                   "neither", peer, h->n_links ? "offers" : "does not offer",
                   f->n_links ? "do" : "do not");
        send_error(fd, TFAB__ERROR__CODE__NO_COMMON_LINK, "ranked links on one side only",
                   deadline);
        st = TFAB_ERR_UNSUPPORTED;
        goto out;
    }
    const char *link = common_link(f, h);
    if (f->n_links > 0 && session == NULL && choose_links(f, h, res) == 0)
        link = NULL;
    if (f->n_links > 0 && session != NULL) {
        if (join == 0 || join > h->n_links) {
            st = TFAB_ERR_PROTO;
            goto out;
        }
        const char *l = h->links[join - 1];
        link          = our_tl(f, l, (size_t)(strchr(l, ' ') - l)) >= 0 ? l : NULL;
    }
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
    uint32_t set[EP_MAX_LINKS];
    if (f->n_links > 0 && session == NULL) {
        for (unsigned k = 0; k < res->n_set; k++)
            set[k] = res->set[k];
        a.n_link_set = res->n_set;
        a.link_set   = set;
    } else if (session != NULL) {
        a.session = (ProtobufCBinaryData){CTL_SESSION_LEN, (uint8_t *)session};
        a.join    = join;
    }
    c.msg_case = TFAB__CONTROL__MSG_AUTH;
    c.auth     = &a;
    if ((st = tfab_ctl_send(fd, &c, deadline)) != TFAB_OK)
        goto out;
    tfab__control__free_unpacked(m, NULL);
    m = NULL;
    if ((st = expect(fd, deadline, TFAB__CONTROL__MSG_WELCOME, peer, &m)) != TFAB_OK)
        return st;
    if (m->welcome->credits != f->credits || m->welcome->eager_max != f->eager_max ||
        m->welcome->heartbeat_ns != f->heartbeat_ns) {
        TFAB_ERROR(MOD, "%s runs with credits %u, eager_max %llu and heartbeat %llu ns, we with "
                   "%u, %zu and %llu: configure both alike", peer, m->welcome->credits,
                   (unsigned long long)m->welcome->eager_max,
                   (unsigned long long)m->welcome->heartbeat_ns, f->credits, f->eager_max,
                   (unsigned long long)f->heartbeat_ns);
        st = TFAB_ERR_PROTO;
        goto out;
    }
    if (f->n_links > 0 && session == NULL) {
        if (m->welcome->session.len != CTL_SESSION_LEN) {
            TFAB_ERROR(MOD, "%s opened no session for our ranked links", peer);
            st = TFAB_ERR_PROTO;
            goto out;
        }
        memcpy(res->session, m->welcome->session.data, CTL_SESSION_LEN);
        res->has_session = 1;
    }
    TFAB_INFO(MOD, "connected to %s over %s", peer, m->welcome->link);
out:
    if (m)
        tfab__control__free_unpacked(m, NULL);
    return st;
}

tfab_status_t tfab_handshake_server(tfab_fabric_t *f, int fd, const char *peer,
                                    hs_result_t *res)
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
    int peer_ranked = h->n_links > 0;
    tfab__control__free_unpacked(m, NULL);
    if (peer_ranked != (f->n_links > 0)) {
        TFAB_ERROR(MOD, "%s %s ranked links and we %s: configure links on both sides or on "
                   "neither", peer, peer_ranked ? "offers" : "does not offer",
                   f->n_links ? "do" : "do not");
        send_error(fd, TFAB__ERROR__CODE__NO_COMMON_LINK, "ranked links on one side only",
                   deadline);
        return TFAB_ERR_UNSUPPORTED;
    }
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
    const char *sp    = strchr(m->auth->link, ' ');
    int         tl    = our_tl(f, m->auth->link, sp ? (size_t)(sp - m->auth->link)
                                                    : strlen(m->auth->link));
    int         known = tl >= 0;
    const char *bad   = known ? NULL : "chosen link not offered";
    memset(res, 0, sizeof(*res));
    if (!bad && f->n_links > 0) {
        Tfab__Auth *a = m->auth;
        if (a->join) {
            memcpy(res->session, a->session.data, CTL_SESSION_LEN);
            res->has_session = 1;
            res->join        = a->join;
            if (a->join > f->n_links)
                bad = "join names a link we do not offer";
            else if (!tfab_fabric_session_known(f, res->session))
                bad = "join names no session of ours";
        } else if (a->n_link_set == 0) {
            bad = "no link chosen";
        } else {
            res->n_set = (unsigned)a->n_link_set;
            for (size_t k = 0; k < a->n_link_set; k++) {
                res->set[k] = a->link_set[k];
                for (size_t j = 0; j < k; j++)
                    if (a->link_set[j] == a->link_set[k])
                        bad = "link_set names a link twice";
                if (a->link_set[k] >= f->n_links)
                    bad = "link_set names a link we do not offer";
            }
            if (!bad && getrandom(res->session, CTL_SESSION_LEN, 0) != (ssize_t)CTL_SESSION_LEN)
                bad = "no randomness for a session";
            res->has_session = 1;
        }
    }
    tfab__control__free_unpacked(m, NULL);
    if (bad) {
        TFAB_ERROR(MOD, "%s: %s", peer, bad);
        send_error(fd, TFAB__ERROR__CODE__NO_COMMON_LINK, bad, deadline);
        return TFAB_ERR_PROTO;
    }
    Tfab__Control c = TFAB__CONTROL__INIT;
    Tfab__Welcome w = TFAB__WELCOME__INIT;
    w.link          = (char *)f->tls[tl]->name;
    w.credits       = f->credits;
    w.eager_max     = f->eager_max;
    w.heartbeat_ns  = f->heartbeat_ns;
    if (f->n_links > 0 && !res->join)
        w.session = (ProtobufCBinaryData){CTL_SESSION_LEN, res->session};
    c.msg_case      = TFAB__CONTROL__MSG_WELCOME;
    c.welcome       = &w;
    if ((st = tfab_ctl_send(fd, &c, deadline)) != TFAB_OK)
        return st;
    TFAB_INFO(MOD, "accepted %s over %s", peer, w.link);
    return TFAB_OK;
}
