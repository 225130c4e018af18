/* config.c - tfab serve's configuration: one declarative table (name, type, default, range, help)
 * read in this order, later winning: defaults, the YAML file's top level, its
 * environments.<env> section, TFAB_<NAME> environment variables, --name flags. Every bad key or
 * value is an error naming where it came from (file:line, variable, or flag) and the key. */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>
#include "srv.h"

typedef enum opt_type { T_STR, T_UINT, T_DOUBLE } opt_type_t;

typedef struct opt {
    const char *name;
    opt_type_t  type;
    size_t      off, size;
    const char *def;
    double      lo, hi;
    const char *help;
} opt_t;

#define S(f) offsetof(srv_config_t, f), sizeof(((srv_config_t *)0)->f)
static const opt_t opts[] = {
    {"listen", T_STR, S(listen), "127.0.0.1:8080", 0, 0,
     "TCP address host:port (port 0: any free one; \"off\": no TCP)"},
    {"socket_path", T_STR, S(socket_path), "", 0, 0, "Unix domain socket path (\"\": none)"},
    {"model", T_STR, S(model), "", 0, 0, "default model .gguf (default: the built-in tfab-tiny)"},
    {"models_dir", T_STR, S(models_dir), "", 0, 0,
     "directory of more models, selected by file stem in the request's \"model\""},
    {"max_models", T_UINT, S(max_models), "3", 1, 64, "models loaded at once (LRU eviction)"},
    {"slots", T_UINT, S(slots), "32", 1, 256,
     "KV cache slots per model: sequences decoded together"},
    {"n_ctx", T_UINT, S(n_ctx), "0", 0, 1 << 20,
     "context length per slot (0: the model's, <= 4096)"},
    {"n_batch", T_UINT, S(n_batch), "64", 1, 4096, "most tokens in one decode step"},
    {"threads", T_UINT, S(threads), "0", 0, 1024, "compute threads (0: online CPUs)"},
    {"stream_limit_min", T_UINT, S(limit_min), "5", 1, 100000, "adaptive stream limit: floor"},
    {"stream_limit_max", T_UINT, S(limit_max), "50", 1, 100000, "adaptive stream limit: ceiling"},
    {"stream_limit_initial", T_UINT, S(limit_initial), "5", 1, 100000, "stream limit at start"},
    {"stream_limit_up", T_UINT, S(limit_up), "5", 0, 100000, "raise by this when busy and fast"},
    {"stream_limit_down", T_UINT, S(limit_down), "2", 0, 100000, "lower by this when idle"},
    {"utilisation_high", T_DOUBLE, S(util_high), "0.8", 0, 1, "raise above this utilisation"},
    {"utilisation_low", T_DOUBLE, S(util_low), "0.3", 0, 1, "lower under this utilisation"},
    {"ttft_target_ms", T_UINT, S(ttft_target_ms), "1000", 1, 3600000,
     "raise only while the mean time to first token is under this"},
    {"limit_interval_ms", T_UINT, S(limit_interval_ms), "5000", 100, 3600000,
     "re-evaluate the limit this often"},
    {"credits", T_UINT, S(credits), "100", 1, 100000, "unacknowledged chunks per stream"},
    {"ack_timeout_ms", T_UINT, S(ack_timeout_ms), "5000", 1, 3600000,
     "a stream paused this long is canceled as a slow consumer"},
    {"retry_after_s", T_UINT, S(retry_after_s), "1", 0, 3600, "Retry-After of a 503"},
    {"max_body", T_UINT, S(max_body), "1048576", 64, 1u << 30, "request body bytes (413 beyond)"},
    {"chunk_pool", T_UINT, S(chunk_pool), "8192", 16, 1u << 24,
     "response chunks in the fixed pool"},
    {"max_tokens_default", T_UINT, S(max_tokens_default), "256", 0, 1 << 20,
     "tokens generated when a request gives no max_tokens (0: to the context's end)"},
    {"send_buffer", T_UINT, S(send_buffer), "0", 0, 1 << 30,
     "SO_SNDBUF of client sockets in bytes (0: the kernel's)"},
    {"chat_template", T_STR, S(chat_template), "", 0, 0,
     "llama2, llama3 or chatml for every model (\"\": the model's own)"},
    {"topology", T_STR, S(topology), "", 0, 0, "topology file shown on the dashboard"},
    {"log_level", T_STR, S(log_level), "", 0, 0, "error, warn, info, debug or trace"},
};
#define N_OPTS (sizeof(opts) / sizeof(opts[0]))

