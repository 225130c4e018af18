/* topology.c - the topology priority file (YAML, read with libyaml's document API): hosts with
 * their links and ranked routes between hosts; every key, value and reference checked, every
 * error naming the file and line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>
#include <tfab/topology.h>

#define MAX_HOSTS       1024
#define MAX_LINKS       16
#define MAX_ROUTES      4096
#define MAX_ROUTE_LINKS 16

typedef struct route {
    char     from[64], to[64];
    char     links[MAX_ROUTE_LINKS][32];
    unsigned n_links;
    int      line;
    int      node; /* its YAML node, for messages after parsing */
} route_t;

struct tfab_topology {
    tfab_topology_host_t *hosts;
    unsigned          n_hosts;
    route_t          *routes;
    unsigned          n_routes;
};

typedef struct {
    yaml_document_t *doc;
    const char      *name;
    char            *err;
    size_t           err_len;
} ctx_t;

__attribute__((format(printf, 3, 4))) static tfab_status_t fail(ctx_t *c, const yaml_node_t *n,
                                                                 const char *fmt, ...)
{
    int     w = snprintf(c->err, c->err_len, "%s:%zu: ", c->name, n ? n->start_mark.line + 1 : 1);
    va_list ap;
    va_start(ap, fmt);
    if (w >= 0 && (size_t)w < c->err_len)
        vsnprintf(c->err + w, c->err_len - (size_t)w, fmt, ap);
    va_end(ap);
    return TFAB_ERR_INVALID;
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A scalar that fits dst, or an error naming the key. */
static tfab_status_t get_str(ctx_t *c, const yaml_node_t *v, const char *key, char *dst, size_t len)
{
    const char *s = scalar(v);
    if (s == NULL || s[0] == '\0')
        return fail(c, v, "'%s' must be a non-empty string", key);
    if (strlen(s) >= len)
        return fail(c, v, "'%s' is longer than %zu characters", key, len - 1);
    memcpy(dst, s, strlen(s) + 1);
    return TFAB_OK;
}

static tfab_status_t get_int(ctx_t *c, const yaml_node_t *v, const char *key, int lo, int hi,
                             int *out)
{
    const char *s = scalar(v);
    char       *end;
    errno       = 0;
    long x      = s ? strtol(s, &end, 10) : 0;
    if (s == NULL || s[0] == '\0' || *end != '\0' || errno || x < lo || x > hi)
        return fail(c, v, "'%s' must be an integer from %d to %d", key, lo, hi);
    *out = (int)x;
    return TFAB_OK;
}

/* Iterate a mapping's pairs, checking every key against the allowed list. */
typedef tfab_status_t (*pair_fn)(ctx_t *c, const char *key, yaml_node_t *v, void *arg);

static tfab_status_t each_pair(ctx_t *c, yaml_node_t *map, const char *what, const char *allowed,
                               pair_fn fn, void *arg)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return fail(c, map, "%s must be a mapping", what);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        const char  *key = scalar(k);
        if (key == NULL)
            return fail(c, k, "keys of %s must be strings", what);
        char padded[64];
        snprintf(padded, sizeof(padded), " %s ", key);
        if (strstr(allowed, padded) == NULL)
            return fail(c, k, "unknown key '%s' in %s (known:%s)", key, what, allowed);
        tfab_status_t st = fn(c, key, v, arg);
        if (st != TFAB_OK)
            return st;
    }
    return TFAB_OK;
}

static tfab_status_t link_pair(ctx_t *c, const char *key, yaml_node_t *v, void *arg)
{
    tfab_topology_link_t *l = arg;
    if (strcmp(key, "name") == 0)
        return get_str(c, v, key, l->name, sizeof(l->name));
    if (strcmp(key, "device") == 0)
        return get_str(c, v, key, l->device, sizeof(l->device));
    if (strcmp(key, "address") == 0)
        return get_str(c, v, key, l->address, sizeof(l->address));
    if (strcmp(key, "port") == 0)
        return get_int(c, v, key, 1, 255, &l->port);
    if (strcmp(key, "gid_index") == 0)
        return get_int(c, v, key, 0, 65535, &l->gid_index);
    /* kind */
    const char *s = scalar(v);
    if (s && strcmp(s, "verbs") == 0)
        l->kind = TFAB_LINK_VERBS;
    else if (s && strcmp(s, "tcp") == 0)
        l->kind = TFAB_LINK_TCP;
    else
        return fail(c, v, "'kind' must be verbs or tcp");
    return TFAB_OK;
}

