/* srv.h - internals of `tfab serve` shared by the server's files: configuration, parsed requests,
 * generation streams and their chunk pool, engines (one loaded model and its scheduler), the
 * model cache, metrics and the HTTP front end. Nothing here is installed or exported. */
#ifndef TFAB_SRV_H
#define TFAB_SRV_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <tfab/model.h>
#include <tfab/sample.h>
#include <tfab/status.h>
#include <tfab/tokenizer.h>

/* ---- configuration (config.c) -------------------------------------------------------------- */
#define SRV_STR 256
typedef struct srv_config {
    char     environment[32];      /* development | production | test */
    char     listen[SRV_STR];      /* "host:port" for TCP; "" or "off": none */
    char     socket_path[108];     /* Unix domain socket path; "": none */
    char     model[PATH_MAX];      /* default model file (built-in when empty) */
    char     models_dir[PATH_MAX]; /* more models: DIR/<name>.gguf */
    char     topology[PATH_MAX];   /* topology file for the dashboard; "": this host only */
    char     chat_template[16];    /* force llama2|llama3|chatml; "": the model's, else plain */
    char     log_level[16];
    unsigned max_models; /* loaded at once, least recently used evicted */
    unsigned slots;      /* KV cache slots per model (sequences decoding at once) */
    unsigned n_ctx, n_batch, threads;
    unsigned limit_min, limit_max, limit_initial, limit_up, limit_down;
    double   util_high, util_low;
    unsigned ttft_target_ms, limit_interval_ms;
    unsigned credits;        /* unacknowledged chunks per stream */
    unsigned ack_timeout_ms; /* paused this long without progress: cancelled */
    unsigned retry_after_s;
    unsigned max_body;   /* request body bytes */
    unsigned chunk_pool; /* response chunks in the fixed pool */
    unsigned max_tokens_default;
    unsigned send_buffer; /* SO_SNDBUF of client sockets; 0: the kernel's */
} srv_config_t;

/* Defaults, then config file (base, then environments.<env>), then TFAB_* variables, then flags.
 * argv: the flags after `tfab serve`. Errors are written to err ("file:line: key 'x': ...").
 * Returns 0, 1 when --help/--help-config printed something, -1 on error. */
int srv_config_load(srv_config_t *cfg, int argc, char **argv, char *err, size_t err_len);
/* Parse a YAML config text alone (base + environment env) into cfg; the fuzz target's entry. */
int  srv_config_parse_yaml(srv_config_t *cfg, const char *text, size_t len, const char *name,
                           const char *env, char *err, size_t err_len);
void srv_config_defaults(srv_config_t *cfg);
void srv_config_help(FILE *out);
/* The effective configuration as YAML (what --print-config shows). */
void srv_config_print(const srv_config_t *cfg, const char *file, FILE *out);

/* ---- requests (api.c) ---------------------------------------------------------------------- */
typedef enum srv_api {
    SRV_API_CHAT        = 0, /* POST /v1/chat/completions */
    SRV_API_COMPLETION  = 1, /* POST /v1/completions */
    SRV_API_OL_GENERATE = 2, /* POST /api/generate (Ollama) */
    SRV_API_OL_CHAT     = 3  /* POST /api/chat (Ollama) */
} srv_api_t;

#define SRV_MAX_STOP 4
#define SRV_STOP_LEN 64
typedef struct srv_request {
    srv_api_t             api;
    char                  model[128];
    int                   stream;
    int                   include_usage; /* stream_options.include_usage */
    char                 *prompt;        /* completion / generate: owned */
    tfab_chat_msg_t      *msgs;          /* chat: owned, strings owned too */
    size_t                n_msgs;
    int                   max_tokens; /* -1: not given */
    tfab_sampler_params_t sp;
    char                  stop[SRV_MAX_STOP][SRV_STOP_LEN];
    unsigned              n_stop;
} srv_request_t;

typedef struct srv_error {
    int  status;    /* HTTP status */
    char type[40];  /* invalid_request_error, not_found_error, server_error ... */
    char param[40]; /* offending field or "" */
    char code[40];  /* "" or model_not_found, context_length_exceeded ... */
    char message[256];
} srv_error_t;

