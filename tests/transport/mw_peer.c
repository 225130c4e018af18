/* mw_peer.c - one side of the memory-window negative test over verbs: a peer that writes where
 * it was not granted. The client is the attacker: it wraps the verbs backend's ops (test-only,
 * through the core's internal header) to forge the RDMA WRITE of a rendezvous:
 *   outside: the write of a granted 64 KiB transfer is moved 32 KiB past the grant's start, so
 *            half of it falls outside the memory window;
 *   replay:  after a legitimate 64 KiB transfer completed (its window invalidated), the client
 *            writes again with the address and key it was granted then.
 * Each must fail on the writer with a remote access error, and the server checks that every
 * byte outside the grant (64 KiB of canary on each side) is unchanged, and that the forged
 * payload landed nowhere.
 *
 *   mw_peer --listen IP:PORT | --connect IP:PORT  [--wait S]
 * Exit 0 when every expectation held. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/tfab.h>
#include "../../transport/core/core.h"
#include "../common/pattern.h"

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "mw_peer: " __VA_ARGS__);                                            \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

#define GRANT  (64u << 10)
#define CANARY 0xa5
#define FORGED 0xee

typedef struct {
    atomic_int    done;
    tfab_status_t status;
    size_t        len;
} xfer_t;

static void on_done(tfab_status_t st, size_t len, void *arg)
{
    xfer_t *x = arg;
    x->status = st;
    x->len    = len;
    atomic_store(&x->done, 1);
}

static int wait_s = 60;

static tfab_status_t wait_one(xfer_t *x)
{
    for (int i = 0; i < wait_s * 1000 && !atomic_load(&x->done); i++)
        usleep(1000);
    if (!atomic_load(&x->done))
        FAIL("timed out after %d s", wait_s);
    return x->status;
}

/* ---- the attacker's interposed ops ------------------------------------------------------- */

static const tfab_tl_ops_t *real_ops;
static tfab_tl_ops_t        evil_ops;
static int                  shift_data; /* outside: move DATA writes by this many bytes */
static wire_hdr_t           last_data;  /* replay: the last DATA header (address, key) */

static tfab_status_t evil_post(void *tl_ep, const wire_hdr_t *hdr, const void *payload, size_t len,
                               void *ctx)
{
    wire_hdr_t h = *hdr;
    if (h.op == WIRE_DATA) {
        last_data = h;
        h.aux += (uint64_t)shift_data;
    }
    return real_ops->ep_post(tl_ep, &h, payload, len, ctx);
}

static void wrap_ops(tfab_fabric_t *f, tfab_ep_t *ep)
{
    pthread_mutex_lock(&f->lock);
    real_ops          = ep->tl;
    evil_ops          = *real_ops;
    evil_ops.ep_post  = evil_post;
    ep->tl            = &evil_ops;
    ep->links[0].tl   = &evil_ops;
    pthread_mutex_unlock(&f->lock);
}

/* ---- the two sides ------------------------------------------------------------------------ */

static tfab_pool_t   *pool;
static tfab_fabric_t *fab;

static tfab_ep_t *open_ep(const char *listen, const char *connect_to)
{
    tfab_ep_t    *ep;
    tfab_status_t st;
    if (listen) {
        st = tfab_fabric_accept(fab, (uint64_t)wait_s * 1000000000ull, &ep);
    } else {
        for (int i = 0; (st = tfab_ep_connect(fab, connect_to, &ep)) == TFAB_ERR_CONN && i < wait_s * 5; i++)
            usleep(200000);
    }
    if (st != TFAB_OK)
        FAIL("no peer: %s", tfab_status_str(st));
    return ep;
}

/* Server: a receive of GRANT bytes in the middle of 3 x GRANT of canary. */
/* Outside-phase report: how many bytes past the grant the forged write changed. */
static size_t changed_outside(const uint8_t *r)
{
    size_t n = 0;
    for (size_t i = 0; i < 3 * GRANT; i++)
        n += (i < GRANT || i >= 2 * GRANT) && r[i] != CANARY;
    return n;
}

static void check_region(const char *phase, const uint8_t *r, int legit_inside)
{
    size_t forged = 0, changed = 0;
    for (size_t i = 0; i < 3 * GRANT; i++) {
        int inside = i >= GRANT && i < 2 * GRANT;
        forged += r[i] == FORGED && !(inside && legit_inside); /* inside: pattern checked */
        if (!inside && r[i] != CANARY)
            changed++;
    }
    if (changed)
        FAIL("%s: %zu bytes outside the grant changed", phase, changed);
    if (legit_inside && pattern_check(r + GRANT, GRANT, 0x4242, 0) != GRANT)
        FAIL("%s: the legitimate transfer did not arrive intact", phase);
    if (forged)
        FAIL("%s: %zu bytes of the forged payload landed", phase, forged);
    printf("server: %s: memory outside the grant unchanged (%u bytes checked), no forged byte "
           "anywhere\n", phase, 2 * GRANT);
}

