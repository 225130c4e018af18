/* http.c - tfab serve's HTTP front end on libmicrohttpd: one handler for TCP and for a Unix
 * domain socket (a second daemon on a socket we bind ourselves), routing, bodies with a size
 * limit, OpenAI and Ollama responses, and streaming (SSE / NDJSON) through a content-reader
 * callback that waits on the stream's eventfd and notices a client hang-up at once. */
#define _GNU_SOURCE /* POLLRDHUP */
#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <tfab/log.h>
#include "srv.h"

/* a connection with no traffic for this long is closed (slowloris and forgotten sockets: the
 * daemon runs a thread per connection) */
#define IDLE_TIMEOUT_S 120

#define MOD "serve"

typedef enum route {
    R_NONE = 0,
    R_HEALTH,
    R_METRICS,
    R_MODELS,
    R_TAGS,
    R_VERSION,
    R_DASHBOARD,
    R_DASHBOARD_JSON,
    R_GEN /* api says which */
} route_t;

typedef struct conn_req {
    srv_t        *srv;
    route_t       route;
    srv_api_t     api;
    char         *body;
    size_t        len, cap;
    int           too_big;
    int           fd;
    srv_engine_t *engine;
    srv_stream_t *stream;
    int           admitted;
    time_t        created;
    /* streaming output */
    char  *out;
    size_t out_len, out_off, out_cap;
    int    ended;
} conn_req_t;

/* ---- responses ------------------------------------------------------------------------------ */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 char *body, size_t len, int owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *root)
{
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s == NULL)
        return MHD_NO;
    return send_body(c, status, "application/json", s, strlen(s), 1);
}

static enum MHD_Result send_error(srv_t *srv, struct MHD_Connection *c, const srv_error_t *err,
                                  const char *allow)
{
    char *s = srv_error_json(err);
    if (s == NULL)
        return MHD_NO;
    pthread_mutex_lock(&srv->metrics.lock);
    if (err->status >= 500)
        srv->metrics.errors_5xx++;
    else
        srv->metrics.errors_4xx++;
    pthread_mutex_unlock(&srv->metrics.lock);
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(s);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (err->status == 503) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", srv->cfg.retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)err->status, r);
    MHD_destroy_response(r);
    return ok;
}

static const char *finish_str(srv_finish_t f)
{
    return f == SRV_FINISH_LENGTH ? "length" : "stop";
}

static void iso_time(char *buf, size_t len)
{
    struct timespec ts;
    struct tm       tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%09ldZ", ts.tv_nsec);
}

static cJSON *usage_json(const srv_stream_t *s)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", s->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", s->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", s->n_prompt + s->n_gen);
    return u;
}

static cJSON *openai_head(const conn_req_t *r, int chunk)
{
    const srv_stream_t *s    = r->stream;
    int                 chat = r->api == SRV_API_CHAT;
    char                id[48];
    snprintf(id, sizeof(id), "%s-%llu", chat ? "chatcmpl" : "cmpl", (unsigned long long)s->id);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", id);
    cJSON_AddStringToObject(root, "object",
                            chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                 : "text_completion");
    cJSON_AddNumberToObject(root, "created", (double)r->created);
    cJSON_AddStringToObject(root, "model", r->engine->name);
    cJSON_AddStringToObject(root, "system_fingerprint", "tfab");
    return root;
}

/* One choice: chat message or delta, or completion text. text NULL: an empty delta. */
static cJSON *openai_choice(const conn_req_t *r, const char *text, int chunk, const char *finish,
                            int role)
{
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (r->api == SRV_API_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(ch, chunk ? "delta" : "message");
        if (role || !chunk)
            cJSON_AddStringToObject(m, "role", "assistant");
        if (text)
            cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(ch, "text", text ? text : "");
    }
    cJSON_AddNullToObject(ch, "logprobs");
    if (finish)
        cJSON_AddStringToObject(ch, "finish_reason", finish);
    else
        cJSON_AddNullToObject(ch, "finish_reason");
    return ch;
}

