/* cluster_file.c - the cluster file (one directive per line, "#" comments) and the rank and size
 * a launcher (Slurm, Open MPI, PMI) puts in the environment. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/cluster.h>
#include <tfab/units.h>

static tfab_status_t fail(char *err, size_t err_len, const char *name, int line, const char *fmt,
                          ...) __attribute__((format(printf, 5, 6)));
static tfab_status_t fail(char *err, size_t err_len, const char *name, int line, const char *fmt,
                          ...)
{
    char    what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (err && err_len)
        snprintf(err, err_len, "%s:%d: %s", name, line, what);
    return TFAB_ERR_INVALID;
}

static int parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    errno                = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '-' || end == s || *end != '\0' || errno || v < lo || v > hi)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* "ip:port" with a port 1..65535 */
static int valid_address(const char *a)
{
    const char *colon = strrchr(a, ':');
    uint32_t    port;
    return colon && colon != a && parse_u32(colon + 1, 1, 65535, &port) == 0 &&
           strlen(a) < sizeof(((tfab_cluster_rank_t *)0)->address);
}

tfab_status_t tfab_cluster_parse(const char *text, size_t len, const char *name, tfab_cluster_t *c,
                                 char *err, size_t err_len)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->chunk        = 32;
    c->heartbeat_ms = 200;
    c->dead_ms      = 2000;
    c->join_s       = 60;
    c->tp           = 1;
    snprintf(c->backend, sizeof(c->backend), "tcp");
    int         line = 0, have_layers = -1;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t      n  = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        char buf[1024];
        if (n >= sizeof(buf))
            return fail(err, err_len, name, line, "line longer than %zu bytes", sizeof(buf) - 1);
        memcpy(buf, p, n);
        buf[n] = '\0';
        p += n + (nl ? 1 : 0);
        if (memchr(buf, '\0', n))
            return fail(err, err_len, name, line, "NUL byte in the line");
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        char *words[10];
        int   nw = 0;
        for (char *save, *w = strtok_r(buf, " \t\r", &save); w;
             w = strtok_r(NULL, " \t\r", &save)) {
            if (nw == 10)
                return fail(err, err_len, name, line, "too many words");
            words[nw++] = w;
        }
        if (nw == 0)
            continue;
        const char *key = words[0];
        if (strcmp(key, "coordinator") == 0 || strcmp(key, "node") == 0) {
            int coord = key[0] == 'c';
            if (coord != (c->n_ranks == 0))
                return fail(err, err_len, name, line,
                            coord ? "a second coordinator (there is one, before the nodes)"
                                  : "node before the coordinator line (the coordinator is rank "
                                    "0 and comes first)");
            if (c->n_ranks == TFAB_CLUSTER_MAX_RANKS)
                return fail(err, err_len, name, line, "more than %d ranks", TFAB_CLUSTER_MAX_RANKS);
            if (nw < 2 || nw % 2 != 0)
                return fail(err, err_len, name, line,
                            "expected '%s IP:PORT [layers BEGIN-END] [mem SIZE] [host NAME]'", key);
            if (!valid_address(words[1]))
                return fail(err, err_len, name, line, "'%s' is not an IP:PORT address", words[1]);
            tfab_cluster_rank_t *r = &c->ranks[c->n_ranks];
            memset(r, 0, sizeof(*r));
            for (unsigned i = 0; i < c->n_ranks; i++)
                if (strcmp(c->ranks[i].address, words[1]) == 0)
                    return fail(err, err_len, name, line, "address %s already used by line %d",
                                words[1], c->ranks[i].line);
            snprintf(r->address, sizeof(r->address), "%s", words[1]);
            r->line    = line;
            int layers = 0;
            for (int w = 2; w < nw; w += 2) {
                const char *k = words[w], *v = words[w + 1];
                if (strcmp(k, "mem") == 0) {
                    if (tfab_size_parse(v, &r->mem) != TFAB_OK || r->mem == 0)
                        return fail(err, err_len, name, line,
                                    "mem '%s': a size like 16GiB, 512MiB or 1e9", v);
                } else if (strcmp(k, "host") == 0) {
                    if (strlen(v) >= sizeof(r->host))
                        return fail(err, err_len, name, line, "host name too long");
                    snprintf(r->host, sizeof(r->host), "%s", v);
                } else if (strcmp(k, "layers") == 0) {
                    char     range[64], *dash;
                    uint32_t b, e;
                    snprintf(range, sizeof(range), "%s", v);
                    if ((dash = strchr(range, '-')) == NULL)
                        return fail(err, err_len, name, line,
                                    "expected 'layers BEGIN-END', got 'layers %s'", v);
                    *dash = '\0';
                    if (parse_u32(range, 0, 1u << 20, &b) || parse_u32(dash + 1, 1, 1u << 20, &e) ||
                        b >= e)
                        return fail(err, err_len, name, line,
                                    "layers '%s': need BEGIN < END (END exclusive)", v);
                    if (c->n_ranks > 0 && have_layers == 1 &&
                        c->ranks[c->n_ranks - 1].layer_end != b)
                        return fail(err, err_len, name, line,
                                    "layers start at %u but the previous rank (line %d) ends at "
                                    "%u; stages must be consecutive",
                                    b, c->ranks[c->n_ranks - 1].line,
                                    c->ranks[c->n_ranks - 1].layer_end);
                    if (c->n_ranks == 0 && b != 0)
                        return fail(err, err_len, name, line,
                                    "the coordinator's layers must start at 0 (it runs the first "
                                    "stage)");
                    r->layer_begin = b;
                    r->layer_end   = e;
                    layers         = 1;
                } else {
                    return fail(err, err_len, name, line,
                                "unknown rank attribute '%s' (layers, mem, host)", k);
                }
            }
            if (have_layers == -1)
                have_layers = layers;
            else if (have_layers != layers)
                return fail(err, err_len, name, line,
                            "give 'layers' on every rank or on none (then they are placed by "
                            "memory)");
            c->n_ranks++;
            continue;
        }
        if (nw != 2)
            return fail(err, err_len, name, line, "expected '%s VALUE'", key);
        const char *v = words[1];
        if (strcmp(key, "token") == 0) {
            if (strlen(v) >= sizeof(c->token))
                return fail(err, err_len, name, line, "token longer than %zu bytes",
                            sizeof(c->token) - 1);
            snprintf(c->token, sizeof(c->token), "%s", v);
        } else if (strcmp(key, "model") == 0) {
            if (strlen(v) >= sizeof(c->model))
                return fail(err, err_len, name, line, "model path too long");
            snprintf(c->model, sizeof(c->model), "%s", v);
        } else if (strcmp(key, "tp") == 0) {
            if (parse_u32(v, 1, TFAB_CLUSTER_MAX_RANKS, &c->tp))
                return fail(err, err_len, name, line, "tp '%s': ranks per tensor-parallel group",
                            v);
            c->tp_line = line;
        } else if (strcmp(key, "topology") == 0) {
            if (strlen(v) >= sizeof(c->topology))
                return fail(err, err_len, name, line, "topology path too long");
            snprintf(c->topology, sizeof(c->topology), "%s", v);
        } else if (strcmp(key, "backend") == 0) {
            if (strcmp(v, "tcp") != 0 && strcmp(v, "verbs") != 0)
                return fail(err, err_len, name, line, "backend '%s': tcp or verbs", v);
            snprintf(c->backend, sizeof(c->backend), "%s", v);
        } else if (strcmp(key, "chunk") == 0) {
            if (parse_u32(v, 1, 65536, &c->chunk))
                return fail(err, err_len, name, line, "chunk '%s': tokens in 1..65536", v);
        } else if (strcmp(key, "heartbeat_ms") == 0) {
            if (parse_u32(v, 10, 600000, &c->heartbeat_ms))
                return fail(err, err_len, name, line, "heartbeat_ms '%s': 10..600000", v);
        } else if (strcmp(key, "dead_ms") == 0) {
            if (parse_u32(v, 50, 3600000, &c->dead_ms))
                return fail(err, err_len, name, line, "dead_ms '%s': 50..3600000", v);
        } else if (strcmp(key, "join_s") == 0) {
            if (parse_u32(v, 1, 86400, &c->join_s))
                return fail(err, err_len, name, line, "join_s '%s': 1..86400", v);
        } else {
            return fail(err, err_len, name, line,
                        "unknown directive '%s' (token, model, chunk, heartbeat_ms, dead_ms, "
                        "join_s, backend, topology, tp, coordinator, node)",
                        key);
        }
    }
    if (c->n_ranks == 0)
        return fail(err, err_len, name, line, "no 'coordinator IP:PORT' line");
    if (c->tp > 1 && c->tp != c->n_ranks)
        return fail(err, err_len, name, c->tp_line,
                    "tp %u with %u ranks: tensor parallelism spans all ranks (tp = %u); hybrid "
                    "pipeline + tensor parallel across hosts is not built yet",
                    c->tp, c->n_ranks, c->n_ranks);
    if (c->tp > 1 && c->ranks[0].layer_end)
        return fail(err, err_len, name, c->tp_line,
                    "tp %u: every rank holds every layer (a share of each); drop 'layers'", c->tp);
    if (c->dead_ms <= c->heartbeat_ms)
        return fail(err, err_len, name, line, "dead_ms %u must exceed heartbeat_ms %u", c->dead_ms,
                    c->heartbeat_ms);
    return TFAB_OK;
}