static void server(const char *listen)
{
    uint8_t *r;
    if (tfab_pool_alloc(pool, 3 * GRANT, (void **)&r) != TFAB_OK)
        FAIL("pool");
    for (int phase = 0; phase < 2; phase++) {
        tfab_ep_t *ep = open_ep(listen, NULL);
        memset(r, CANARY, 3 * GRANT);
        xfer_t x = {0}, y = {0};
        if (phase == 0) { /* outside */
            tfab_ep_recv(ep, r + GRANT, GRANT, 1, on_done, &x);
            tfab_status_t st = wait_one(&x);
            printf("server: outside: the receive ended with %s\n", tfab_status_str(st));
            if (st == TFAB_OK) /* the device let it through: say how far it reached */
                printf("server: outside: DEVICE DOES NOT BOUND WINDOWS: %zu bytes outside the "
                       "grant were written\n", changed_outside(r));
            else
                check_region("outside", r, 0);
        } else { /* replay */
            tfab_ep_recv(ep, r + GRANT, GRANT, 1, on_done, &x);
            if (wait_one(&x) != TFAB_OK)
                FAIL("replay: the legitimate transfer failed: %s", tfab_status_str(x.status));
            check_region("replay (legitimate transfer)", r, 1);
            /* the grant is revoked now; tell the attacker to try again */
            uint8_t *go;
            tfab_pool_alloc(pool, 8, (void **)&go);
            tfab_ep_send(ep, go, 8, 2, on_done, &y);
            wait_one(&y);
            xfer_t z = {0};
            tfab_ep_recv(ep, go, 8, 3, on_done, &z); /* ends when the attacker's link breaks */
            tfab_status_t st = wait_one(&z);
            printf("server: replay: the endpoint ended with %s\n", tfab_status_str(st));
            check_region("replay", r, 1);
        }
        tfab_ep_close(ep);
    }
}

static void client(const char *connect_to)
{
    uint8_t *s;
    if (tfab_pool_alloc(pool, GRANT + 16, (void **)&s) != TFAB_OK)
        FAIL("pool");
    /* outside: the granted write moved half past the window */
    tfab_ep_t *ep = open_ep(NULL, connect_to);
    wrap_ops(fab, ep);
    memset(s, FORGED, GRANT);
    shift_data = GRANT / 2;
    xfer_t x = {0};
    tfab_ep_send(ep, s, GRANT, 1, on_done, &x);
    tfab_status_t st = wait_one(&x);
    printf("client: outside: write %u bytes at grant + %u: %s\n", GRANT, GRANT / 2,
           tfab_status_str(st));
    tfab_ep_close(ep);
    sleep(1);

    /* replay: a legitimate transfer, then the same write after the grant was revoked */
    ep = open_ep(NULL, connect_to);
    wrap_ops(fab, ep);
    shift_data = 0;
    pattern_fill(s, GRANT, 0x4242, 0);
    x = (xfer_t){0};
    tfab_ep_send(ep, s, GRANT, 1, on_done, &x);
    if (wait_one(&x) != TFAB_OK)
        FAIL("replay: the legitimate transfer failed: %s", tfab_status_str(x.status));
    xfer_t go = {0};
    tfab_ep_recv(ep, s + GRANT, 8, 2, on_done, &go);
    wait_one(&go);
    memset(s, FORGED, GRANT);
    wire_hdr_t h = last_data;
    pthread_mutex_lock(&fab->lock);
    st = real_ops->ep_post(ep->links[0].tl_ep, &h, s, GRANT, NULL);
    pthread_mutex_unlock(&fab->lock);
    if (st != TFAB_OK)
        FAIL("replay: posting the forged write failed locally: %s", tfab_status_str(st));
    x = (xfer_t){0};
    tfab_ep_send(ep, s, 8, 3, on_done, &x); /* behind the forged write on the queue pair */
    st = wait_one(&x);
    printf("client: replay: write %u bytes with the revoked key %#" PRIx64 ": %s\n", GRANT,
           h.tag, tfab_status_str(st));
    if (st == TFAB_OK)
        FAIL("replay: the endpoint survived a write with a revoked key");
    tfab_ep_close(ep);
}

int main(int argc, char **argv)
{
    const char *listen = NULL, *connect_to = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen = argv[++i];
        else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc)
            connect_to = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0 && i + 1 < argc)
            wait_s = atoi(argv[++i]);
        else
            FAIL("usage: mw_peer --listen IP:PORT | --connect IP:PORT [--wait S]");
    }
    if ((listen == NULL) == (connect_to == NULL))
        FAIL("usage: mw_peer --listen IP:PORT | --connect IP:PORT [--wait S]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    tfab_pool_params_t pp = {.field_mask = TFAB_POOL_PARAM_SIZE, .size = 64u << 20};
    if (tfab_pool_create(&pp, &pool) != TFAB_OK)
        FAIL("pool");
    tfab_fabric_params_t fp = {
        .field_mask = TFAB_FABRIC_PARAM_POOL | TFAB_FABRIC_PARAM_TOKEN | TFAB_FABRIC_PARAM_BACKEND |
                      TFAB_FABRIC_PARAM_TIMEOUT | TFAB_FABRIC_PARAM_HEARTBEAT |
                      (listen ? TFAB_FABRIC_PARAM_LISTEN : 0),
        .pool = pool, .token = "mw", .backend = "verbs", .listen = listen,
        /* heartbeats: the server learns that the attacker's queue pair broke even when the
         * disconnect does not reach it */
        .timeout_ns = 3000000000ull, .heartbeat_ns = 300000000ull};
    if (tfab_fabric_create(&fp, &fab) != TFAB_OK)
        FAIL("cannot create a verbs fabric");
    if (listen)
        server(listen);
    else
        client(connect_to);
    tfab_fabric_destroy(fab);
    tfab_pool_destroy(pool);
    printf("%s: OK\n", listen ? "server" : "client");
    return 0;
}