static tfab_status_t parse_link(ctx_t *c, yaml_node_t *n, tfab_topology_link_t *l)
{
    *l = (tfab_topology_link_t){.kind = (tfab_link_kind_t)-1, .port = 1, .gid_index = -1,
                            .line = (int)n->start_mark.line + 1};
    tfab_status_t st = each_pair(c, n, "a link", " name kind device port gid_index address ",
                                 link_pair, l);
    if (st != TFAB_OK)
        return st;
    if (l->name[0] == '\0')
        return fail(c, n, "a link needs a 'name'");
    if ((int)l->kind < 0)
        return fail(c, n, "link '%s' needs a 'kind' (verbs or tcp)", l->name);
    if (l->kind == TFAB_LINK_VERBS && l->device[0] == '\0')
        return fail(c, n, "verbs link '%s' needs a 'device' (e.g. mlx5_0)", l->name);
    if (l->kind == TFAB_LINK_TCP) {
        const char *colon = strrchr(l->address, ':');
        if (l->address[0] == '\0' || colon == NULL || colon == l->address || colon[1] == '\0' ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
            return fail(c, n, "tcp link '%s' needs an 'address' of the form ip:port", l->name);
    }
    return TFAB_OK;
}

static tfab_status_t host_pair(ctx_t *c, const char *key, yaml_node_t *v, void *arg)
{
    tfab_topology_host_t *h = arg;
    if (strcmp(key, "name") == 0)
        return get_str(c, v, key, h->name, sizeof(h->name));
    if (h->links != NULL)
        return fail(c, v, "'links' given twice for this host");
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, "'links' must be a list");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0 || n > MAX_LINKS)
        return fail(c, v, "a host has 1 to %d links, not %zu", MAX_LINKS, n);
    if ((h->links = calloc(n, sizeof(*h->links))) == NULL)
        return TFAB_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *ln = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
        tfab_status_t st = parse_link(c, ln, &h->links[i]);
        if (st != TFAB_OK)
            return st;
        for (size_t k = 0; k < i; k++)
            if (strcmp(h->links[k].name, h->links[i].name) == 0)
                return fail(c, ln, "link '%s' is defined twice on this host (first on line %d)",
                            h->links[i].name, h->links[k].line);
        h->n_links++;
    }
    return TFAB_OK;
}

static const tfab_topology_link_t *host_link(const tfab_topology_host_t *h, const char *name)
{
    for (unsigned i = 0; i < h->n_links; i++)
        if (strcmp(h->links[i].name, name) == 0)
            return &h->links[i];
    return NULL;
}

const tfab_topology_host_t *tfab_topology_find_host(const tfab_topology_t *t, const char *name)
{
    for (unsigned i = 0; i < t->n_hosts; i++)
        if (strcmp(t->hosts[i].name, name) == 0)
            return &t->hosts[i];
    return NULL;
}

typedef struct {
    tfab_topology_t *topo;
    route_t     *r;
} route_arg_t;

static tfab_status_t route_pair(ctx_t *c, const char *key, yaml_node_t *v, void *arg)
{
    route_t *r = ((route_arg_t *)arg)->r;
    if (strcmp(key, "from") == 0)
        return get_str(c, v, key, r->from, sizeof(r->from));
    if (strcmp(key, "to") == 0)
        return get_str(c, v, key, r->to, sizeof(r->to));
    if (r->n_links != 0)
        return fail(c, v, "'links' given twice for this route");
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, "'links' must be a list of link names");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0 || n > MAX_ROUTE_LINKS)
        return fail(c, v, "a route ranks 1 to %d links, not %zu", MAX_ROUTE_LINKS, n);
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *ln = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
        tfab_status_t st = get_str(c, ln, "links", r->links[i], sizeof(r->links[i]));
        if (st != TFAB_OK)
            return st;
        r->n_links++;
    }
    return TFAB_OK;
}

static tfab_status_t check_route(ctx_t *c, tfab_topology_t *t, route_t *r, yaml_node_t *n)
{
    if (r->from[0] == '\0' || r->to[0] == '\0' || r->n_links == 0)
        return fail(c, n, "a route needs 'from', 'to' and 'links'");
    const tfab_topology_host_t *a = tfab_topology_find_host(t, r->from), *b = tfab_topology_find_host(t, r->to);
    if (a == NULL)
        return fail(c, n, "route from unknown host '%s'", r->from);
    if (b == NULL)
        return fail(c, n, "route to unknown host '%s'", r->to);
    if (a == b)
        return fail(c, n, "route from '%s' to itself", r->from);
    for (unsigned i = 0; i < r->n_links; i++) {
        const tfab_topology_link_t *la = host_link(a, r->links[i]), *lb = host_link(b, r->links[i]);
        if (la == NULL || lb == NULL)
            return fail(c, n, "route %s -> %s ranks link '%s', which host '%s' does not have",
                        r->from, r->to, r->links[i], la == NULL ? a->name : b->name);
        if (la->kind != lb->kind)
            return fail(c, n, "link '%s' is %s on '%s' but %s on '%s'", r->links[i],
                        tfab_link_kind_str(la->kind), a->name, tfab_link_kind_str(lb->kind),
                        b->name);
        for (unsigned k = 0; k < i; k++)
            if (strcmp(r->links[k], r->links[i]) == 0)
                return fail(c, n, "route %s -> %s ranks link '%s' twice", r->from, r->to,
                            r->links[i]);
    }
    for (unsigned k = 0; k + 1 < t->n_routes; k++)
        if (strcmp(t->routes[k].from, r->from) == 0 && strcmp(t->routes[k].to, r->to) == 0)
            return fail(c, n, "route %s -> %s given twice (first on line %d)", r->from, r->to,
                        t->routes[k].line);
    return TFAB_OK;
}