static cJSON *ollama_obj(const conn_req_t *r, const char *text, int done)
{
    const srv_stream_t *s = r->stream;
    char                ts[64];
    iso_time(ts, sizeof(ts));
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", r->engine->name);
    cJSON_AddStringToObject(o, "created_at", ts);
    if (r->api == SRV_API_OL_CHAT) {
        cJSON *m = cJSON_AddObjectToObject(o, "message");
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content", text ? text : "");
    } else {
        cJSON_AddStringToObject(o, "response", text ? text : "");
    }
    cJSON_AddBoolToObject(o, "done", done);
    if (done) {
        uint64_t end   = s->t_last_ns ? s->t_last_ns : srv_now_ns();
        uint64_t first = s->t_first_ns ? s->t_first_ns : end;
        cJSON_AddStringToObject(o, "done_reason", finish_str(s->finish));
        cJSON_AddNumberToObject(o, "total_duration", (double)(srv_now_ns() - s->t_arrive_ns));
        cJSON_AddNumberToObject(o, "load_duration", 0);
        cJSON_AddNumberToObject(o, "prompt_eval_count", s->n_prompt);
        cJSON_AddNumberToObject(o, "prompt_eval_duration",
                                (double)(first - (s->t_slot_ns ? s->t_slot_ns : first)));
        cJSON_AddNumberToObject(o, "eval_count", s->n_gen);
        cJSON_AddNumberToObject(o, "eval_duration", (double)(end - first));
    }
    return o;
}

/* Append a serialized event to r->out: SSE "data: ...\n\n" or NDJSON "...\n". */
static void out_event(conn_req_t *r, cJSON *root)
{
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (s == NULL)
        return;
    int    sse = r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION;
    size_t n = strlen(s), need = r->out_len + n + 8;
    if (need > r->out_cap) {
        char *p = realloc(r->out, need * 2);
        if (p == NULL) {
            free(s);
            return;
        }
        r->out     = p;
        r->out_cap = need * 2;
    }
    if (sse) {
        memcpy(r->out + r->out_len, "data: ", 6);
        r->out_len += 6;
    }
    memcpy(r->out + r->out_len, s, n);
    r->out_len += n;
    memcpy(r->out + r->out_len, sse ? "\n\n" : "\n", sse ? 2 : 1);
    r->out_len += sse ? 2 : 1;
    free(s);
}

/* A chunk list as one NUL-terminated string (malloc'd); gives the chunks back to the pool. */
static char *chunks_text(srv_t *srv, srv_chunk_t *list, size_t *len_p)
{
    size_t n = 0;
    for (srv_chunk_t *c = list; c; c = c->next)
        n += c->len;
    char *t = malloc(n + 1);
    if (t) {
        size_t o = 0;
        for (srv_chunk_t *c = list; c; c = c->next) {
            memcpy(t + o, c->data, c->len);
            o += c->len;
        }
        t[n] = '\0';
    }
    srv_pool_put_list(&srv->pool, list);
    if (len_p)
        *len_p = n;
    return t;
}

static void event_delta(conn_req_t *r, const char *text)
{
    if (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION) {
        cJSON *root = openai_head(r, 1), *chs = cJSON_AddArrayToObject(root, "choices");
        cJSON_AddItemToArray(chs, openai_choice(r, text, 1, NULL, 0));
        out_event(r, root);
    } else {
        out_event(r, ollama_obj(r, text, 0));
    }
}

static void event_final(conn_req_t *r)
{
    srv_stream_t *s = r->stream;
    if (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION) {
        if (s->finish == SRV_FINISH_ERROR) {
            srv_error_t e;
            srv_error_set(&e, 500, "server_error", NULL, NULL, "generation failed");
            char *j = srv_error_json(&e);
            out_event(r, cJSON_Parse(j));
            free(j);
        } else {
            cJSON *root = openai_head(r, 1), *chs = cJSON_AddArrayToObject(root, "choices");
            cJSON_AddItemToArray(chs, openai_choice(r, NULL, 1, finish_str(s->finish), 0));
            cJSON_AddItemToObject(root, "usage", usage_json(s)); /* always: clients ignore it */
            out_event(r, root);
        }
        size_t need = r->out_len + 16;
        char  *p    = need > r->out_cap ? realloc(r->out, need) : r->out;
        if (p) {
            r->out     = p;
            r->out_cap = need > r->out_cap ? need : r->out_cap;
            memcpy(r->out + r->out_len, "data: [DONE]\n\n", 14);
            r->out_len += 14;
        }
    } else {
        out_event(r, ollama_obj(r, NULL, 1));
    }
}