tfab_status_t tfab_cluster_load(const char *path, tfab_cluster_t *c, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return TFAB_ERR_IO;
    }
    char  *buf = malloc(1 << 20);
    size_t n   = buf ? fread(buf, 1, 1 << 20, f) : 0;
    int    big = buf && n == (1 << 20);
    fclose(f);
    if (buf == NULL)
        return TFAB_ERR_NOMEM;
    if (big) {
        free(buf);
        snprintf(err, err_len, "%s: larger than 1 MiB", path);
        return TFAB_ERR_INVALID;
    }
    tfab_status_t st = tfab_cluster_parse(buf, n, path, c, err, err_len);
    free(buf);
    return st;
}

int tfab_cluster_env_rank(int *rank_p, int *size_p, const char **which_p, char *err, size_t err_len)
{
    static const char *pairs[][2] = {{"TFAB_RANK", "TFAB_SIZE"},
                                     {"SLURM_PROCID", "SLURM_NTASKS"},
                                     {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                     {"PMI_RANK", "PMI_SIZE"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        const char *r = getenv(pairs[i][0]), *s = getenv(pairs[i][1]);
        if (r == NULL)
            continue;
        uint32_t rank, size;
        if (s == NULL || parse_u32(r, 0, TFAB_CLUSTER_MAX_RANKS - 1, &rank) ||
            parse_u32(s, 1, TFAB_CLUSTER_MAX_RANKS, &size) || rank >= size) {
            snprintf(err, err_len, "%s='%s' and %s='%s': need 0 <= rank < size <= %d", pairs[i][0],
                     r, pairs[i][1], s ? s : "(unset)", TFAB_CLUSTER_MAX_RANKS);
            return -1;
        }
        *rank_p = (int)rank;
        *size_p = (int)size;
        if (which_p)
            *which_p = pairs[i][0];
        return 1;
    }
    return 0;
}