static tfab_status_t top_pair(ctx_t *c, const char *key, yaml_node_t *v, void *arg)
{
    tfab_topology_t *t = arg;
    if (strcmp(key, "version") == 0) {
        int ver;
        tfab_status_t st = get_int(c, v, key, 1, 1000, &ver);
        if (st == TFAB_OK && ver != 1)
            return fail(c, v, "topology version %d is not supported (this tfab reads 1)", ver);
        return st;
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, "'%s' must be a list", key);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (strcmp(key, "hosts") == 0) {
        if (t->hosts != NULL)
            return fail(c, v, "'hosts' given twice");
        if (n == 0 || n > MAX_HOSTS)
            return fail(c, v, "'hosts' lists 1 to %d hosts, not %zu", MAX_HOSTS, n);
        if ((t->hosts = calloc(n, sizeof(*t->hosts))) == NULL)
            return TFAB_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            yaml_node_t      *hn = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
            tfab_topology_host_t *h  = &t->hosts[t->n_hosts++];
            h->line              = (int)hn->start_mark.line + 1;
            tfab_status_t st     = each_pair(c, hn, "a host", " name links ", host_pair, h);
            if (st != TFAB_OK)
                return st;
            if (h->name[0] == '\0' || h->n_links == 0)
                return fail(c, hn, "a host needs a 'name' and 'links'");
            for (size_t k = 0; k + 1 < t->n_hosts; k++)
                if (strcmp(t->hosts[k].name, h->name) == 0)
                    return fail(c, hn, "host '%s' is defined twice (first on line %d)", h->name,
                                t->hosts[k].line);
        }
        return TFAB_OK;
    }
    /* routes: checked after all pairs, since hosts may come later in the file */
    if (t->routes != NULL)
        return fail(c, v, "'routes' given twice");
    if (n > MAX_ROUTES)
        return fail(c, v, "more than %d routes", MAX_ROUTES);
    if (n && (t->routes = calloc(n, sizeof(*t->routes))) == NULL)
        return TFAB_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *rn = yaml_document_get_node(c->doc, v->data.sequence.items.start[i]);
        route_t     *r  = &t->routes[t->n_routes++];
        r->line         = (int)rn->start_mark.line + 1;
        r->node         = v->data.sequence.items.start[i];
        route_arg_t   ra = {t, r};
        tfab_status_t st = each_pair(c, rn, "a route", " from to links ", route_pair, &ra);
        if (st != TFAB_OK)
            return st;
    }
    return TFAB_OK;
}

void tfab_topology_free(tfab_topology_t *t)
{
    if (t == NULL)
        return;
    for (unsigned i = 0; i < t->n_hosts; i++)
        free(t->hosts[i].links);
    free(t->hosts);
    free(t->routes);
    free(t);
}

tfab_status_t tfab_topology_parse(const char *text, size_t len, const char *name, tfab_topology_t **topo_p,
                              char *err, size_t err_len)
{
    yaml_parser_t   parser;
    yaml_document_t doc;
    ctx_t           c  = {.doc = &doc, .name = name ? name : "topology", .err = err, .err_len = err_len};
    tfab_status_t   st = TFAB_ERR_INVALID;
    if (!yaml_parser_initialize(&parser))
        return TFAB_ERR_NOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_len, "%s:%zu: %s%s%s", c.name, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return TFAB_ERR_INVALID;
    }
    tfab_topology_t *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        st = TFAB_ERR_NOMEM;
        goto out;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        snprintf(err, err_len, "%s:1: the file is empty", c.name);
        goto out;
    }
    if ((st = each_pair(&c, root, "the topology", " version hosts routes ", top_pair, t)) != TFAB_OK)
        goto out;
    if (t->n_hosts == 0) {
        st = fail(&c, root, "no 'hosts' given");
        goto out;
    }
    for (unsigned i = 0; i < t->n_routes; i++) {
        unsigned keep = t->n_routes;
        t->n_routes   = i + 1; /* duplicate check looks only at earlier routes */
        st = check_route(&c, t, &t->routes[i], yaml_document_get_node(&doc, t->routes[i].node));
        t->n_routes = keep;
        if (st != TFAB_OK)
            goto out;
    }
    *topo_p = t;
    t       = NULL;
    st      = TFAB_OK;