static const char *const envs[] = {"development", "production", "test"};

static const opt_t *find_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

/* Set one value; on error writes "key 'x': why" to err. */
static int set_opt(srv_config_t *cfg, const opt_t *o, const char *v, char *err, size_t len)
{
    char *dst = (char *)cfg + o->off;
    if (o->type == T_STR) {
        if (strlen(v) >= o->size) {
            snprintf(err, len, "key '%s': value longer than %zu bytes", o->name, o->size - 1);
            return -1;
        }
        if (strcmp(o->name, "log_level") == 0 && v[0] && strcmp(v, "error") && strcmp(v, "warn") &&
            strcmp(v, "info") && strcmp(v, "debug") && strcmp(v, "trace")) {
            snprintf(err, len, "key '%s': '%s' is not error, warn, info, debug or trace", o->name,
                     v);
            return -1;
        }
        if (strcmp(o->name, "chat_template") == 0 && v[0] &&
            tfab_chat_tmpl_detect(v) == TFAB_CHAT_TMPL_UNKNOWN) {
            snprintf(err, len, "key '%s': '%s' is not llama2, llama3 or chatml", o->name, v);
            return -1;
        }
        memcpy(dst, v, strlen(v) + 1);
        return 0;
    }
    char *end;
    errno    = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno || !isfinite(x) || x < o->lo || x > o->hi ||
        (o->type == T_UINT && x != floor(x))) {
        snprintf(err, len, "key '%s': '%s' is not %s from %g to %g", o->name, v,
                 o->type == T_UINT ? "an integer" : "a number", o->lo, o->hi);
        return -1;
    }
    if (o->type == T_UINT)
        *(unsigned *)dst = (unsigned)x;
    else
        *(double *)dst = x;
    return 0;
}

void srv_config_defaults(srv_config_t *cfg)
{
    char err[64];
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->environment, sizeof(cfg->environment), "development");
    for (size_t i = 0; i < N_OPTS; i++)
        set_opt(cfg, &opts[i], opts[i].def, err, sizeof(err));
}

void srv_config_help(FILE *out)
{
    fprintf(out, "configuration keys (YAML key / TFAB_ variable / flag), default, meaning:\n");
    for (size_t i = 0; i < N_OPTS; i++) {
        char   flag[64], env[64];
        size_t j;
        for (j = 0; opts[i].name[j] && j < 40; j++) {
            flag[j] = opts[i].name[j] == '_' ? '-' : opts[i].name[j];
            env[j]  = (char)(opts[i].name[j] >= 'a' && opts[i].name[j] <= 'z'
                                 ? opts[i].name[j] - 'a' + 'A'
                                 : opts[i].name[j]);
        }
        flag[j] = env[j] = '\0';
        fprintf(out, "  %-21s TFAB_%-21s --%-21s [%s]\n      %s\n", opts[i].name, env, flag,
                opts[i].def, opts[i].help);
    }
}

/* ---- YAML ----------------------------------------------------------------------------------- */

static const char *scalar(yaml_document_t *doc, yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Apply a mapping of key: scalar. */
static int apply_map(srv_config_t *cfg, yaml_document_t *doc, yaml_node_t *map, const char *name,
                     int top, char *err, size_t len)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k    = yaml_document_get_node(doc, p->key);
        yaml_node_t *v    = yaml_document_get_node(doc, p->value);
        const char  *ks   = scalar(doc, k);
        unsigned     line = (k ? (unsigned)k->start_mark.line : 0) + 1;
        if (ks == NULL) {
            snprintf(err, len, "%s:%u: keys must be plain names", name, line);
            return -1;
        }
        if (top && strcmp(ks, "environments") == 0)
            continue; /* handled by the caller */
        const opt_t *o = find_opt(ks, strlen(ks));
        if (o == NULL) {
            snprintf(err, len, "%s:%u: unknown key '%s'%s (see tfab serve --help-config)", name,
                     line, ks, top ? "" : " in this environment");
            return -1;
        }
        const char *vs = scalar(doc, v);
        if (vs == NULL) {
            snprintf(err, len, "%s:%u: key '%s': the value must be a scalar", name,
                     (unsigned)(v ? v->start_mark.line : 0) + 1, ks);
            return -1;
        }
        char why[256];
        if (set_opt(cfg, o, vs, why, sizeof(why)) != 0) {
            snprintf(err, len, "%s:%u: %s", name, (unsigned)v->start_mark.line + 1, why);
            return -1;
        }
    }
    return 0;
}