/* Wait for the stream's eventfd or a client hang-up; returns -1 on hang-up. */
static int wait_stream(conn_req_t *r, int timeout_ms)
{
    struct pollfd p[2] = {{.fd = r->stream->efd, .events = POLLIN},
                          {.fd = r->fd, .events = POLLRDHUP}};
    int           n    = poll(p, r->fd >= 0 ? 2 : 1, timeout_ms);
    if (n > 0 && r->fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
        atomic_store(&r->stream->cancel, SRV_CANCEL_DISCONNECT);
        return -1;
    }
    return 0;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    conn_req_t *r = cls;
    (void)pos;
    for (;;) {
        if (r->out_off < r->out_len) {
            size_t n = r->out_len - r->out_off < max ? r->out_len - r->out_off : max;
            memcpy(buf, r->out + r->out_off, n);
            r->out_off += n;
            return (ssize_t)n;
        }
        if (r->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        r->out_len = r->out_off = 0;
        int          done;
        srv_chunk_t *list = srv_stream_take(r->stream, &done);
        if (list) {
            char *t = chunks_text(r->srv, list, NULL);
            if (t)
                event_delta(r, t);
            free(t);
            continue;
        }
        if (done) {
            if (r->stream->finish == SRV_FINISH_CANCELED)
                return MHD_CONTENT_READER_END_WITH_ERROR; /* stall or shutdown: close */
            event_final(r);
            r->ended = 1;
            continue;
        }
        if (wait_stream(r, 1000) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static enum MHD_Result respond_generation(conn_req_t *r, struct MHD_Connection *c)
{
    srv_t        *srv = r->srv;
    srv_request_t req;
    srv_error_t   err = {0};
    if (srv_request_parse(r->api, r->body ? r->body : "", r->len, &req, &err) != 0)
        return send_error(srv, c, &err, NULL);
    if (srv_cache_acquire(srv, req.model, &r->engine, &err) != 0) {
        srv_request_free(&req);
        return send_error(srv, c, &err, NULL);
    }
    if (srv_admit(srv) != 0) {
        srv_request_free(&req);
        srv_error_set(&err, 503, "server_error", NULL, "too_many_streams",
                      "the server is at its limit of %u concurrent streams; retry later",
                      srv->limit);
        return send_error(srv, c, &err, NULL);
    }
    r->admitted = 1;
    if ((r->stream = srv_stream_create(srv)) == NULL) {
        srv_request_free(&req);
        srv_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(srv, c, &err, NULL);
    }
    r->stream->req = req; /* owned by the stream now */
    if (srv_engine_submit(r->engine, r->stream, &err) != 0)
        return send_error(srv, c, &err, NULL);
    if (r->stream->req.stream) {
        if (r->api == SRV_API_CHAT) { /* the first chunk names the role */
            cJSON *root = openai_head(r, 1), *chs = cJSON_AddArrayToObject(root, "choices");
            cJSON_AddItemToArray(chs, openai_choice(r, "", 1, NULL, 1));
            out_event(r, root);
        }
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        if (resp == NULL)
            return MHD_NO;
        int sse = r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                sse ? "text/event-stream" : "application/x-ndjson");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    /* whole answer: collect the text, still noticing a hang-up */
    size_t len = 0, cap = 256;
    char  *text = malloc(cap);
    int    done = 0;
    while (text) {
        srv_chunk_t *list = srv_stream_take(r->stream, &done);
        if (list) {
            size_t n;
            char  *t = chunks_text(srv, list, &n);
            if (t && len + n + 1 > cap) {
                char *p = realloc(text, (cap = (len + n + 1) * 2));
                if (p == NULL) {
                    free(t);
                    free(text);
                    text = NULL;
                    break;
                }
                text = p;
            }
            if (t)
                memcpy(text + len, t, n);
            len += t ? n : 0;
            free(t);
            continue;
        }
        if (done)
            break;
        if (wait_stream(r, 1000) < 0) {
            free(text);
            return MHD_NO; /* the client is gone: close */
        }
    }
    if (text == NULL) {
        atomic_store(&r->stream->cancel, SRV_CANCEL_SHUTDOWN);
        srv_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        return send_error(srv, c, &err, NULL);
    }
    text[len]       = '\0';
    srv_stream_t *s = r->stream;
    if (s->finish == SRV_FINISH_CANCELED || s->finish == SRV_FINISH_ERROR) {
        free(text);
        srv_error_set(&err, s->finish == SRV_FINISH_ERROR ? 500 : 503, "server_error", NULL, NULL,
                      s->finish == SRV_FINISH_ERROR
                          ? "generation failed"
                          : "the generation was canceled (server stopping)");
        return send_error(srv, c, &err, NULL);
    }
    cJSON *root;
    if (r->api == SRV_API_CHAT || r->api == SRV_API_COMPLETION) {
        root       = openai_head(r, 0);
        cJSON *chs = cJSON_AddArrayToObject(root, "choices");
        cJSON_AddItemToArray(chs, openai_choice(r, text, 0, finish_str(s->finish), 1));
        cJSON_AddItemToObject(root, "usage", usage_json(s));
    } else {
        root = ollama_obj(r, NULL, 1);
        if (r->api == SRV_API_OL_CHAT)
            cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "message"), "content",
                                      cJSON_CreateString(text));
        else
            cJSON_ReplaceItemInObject(root, "response", cJSON_CreateString(text));
    }
    free(text);
    return send_json(c, MHD_HTTP_OK, root);
}

static enum MHD_Result respond_models(srv_t *srv, struct MHD_Connection *c, int ollama)
{
    srv_model_info_t m[64];
    unsigned         n    = srv_cache_list(srv, m, 64);
    cJSON           *root = cJSON_CreateObject();
    cJSON           *arr  = ollama ? cJSON_AddArrayToObject(root, "models")
                                   : (cJSON_AddStringToObject(root, "object", "list"),
                           cJSON_AddArrayToObject(root, "data"));
    for (unsigned i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (ollama) {
            char      name[160], ts[32];
            struct tm tm;
            time_t    t = (time_t)m[i].mtime;
            gmtime_r(&t, &tm);
            strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
            snprintf(name, sizeof(name), "%.127s:latest", m[i].name);
            cJSON_AddStringToObject(o, "name", name);
            cJSON_AddStringToObject(o, "model", name);
            cJSON_AddStringToObject(o, "modified_at", ts);
            cJSON_AddNumberToObject(o, "size", (double)m[i].size);
            cJSON_AddStringToObject(o, "digest", "");
            cJSON *d = cJSON_AddObjectToObject(o, "details");
            cJSON_AddStringToObject(d, "format", "gguf");
            cJSON_AddStringToObject(d, "family", "llama");
        } else {
            cJSON_AddStringToObject(o, "id", m[i].name);
            cJSON_AddStringToObject(o, "object", "model");
            cJSON_AddNumberToObject(o, "created", (double)m[i].mtime);
            cJSON_AddStringToObject(o, "owned_by", "tfab");
        }
        cJSON_AddBoolToObject(o, "loaded", m[i].loaded);
        cJSON_AddItemToArray(arr, o);
    }
    return send_json(c, MHD_HTTP_OK, root);
}

/* ---- routing -------------------------------------------------------------------------------- */

static const struct {
    const char *path, *method;
    route_t     route;
    srv_api_t   api;
} routes[] = {
    {"/health", "GET", R_HEALTH, 0},
    {"/metrics", "GET", R_METRICS, 0},
    {"/v1/models", "GET", R_MODELS, 0},
    {"/api/tags", "GET", R_TAGS, 0},
    {"/api/version", "GET", R_VERSION, 0},
    {"/", "GET", R_DASHBOARD, 0},
    {"/api/dashboard", "GET", R_DASHBOARD_JSON, 0},
    {"/v1/chat/completions", "POST", R_GEN, SRV_API_CHAT},
    {"/v1/completions", "POST", R_GEN, SRV_API_COMPLETION},
    {"/api/generate", "POST", R_GEN, SRV_API_OL_GENERATE},
    {"/api/chat", "POST", R_GEN, SRV_API_OL_CHAT},
};

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    srv_t      *srv = cls;
    conn_req_t *r   = *con_cls;
    srv_error_t err = {0};
    (void)version;
    if (r == NULL) {
        if ((r = calloc(1, sizeof(*r))) == NULL)
            return MHD_NO;
        r->srv     = srv;
        r->fd      = -1;
        r->created = time(NULL);
        *con_cls   = r;
        pthread_mutex_lock(&srv->metrics.lock);
        srv->metrics.http_requests++;
        pthread_mutex_unlock(&srv->metrics.lock);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci)
            r->fd = ci->connect_fd;
        int found = 0;
        for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
            if (strcmp(url, routes[i].path) != 0)
                continue;
            found = 1;
            if (strcmp(method, routes[i].method) == 0) {
                r->route = routes[i].route;
                r->api   = routes[i].api;
            }
        }
        if (found && r->route == R_NONE) {
            int post = 0;
            for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
                if (strcmp(url, routes[i].path) == 0 && strcmp(routes[i].method, "POST") == 0)
                    post = 1;
            srv_error_set(&err, 405, "invalid_request_error", NULL, "method_not_allowed",
                          "%s is not allowed on %s (use %s)", method, url, post ? "POST" : "GET");
            return send_error(srv, c, &err, post ? "POST" : "GET");
        }
        if (!found) {
            srv_error_set(&err, 404, "invalid_request_error", NULL, "not_found",
                          "no such endpoint: %s %s", method, url);
            return send_error(srv, c, &err, NULL);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->cfg.max_body) {
            srv_error_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                          "the request body is larger than %u bytes", srv->cfg.max_body);
            return send_error(srv, c, &err, NULL);
        }
        return MHD_YES;
    }
    if (*upload_data_size) { /* body, piece by piece */
        size_t n          = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->len + n > srv->cfg.max_body) {
            r->too_big = 1;
            return MHD_YES;
        }
        if (r->len + n + 1 > r->cap) {
            size_t cap = (r->len + n + 1) * 2;
            if (cap > (size_t)srv->cfg.max_body + 1)
                cap = (size_t)srv->cfg.max_body + 1;
            char *p = realloc(r->body, cap);
            if (p == NULL)
                return MHD_NO;
            r->body = p;
            r->cap  = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    if (r->too_big) {
        srv_error_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                      "the request body is larger than %u bytes", srv->cfg.max_body);
        return send_error(srv, c, &err, NULL);
    }
    switch (r->route) {
    case R_HEALTH: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        return send_json(c, MHD_HTTP_OK, o);
    }
    case R_METRICS: {
        char *m = srv_metrics_render(srv);
        if (m == NULL)
            return MHD_NO;
        return send_body(c, MHD_HTTP_OK, "text/plain; version=0.0.4", m, strlen(m), 1);
    }
    case R_MODELS:
        return respond_models(srv, c, 0);
    case R_TAGS:
        return respond_models(srv, c, 1);
    case R_VERSION: {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "version", "0.1.0");
        return send_json(c, MHD_HTTP_OK, o);
    }
    case R_DASHBOARD:
        return send_body(c, MHD_HTTP_OK, "text/html; charset=utf-8", (char *)srv_dashboard_html,
                         strlen(srv_dashboard_html), 0);
    case R_DASHBOARD_JSON: {
        char *j = srv_dashboard_json(srv);
        if (j == NULL)
            return MHD_NO;
        return send_body(c, MHD_HTTP_OK, "application/json", j, strlen(j), 1);
    }
    case R_GEN:
        return respond_generation(r, c);
    default:
        return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    srv_t      *srv = cls;
    conn_req_t *r   = *con_cls;
    (void)c;
    if (r == NULL)
        return;
    if (r->stream) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            atomic_store(&r->stream->cancel, SRV_CANCEL_DISCONNECT); /* no-op once finished */
        srv_stream_put(r->stream);
    }
    if (r->admitted)
        srv_release(srv);
    if (r->engine)
        srv_cache_release(srv, r->engine);
    free(r->out);
    free(r->body);
    free(r);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode toe)
{
    srv_t *srv = cls;
    (void)socket_ctx;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED || srv->cfg.send_buffer == 0)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int v = (int)srv->cfg.send_buffer;
    if (ci)
        setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    TFAB_DEBUG(MOD, "libmicrohttpd: %s", line);
}