out:
    tfab_topology_free(t);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

tfab_status_t tfab_topology_load(const char *path, tfab_topology_t **topo_p, char *err, size_t err_len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        return TFAB_ERR_IO;
    }
    char  *buf = malloc(1 << 20);
    size_t n   = buf ? fread(buf, 1, 1 << 20, f) : 0;
    int    big = buf && n == (1 << 20) && fgetc(f) != EOF;
    fclose(f);
    if (buf == NULL)
        return TFAB_ERR_NOMEM;
    if (big) {
        snprintf(err, err_len, "%s: larger than 1 MiB: not a topology file?", path);
        free(buf);
        return TFAB_ERR_INVALID;
    }
    const char *base = strrchr(path, '/');
    tfab_status_t st = tfab_topology_parse(buf, n, base ? base + 1 : path, topo_p, err, err_len);
    free(buf);
    return st;
}

unsigned tfab_topology_n_hosts(const tfab_topology_t *t) { return t->n_hosts; }

const tfab_topology_host_t *tfab_topology_host(const tfab_topology_t *t, unsigned i)
{
    return i < t->n_hosts ? &t->hosts[i] : NULL;
}

const char *tfab_link_kind_str(tfab_link_kind_t kind)
{
    return kind == TFAB_LINK_VERBS ? "verbs" : kind == TFAB_LINK_TCP ? "tcp" : "unknown";
}

unsigned tfab_topology_rank(const tfab_topology_t *t, const char *from, const char *to,
                        tfab_topology_path_t *out, unsigned max)
{
    const tfab_topology_host_t *a = tfab_topology_find_host(t, from), *b = tfab_topology_find_host(t, to);
    if (a == NULL || b == NULL || a == b)
        return 0;
    const route_t *r = NULL;
    for (unsigned i = 0; i < t->n_routes && !r; i++) /* our direction first, else the reverse */
        if (strcmp(t->routes[i].from, from) == 0 && strcmp(t->routes[i].to, to) == 0)
            r = &t->routes[i];
    for (unsigned i = 0; i < t->n_routes && !r; i++)
        if (strcmp(t->routes[i].from, to) == 0 && strcmp(t->routes[i].to, from) == 0)
            r = &t->routes[i];
    unsigned n = 0;
    if (r != NULL) {
        for (unsigned i = 0; i < r->n_links; i++, n++)
            if (n < max)
                out[n] = (tfab_topology_path_t){host_link(a, r->links[i]), host_link(b, r->links[i])};
        return n;
    }
    for (int kind = TFAB_LINK_VERBS; kind <= TFAB_LINK_TCP; kind++)
        for (unsigned i = 0; i < a->n_links; i++) {
            const tfab_topology_link_t *lb = host_link(b, a->links[i].name);
            if ((int)a->links[i].kind != kind || lb == NULL || lb->kind != a->links[i].kind)
                continue;
            if (n < max)
                out[n] = (tfab_topology_path_t){&a->links[i], lb};
            n++;
        }
    return n;
}

#define EP_LINKS_MAX 8 /* ranked links per endpoint (transport core) */

tfab_status_t tfab_topology_links(const tfab_topology_t *t, const char *host, const char *peer,
                                  int verbs_port, char *out, size_t len)
{
    tfab_topology_path_t p[EP_LINKS_MAX];
    unsigned             n = tfab_topology_rank(t, host, peer, p, EP_LINKS_MAX);
    size_t               o = 0;
    if (n == 0 || len == 0)
        return TFAB_ERR_INVALID;
    out[0] = '\0';
    for (unsigned i = 0; i < n && i < EP_LINKS_MAX; i++) {
        const tfab_topology_link_t *l = p[i].local;
        int w = l->kind == TFAB_LINK_TCP
                    ? snprintf(out + o, len - o, "%stcp %s", i ? ", " : "", l->address)
                    : snprintf(out + o, len - o, "%sverbs %s:%d", i ? ", " : "", l->address,
                               verbs_port);
        if (w < 0 || (size_t)w >= len - o)
            return TFAB_ERR_RANGE;
        o += (size_t)w;
    }
    return TFAB_OK;
}