int srv_config_parse_yaml(srv_config_t *cfg, const char *text, size_t len, const char *name,
                          const char *env, char *err, size_t err_len)
{
    yaml_parser_t   parser;
    yaml_document_t doc;
    int             rc = -1;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, err_len, "%s: cannot start the YAML parser", name);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, err_len, "%s:%u: %s", name, (unsigned)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "malformed YAML");
        yaml_parser_delete(&parser);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0)) {
        rc = 0; /* empty file */
        goto out;
    }
    if (root->type != YAML_MAPPING_NODE) {
        snprintf(err, err_len, "%s:%u: the top level must be a mapping of keys", name,
                 (unsigned)root->start_mark.line + 1);
        goto out;
    }
    if (apply_map(cfg, &doc, root, name, 1, err, err_len) != 0)
        goto out;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k  = yaml_document_get_node(&doc, p->key);
        const char  *ks = scalar(&doc, k);
        if (ks == NULL || strcmp(ks, "environments") != 0)
            continue;
        yaml_node_t *envmap = yaml_document_get_node(&doc, p->value);
        if (envmap == NULL || envmap->type != YAML_MAPPING_NODE) {
            snprintf(err, err_len,
                     "%s:%u: key 'environments': must map development, production, "
                     "test to their overrides",
                     name, (unsigned)k->start_mark.line + 1);
            goto out;
        }
        for (yaml_node_pair_t *q = envmap->data.mapping.pairs.start;
             q < envmap->data.mapping.pairs.top; q++) {
            yaml_node_t *ek    = yaml_document_get_node(&doc, q->key);
            yaml_node_t *ev    = yaml_document_get_node(&doc, q->value);
            const char  *es    = scalar(&doc, ek);
            unsigned     line  = (ek ? (unsigned)ek->start_mark.line : 0) + 1;
            int          known = 0;
            for (size_t i = 0; es && i < sizeof(envs) / sizeof(envs[0]); i++)
                known |= strcmp(es, envs[i]) == 0;
            if (!known) {
                snprintf(err, err_len,
                         "%s:%u: unknown environment '%s' (development, production, "
                         "test)",
                         name, line, es ? es : "?");
                goto out;
            }
            if (ev == NULL || (ev->type != YAML_MAPPING_NODE &&
                               !(ev->type == YAML_SCALAR_NODE && ev->data.scalar.length == 0))) {
                snprintf(err, err_len, "%s:%u: environment '%s': must be a mapping of keys", name,
                         line, es);
                goto out;
            }
            if (ev->type == YAML_MAPPING_NODE && strcmp(es, env) == 0 &&
                apply_map(cfg, &doc, ev, name, 0, err, err_len) != 0)
                goto out;
        }
    }
    rc = 0;
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static int load_file(srv_config_t *cfg, const char *path, const char *env, char *err, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char  *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += r;
        if (n == cap) {
            char *p = cap < (1u << 24) ? realloc(buf, cap *= 2) : NULL;
            if (p == NULL) {
                free(buf);
                buf = NULL;
            } else {
                buf = p;
            }
        }
    }
    fclose(f);
    if (buf == NULL) {
        snprintf(err, len, "%s: too large or out of memory", path);
        return -1;
    }
    int rc = srv_config_parse_yaml(cfg, buf, n, path, env, err, len);
    free(buf);
    return rc;
}

/* ---- the whole chain ------------------------------------------------------------------------ */