void srv_error_set(srv_error_t *e, int status, const char *type, const char *param,
                   const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Parse a request body; on failure err says what (400). Any bytes are safe. */
int  srv_request_parse(srv_api_t api, const char *body, size_t len, srv_request_t *req,
                       srv_error_t *err);
void srv_request_free(srv_request_t *req);
/* The error as OpenAI's JSON ({"error":{message,type,param,code}}); malloc'd. */
char *srv_error_json(const srv_error_t *err);

/* ---- chunk pool and streams (stream.c) ----------------------------------------------------- */
#define SRV_CHUNK_BYTES 120
typedef struct srv_chunk {
    struct srv_chunk *next;
    uint32_t          len;
    uint32_t          reused; /* handed out before */
    char              data[SRV_CHUNK_BYTES];
} srv_chunk_t;

typedef struct srv_pool {
    pthread_mutex_t lock;
    srv_chunk_t    *chunks; /* [n] */
    srv_chunk_t    *free;
    unsigned        n, n_free;
    uint64_t        allocs, reuses, exhausted;
} srv_pool_t;

int          srv_pool_init(srv_pool_t *pool, unsigned n);
void         srv_pool_cleanup(srv_pool_t *pool);
srv_chunk_t *srv_pool_get(srv_pool_t *pool); /* NULL when empty */
void         srv_pool_put_list(srv_pool_t *pool, srv_chunk_t *list);
unsigned     srv_pool_n_free(srv_pool_t *pool);

typedef enum srv_finish {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_STOP,     /* end of text or a stop string */
    SRV_FINISH_LENGTH,   /* max_tokens or the context */
    SRV_FINISH_CANCELED, /* disconnect, stall, shutdown */
    SRV_FINISH_ERROR
} srv_finish_t;

typedef enum srv_cancel {
    SRV_CANCEL_NONE = 0,
    SRV_CANCEL_DISCONNECT,
    SRV_CANCEL_STALL,
    SRV_CANCEL_SHUTDOWN
} srv_cancel_t;

struct srv_engine;
struct srv;

/* One generation: created by the connection thread, decoded by the engine's scheduler, read back
 * by the connection thread. Two references (connection, scheduler); the last put frees it. */
typedef struct srv_stream {
    struct srv_stream *next; /* engine's pending/active list */
    atomic_int         refs;
    atomic_int         cancel; /* srv_cancel_t: set by anyone, acted on by the scheduler */
    struct srv        *srv;
    struct srv_engine *engine;
    uint64_t           id;
    srv_request_t      req;
    tfab_token_t      *prompt; /* [n_prompt] */
    uint32_t           n_prompt;
    uint32_t           max_tokens;
    tfab_sampler_t    *sampler;
    uint64_t           t_arrive_ns, t_slot_ns, t_first_ns, t_last_ns;
    /* scheduler-only state */
    int          slot;   /* KV slot, -1 before admission */
    uint32_t     n_fed;  /* prompt tokens already in the cache */
    uint32_t     n_past; /* cache positions filled */
    tfab_token_t last;   /* next token to feed (decode phase) */
    uint32_t     n_gen;
    char        *text; /* generated text (all of it; stop strings look back) */
    size_t       text_len, text_cap, text_sent;
    uint64_t     paused_since_ns;
    /* shared with the reader, under lock */
    pthread_mutex_t lock;
    int             efd; /* eventfd: chunks or the end are ready */
    srv_chunk_t    *head, *tail;
    unsigned        queued; /* unacknowledged chunks */
    int             done;   /* finish set, nothing more will be queued */
    srv_finish_t    finish;
    int             error_status; /* when finish == ERROR */
} srv_stream_t;

srv_stream_t *srv_stream_create(struct srv *srv);
void          srv_stream_put(srv_stream_t *s);
/* Reader side: take every queued chunk (acknowledging them); *done_p set once finished and empty.
 * Returns the list (give it back with srv_pool_put_list). */
srv_chunk_t *srv_stream_take(srv_stream_t *s, int *done_p);

/* ---- engines and the model cache (engine.c, cache.c) ---------------------------------------- */
typedef struct srv_engine {
    struct srv_engine *lru_next;
    struct srv        *srv;
    char               name[128];
    char               path[PATH_MAX];
    uint64_t           file_size;
    tfab_model_t      *model;
    tfab_vocab_t      *vocab;
    tfab_chat_tmpl_t   tmpl;
    uint32_t           n_vocab, n_ctx, n_batch, n_slots;
    int                batched; /* tfab_model_decode in use (else one sequence at a time) */
    int                users;   /* requests holding it (cache lock) */
    uint64_t           last_used;
    pthread_t          thread;
    pthread_mutex_t    lock;
    pthread_cond_t     cond;
    int                stop, joined;
    srv_stream_t      *pending_head, *pending_tail;
    srv_stream_t     **slot; /* [n_slots] */
    unsigned           n_active, n_pending;
    /* batch buffers (scheduler only) */
    int32_t             *b_tok;
    uint32_t            *b_pos, *b_seq;
    uint8_t             *b_want;
    srv_stream_t       **b_owner;            /* stream of each logits row */
    float               *logits;             /* [n_batch][n_vocab] */
    atomic_uint_fast64_t steps, step_tokens; /* read by /metrics */
} srv_engine_t;

int srv_engine_create(struct srv *srv, const char *name, const char *path, srv_engine_t **e_p);
/* Stop the scheduler: every stream it holds ends canceled; submits then fail. Idempotent. */
void srv_engine_shutdown(srv_engine_t *e);
void srv_engine_destroy(srv_engine_t *e); /* shuts down first */
/* Tokenize the request's prompt and queue the stream; err on failure (400/500). */
int srv_engine_submit(srv_engine_t *e, srv_stream_t *s, srv_error_t *err);

int  srv_cache_acquire(struct srv *srv, const char *name, srv_engine_t **e_p, srv_error_t *err);
void srv_cache_release(struct srv *srv, srv_engine_t *e);
/* Names of models that can be served: the default model and DIR/<name>.gguf. */
typedef struct srv_model_info {
    char     name[128];
    char     path[PATH_MAX];
    uint64_t size;
    int64_t  mtime;
    int      loaded;
} srv_model_info_t;
unsigned srv_cache_list(struct srv *srv, srv_model_info_t *out, unsigned max);
void     srv_cache_cleanup(struct srv *srv);

/* ---- metrics (metrics.c) ------------------------------------------------------------------- */
#define SRV_HIST_BUCKETS 12
typedef struct srv_hist {
    const double *bounds; /* seconds, [n] ascending; +Inf implicit */
    unsigned      n;
    uint64_t      counts[SRV_HIST_BUCKETS + 1];
    double        sum;
    uint64_t      count;
} srv_hist_t;

typedef struct srv_metrics {
    pthread_mutex_t lock;
    srv_hist_t      ttft, itl, queue;
    uint64_t        tokens, prompt_tokens, requests, rejections, errors_4xx, errors_5xx;
    uint64_t        cancel_disconnect, cancel_stall, cancel_shutdown, slow_consumers;
    uint64_t        http_requests;
    double          tokens_per_s;    /* over the last second */
    double          ttft_window_sum; /* since the last limit evaluation */
    uint64_t        ttft_window_n;
    double          ttft_mean_last_ms;
} srv_metrics_t;

void srv_metrics_init(srv_metrics_t *m);
void srv_metrics_cleanup(srv_metrics_t *m);
void srv_hist_add(srv_hist_t *h, double v);
/* Prometheus text exposition; malloc'd. */
char *srv_metrics_render(struct srv *srv);

/* ---- the server (server.c, http.c) --------------------------------------------------------- */
typedef struct srv {
    srv_config_t    cfg;
    srv_metrics_t   metrics;
    srv_pool_t      pool;
    pthread_mutex_t cache_lock;
    srv_engine_t   *engines; /* most recently used first */
    unsigned        n_engines;
    char            default_name[128];
    /* stream registry */
    pthread_mutex_t      reg_lock;
    unsigned             active; /* admitted streams, not yet released */
    unsigned             limit;
    double               util_sum; /* samples of active/limit since the last evaluation */
    unsigned             util_n;
    atomic_uint_fast64_t next_id;
    uint64_t             t_start_ns;
    /* housekeeping */
    pthread_t       house;
    pthread_mutex_t house_lock;
    pthread_cond_t  house_cond;
    int             stopping;
    /* HTTP */
    void                 *mhd_tcp, *mhd_uds;
    int                   uds_fd;
    unsigned              tcp_port;
    struct tfab_topology *topo;
} srv_t;

int  srv_start(srv_t *srv, const srv_config_t *cfg);
void srv_stop(srv_t *srv);
/* Registry: 0 admitted, -1 at the limit (rejections counted). */
int               srv_admit(srv_t *srv);
void              srv_release(srv_t *srv);
int               srv_http_start(srv_t *srv);
void              srv_http_quiesce(srv_t *srv); /* stop accepting */
void              srv_http_stop(srv_t *srv);
char             *srv_dashboard_json(srv_t *srv);
extern const char srv_dashboard_html[];

uint64_t srv_now_ns(void);

/* utf8.c: bytes at the end of text[0..len) that start an incomplete character; the length of
 * the well-formed character at p[0..n) (no overlongs, surrogates or code points above
 * U+10FFFF), 0 if none (invalid or cut short). */
size_t srv_utf8_partial_tail(const char *text, size_t len);
size_t srv_utf8_char_len(const unsigned char *p, size_t n);

#endif