#define MHD_FLAGS                                                                                  \
    (MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |              \
     MHD_USE_ITC | MHD_USE_ERROR_LOG)

static int parse_listen(const char *s, struct sockaddr_in *sa)
{
    char        host[SRV_STR];
    const char *colon = strrchr(s, ':');
    if (colon == NULL)
        return -1;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - s), s);
    char         *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port   = htons((uint16_t)port);
    if (host[0] == '\0' || strcmp(host, "*") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (strcmp(host, "localhost") == 0)
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    return 0;
}

static struct MHD_Daemon *start_daemon(srv_t *srv, const struct sockaddr_in *sa, int listen_fd)
{
    if (sa)
        return MHD_start_daemon(MHD_FLAGS, ntohs(sa->sin_port), NULL, NULL, on_request, srv,
                                MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
                                srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
                                MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    return MHD_start_daemon(MHD_FLAGS, 0, NULL, NULL, on_request, srv, MHD_OPTION_LISTEN_SOCKET,
                            listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S, MHD_OPTION_END);
}

int srv_http_start(srv_t *srv)
{
    const srv_config_t *cfg = &srv->cfg;
    if (cfg->listen[0] && strcmp(cfg->listen, "off") != 0) {
        struct sockaddr_in sa;
        if (parse_listen(cfg->listen, &sa) != 0) {
            TFAB_ERROR(MOD, "listen '%s' is not host:port (an IPv4 address or localhost)",
                       cfg->listen);
            return -1;
        }
        if ((srv->mhd_tcp = start_daemon(srv, &sa, -1)) == NULL) {
            TFAB_ERROR(MOD, "cannot listen on %s: %s (in use? try another --listen port)",
                       cfg->listen, strerror(errno));
            return -1;
        }
        const union MHD_DaemonInfo *di =
            MHD_get_daemon_info(srv->mhd_tcp, MHD_DAEMON_INFO_BIND_PORT);
        srv->tcp_port = di ? di->port : ntohs(sa.sin_port);
    }
    if (cfg->socket_path[0]) {
        struct sockaddr_un ua = {.sun_family = AF_UNIX};
        struct stat        st;
        snprintf(ua.sun_path, sizeof(ua.sun_path), "%s", cfg->socket_path);
        if (lstat(cfg->socket_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(cfg->socket_path); /* a stale socket from an earlier run */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&ua, sizeof(ua)) != 0 || listen(fd, 256) != 0) {
            TFAB_ERROR(MOD, "cannot listen on the Unix socket %s: %s", cfg->socket_path,
                       strerror(errno));
            if (fd >= 0)
                close(fd);
            goto err_tcp;
        }
        srv->uds_fd = fd;
        if ((srv->mhd_uds = start_daemon(srv, NULL, fd)) == NULL) {
            TFAB_ERROR(MOD, "libmicrohttpd refused the Unix socket %s", cfg->socket_path);
            close(fd);
            srv->uds_fd = -1;
            unlink(cfg->socket_path);
            goto err_tcp;
        }
    }
    if (srv->mhd_tcp == NULL && srv->mhd_uds == NULL) {
        TFAB_ERROR(MOD, "nothing to listen on: give --listen HOST:PORT or --socket PATH");
        return -1;
    }
    return 0;
err_tcp:
    if (srv->mhd_tcp)
        MHD_stop_daemon(srv->mhd_tcp);
    srv->mhd_tcp = NULL;
    return -1;
}

void srv_http_quiesce(srv_t *srv)
{
    /* the listening sockets become ours to close */
    MHD_socket fd;
    if (srv->mhd_tcp && (fd = MHD_quiesce_daemon(srv->mhd_tcp)) != MHD_INVALID_SOCKET)
        close(fd);
    if (srv->mhd_uds && (fd = MHD_quiesce_daemon(srv->mhd_uds)) != MHD_INVALID_SOCKET)
        close(fd);
}

void srv_http_stop(srv_t *srv)
{
    if (srv->mhd_tcp)
        MHD_stop_daemon(srv->mhd_tcp);
    if (srv->mhd_uds) {
        MHD_stop_daemon(srv->mhd_uds);
        unlink(srv->cfg.socket_path);
    }
    srv->mhd_tcp = srv->mhd_uds = NULL;
}
