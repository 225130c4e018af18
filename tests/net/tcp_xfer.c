/* tcp_xfer.c - moves N bytes of a seeded pattern over one TCP connection and verifies on the
 * receiver that every byte arrived intact and that both sides' checksums agree. Used by the
 * network-namespace tests and as the tfab side of the TCP perf smoke until the transport
 * lands.
 *
 *   tcp_xfer --server --bind IP [--port P] [--bytes SIZE] [--timeout S]
 *     (--timeout: seconds to wait for a connection, and with no progress once connected)
 *   tcp_xfer --client IP [--port P] [--bytes SIZE] [--chunk SIZE] [--timeout S] [--seed N]
 * Prints "server: N bytes checksum H intact" / "client: N bytes checksum H server H M Mbit/s".
 * Exit 0 only when all bytes arrived intact; 1 with the reason otherwise. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <tfab/units.h>
#include "../common/pattern.h"

#define FAIL(...)                                                                            \
    do {                                                                                     \
        fprintf(stderr, "tcp_xfer: " __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                                 \
        exit(1);                                                                             \
    } while (0)

typedef struct {
    uint64_t magic, seed, bytes;
} hdr_t;
typedef struct {
    uint64_t checksum, bad_offset;
} reply_t;
#define MAGIC 0x7461627866657231ull /* "tabxfer1" */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double idle_timeout; /* seconds without progress before giving up */
static double connect_deadline; /* for connecting */

/* Wait until fd is ready for events, at most idle_timeout seconds. */
static void wait_fd(int fd, short events, const char *what)
{
    double deadline = now_s() + idle_timeout;
    for (;;) {
        int ms = (int)((deadline - now_s()) * 1000);
        if (ms <= 0)
            FAIL("timed out %s", what);
        struct pollfd pfd = {.fd = fd, .events = events};
        int           n   = poll(&pfd, 1, ms);
        if (n > 0)
            return;
        if (n < 0 && errno != EINTR)
            FAIL("poll: %s", strerror(errno));
    }
}