int srv_config_load(srv_config_t *cfg, int argc, char **argv, char *err, size_t len)
{
    const char *file = getenv("TFAB_CONFIG"), *env = getenv("TFAB_ENV");
    int         file_given = file != NULL, print = 0;
    /* --config and --env first: they decide what the rest means */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help-config") == 0) {
            srv_config_help(stdout);
            return 1;
        }
        print |= strcmp(a, "--print-config") == 0;
        if ((strcmp(a, "--config") == 0 || strcmp(a, "--env") == 0) && i + 1 >= argc) {
            snprintf(err, len, "flag %s needs a value", a);
            return -1;
        }
        if (strcmp(a, "--config") == 0)
            file = argv[++i], file_given = 1;
        else if (strcmp(a, "--env") == 0)
            env = argv[++i];
        else if (strncmp(a, "--config=", 9) == 0)
            file = a + 9, file_given = 1;
        else if (strncmp(a, "--env=", 6) == 0)
            env = a + 6;
    }
    srv_config_defaults(cfg);
    if (env) {
        int known = 0;
        for (size_t i = 0; i < sizeof(envs) / sizeof(envs[0]); i++)
            known |= strcmp(env, envs[i]) == 0;
        if (!known) {
            snprintf(err, len, "environment '%s' is not development, production or test", env);
            return -1;
        }
        snprintf(cfg->environment, sizeof(cfg->environment), "%s", env);
    }
    if (!file_given && access("config/runtime.yaml", R_OK) == 0)
        file = "config/runtime.yaml";
    if (file && file[0] && load_file(cfg, file, cfg->environment, err, len) != 0)
        return -1;
    /* TFAB_<KEY> variables */
    for (size_t i = 0; i < N_OPTS; i++) {
        char var[64] = "TFAB_";
        for (size_t j = 0; opts[i].name[j] && j < 50; j++)
            var[5 + j] = (char)(opts[i].name[j] >= 'a' && opts[i].name[j] <= 'z'
                                    ? opts[i].name[j] - 'a' + 'A'
                                    : opts[i].name[j]);
        const char *v = getenv(var);
        char        why[256];
        if (v && set_opt(cfg, &opts[i], v, why, sizeof(why)) != 0) {
            snprintf(err, len, "environment variable %s: %s", var, why);
            return -1;
        }
    }
    /* flags: --key value or --key=value, '-' or '_' alike */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "--env") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--config=", 9) == 0 || strncmp(a, "--env=", 6) == 0 ||
            strcmp(a, "--print-config") == 0)
            continue;
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, len, "unexpected argument '%s' (see tfab serve --help)", a);
            return -1;
        }
        char        key[64];
        const char *eq = strchr(a + 2, '=');
        size_t      kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof(key)) {
            snprintf(err, len, "unknown flag '%s' (see tfab serve --help-config)", a);
            return -1;
        }
        for (size_t j = 0; j < kl; j++)
            key[j] = a[2 + j] == '-' ? '_' : a[2 + j];
        key[kl] = '\0';
        /* short spellings */
        const char  *k = strcmp(key, "socket") == 0 ? "socket_path" : key;
        const opt_t *o = find_opt(k, strlen(k));
        if (o == NULL) {
            snprintf(err, len, "unknown flag '%.*s' (see tfab serve --help-config)", (int)kl + 2,
                     a);
            return -1;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        char        why[256];
        if (v == NULL) {
            snprintf(err, len, "flag --%s needs a value", key);
            return -1;
        }
        if (set_opt(cfg, o, v, why, sizeof(why)) != 0) {
            snprintf(err, len, "flag --%.*s: %s", (int)kl, a + 2, why);
            return -1;
        }
    }
    if (cfg->limit_min > cfg->limit_max) {
        snprintf(err, len, "key 'stream_limit_min' (%u) is above 'stream_limit_max' (%u)",
                 cfg->limit_min, cfg->limit_max);
        return -1;
    }
    if (cfg->slots > cfg->n_batch) { /* each decoding slot takes a row of every step */
        snprintf(err, len, "key 'slots' (%u) is above 'n_batch' (%u)", cfg->slots, cfg->n_batch);
        return -1;
    }
    if (cfg->limit_initial < cfg->limit_min)
        cfg->limit_initial = cfg->limit_min;
    if (cfg->limit_initial > cfg->limit_max)
        cfg->limit_initial = cfg->limit_max;
    if (cfg->util_low > cfg->util_high) {
        snprintf(err, len, "key 'utilisation_low' (%g) is above 'utilisation_high' (%g)",
                 cfg->util_low, cfg->util_high);
        return -1;
    }
    if (print) {
        srv_config_print(cfg, file && file[0] ? file : NULL, stdout);
        return 1;
    }
    return 0;
}

void srv_config_print(const srv_config_t *cfg, const char *file, FILE *out)
{
    fprintf(out, "# environment: %s; file: %s\n", cfg->environment, file ? file : "(none)");
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *p = (const char *)cfg + opts[i].off;
        if (opts[i].type == T_STR)
            fprintf(out, "%s: \"%s\"\n", opts[i].name, p);
        else if (opts[i].type == T_UINT)
            fprintf(out, "%s: %u\n", opts[i].name, *(const unsigned *)p);
        else
            fprintf(out, "%s: %g\n", opts[i].name, *(const double *)p);
    }
}