static void read_full(int fd, void *buf, size_t len, const char *what)
{
    uint8_t *p = buf;
    while (len) {
        wait_fd(fd, POLLIN, what);
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n == 0)
            FAIL("peer closed the connection %s (%zu bytes missing)", what, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            FAIL("recv %s: %s", what, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

static void write_full(int fd, const void *buf, size_t len, const char *what)
{
    const uint8_t *p = buf;
    while (len) {
        wait_fd(fd, POLLOUT, what);
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            FAIL("send %s: %s", what, strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

static struct addrinfo *resolve(const char *host, const char *port, int passive)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0}, *ai;
    int             rc    = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        FAIL("cannot resolve %s:%s: %s", host, port, gai_strerror(rc));
    return ai;
}

static int run_server(const char *bind_ip, const char *port, uint64_t bytes)
{
    struct addrinfo *ai = resolve(bind_ip, port, 1);
    int              ls = socket(ai->ai_family, SOCK_STREAM, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(ls, ai->ai_addr, ai->ai_addrlen) != 0 || listen(ls, 1) != 0)
        FAIL("bind/listen %s:%s: %s", bind_ip, port, strerror(errno));
    freeaddrinfo(ai);
    printf("listening on %s:%s\n", bind_ip, port);
    fflush(stdout);
    wait_fd(ls, POLLIN, "waiting for a client");
    int fd = accept(ls, NULL, NULL);
    if (fd < 0)
        FAIL("accept: %s", strerror(errno));
    close(ls);

    hdr_t h;
    read_full(fd, &h, sizeof(h), "reading the header");
    if (h.magic != MAGIC)
        FAIL("bad header magic %016" PRIx64 " (not a tcp_xfer client?)", h.magic);
    if (h.bytes != bytes)
        FAIL("client sends %" PRIu64 " bytes, server expects %" PRIu64, h.bytes, bytes);
    size_t   bufsz = 1u << 20;
    uint8_t *buf   = malloc(bufsz);
    if (buf == NULL)
        FAIL("out of memory");
    uint64_t sum = CHECKSUM64_INIT, off = 0, bad = bytes;
    double   t0  = now_s();
    while (off < bytes) {
        size_t want = bytes - off < bufsz ? (size_t)(bytes - off) : bufsz;
        read_full(fd, buf, want, "reading data");
        sum = checksum64_update(sum, buf, want);
        size_t pos = pattern_check(buf, want, h.seed, off);
        if (pos != want && bad == bytes)
            bad = off + pos;
        off += want;
    }
    double  dt = now_s() - t0;
    reply_t r  = {.checksum = sum, .bad_offset = bad};
    write_full(fd, &r, sizeof(r), "sending the reply");
    close(fd);
    free(buf);
    printf("server: %" PRIu64 " bytes checksum %016" PRIx64 " %s %.1f Mbit/s\n", bytes, sum,
           bad == bytes ? "intact" : "CORRUPT", (double)bytes * 8 / 1e6 / dt);
    if (bad != bytes)
        FAIL("data corrupt at offset %" PRIu64, bad);
    return 0;
}

static int run_client(const char *host, const char *port, uint64_t bytes, uint64_t chunk,
                      uint64_t seed)
{
    struct addrinfo *ai = resolve(host, port, 0);
    int              fd = -1, attempt;
    for (attempt = 1;; attempt++) { /* the server may not listen yet */
        fd = socket(ai->ai_family, SOCK_STREAM, 0);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        int err = errno;
        close(fd);
        if ((err != ECONNREFUSED && err != ENETUNREACH && err != EHOSTUNREACH) ||
            now_s() + 0.2 > connect_deadline)
            FAIL("connect %s:%s: %s", host, port, strerror(err));
        usleep(100000);
    }
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* the whole stream is generated up front so the timed part is the transfer alone */
    uint8_t *data = malloc(bytes ? bytes : 1);
    if (data == NULL)
        FAIL("out of memory for %" PRIu64 " bytes", bytes);
    pattern_fill(data, bytes, seed, 0);
    uint64_t sum = checksum64(data, bytes);
    hdr_t    h   = {.magic = MAGIC, .seed = seed, .bytes = bytes};
    double   t0  = now_s();
    write_full(fd, &h, sizeof(h), "sending the header");
    for (uint64_t off = 0; off < bytes; off += chunk)
        write_full(fd, data + off, bytes - off < chunk ? bytes - off : chunk, "sending data");
    reply_t r;
    read_full(fd, &r, sizeof(r), "reading the reply");
    double dt = now_s() - t0;
    close(fd);
    free(data);
    printf("client: %" PRIu64 " bytes checksum %016" PRIx64 " server %016" PRIx64
           " %.1f Mbit/s (connected after %d attempt(s))\n",
           bytes, sum, r.checksum, (double)bytes * 8 / 1e6 / dt, attempt);
    if (r.checksum != sum || r.bad_offset != bytes)
        FAIL("checksum mismatch: first bad byte at %" PRIu64, r.bad_offset);
    printf("client: OK\n");
    return 0;
}

static uint64_t size_arg(const char *name, const char *v)
{
    uint64_t b;
    if (v == NULL || tfab_size_parse(v, &b) != TFAB_OK || b == 0)
        FAIL("%s needs a size such as 64M, got '%s'", name, v ? v : "");
    return b;
}

int main(int argc, char **argv)
{
    const char *addr = NULL, *port = "7472";
    int         server = 0, timeout = 60;
    uint64_t    bytes = 64ull << 20, chunk = 1ull << 20, seed = 0x7fab5eed;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--server") == 0)
            server = 1;
        else if ((strcmp(a, "--bind") == 0 || strcmp(a, "--client") == 0) && v)
            addr = argv[++i];
        else if (strcmp(a, "--port") == 0 && v)
            port = argv[++i];
        else if (strcmp(a, "--bytes") == 0)
            bytes = size_arg(a, argv[++i]);
        else if (strcmp(a, "--chunk") == 0)
            chunk = size_arg(a, argv[++i]);
        else if (strcmp(a, "--timeout") == 0 && v)
            timeout = atoi(argv[++i]);
        else if (strcmp(a, "--seed") == 0 && v)
            seed = strtoull(argv[++i], NULL, 0);
        else
            FAIL("unknown or incomplete argument '%s'", a);
    }
    if (addr == NULL)
        FAIL("give --server --bind IP or --client IP");
    setvbuf(stdout, NULL, _IOLBF, 0);
    idle_timeout = timeout;
    connect_deadline = now_s() + timeout;
    return server ? run_server(addr, port, bytes) : run_client(addr, port, bytes, chunk, seed);
}
