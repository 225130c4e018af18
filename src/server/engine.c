/* engine.c - one loaded model and its scheduler thread: continuous batching of every active
 * sequence into shared decode steps (new sequences join between steps, prompts prefill in the
 * room decoding leaves), one KV cache slot per sequence, sampling, stop strings, credits. */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <tfab/log.h>
#include "srv.h"

#define MOD "serve"

uint64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *sched_main(void *arg);

/* The model's buffers from anonymous mappings: zeroed by the kernel page by page on first touch,
 * so the KV cache of slots no sequence has used yet costs neither start-up time (no memset of
 * every slot) nor resident memory. */
static void *lazy_alloc(size_t size, int node, void *arg)
{
    (void)node, (void)arg;
    void *p =
        mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        TFAB_ERROR(MOD, "mmap of %zu bytes for the model's buffers failed: %s", size,
                   strerror(errno));
        return NULL;
    }
    return p;
}

static void lazy_free(void *ptr, size_t size, void *arg)
{
    (void)arg;
    if (ptr)
        munmap(ptr, size ? size : 1);
}

static const tfab_stream_allocator_t lazy_allocator = {lazy_alloc, lazy_free, NULL};

int srv_engine_create(srv_t *srv, const char *name, const char *path, srv_engine_t **e_p)
{
    const srv_config_t *cfg = &srv->cfg;
    srv_engine_t       *e   = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->srv = srv;
    snprintf(e->name, sizeof(e->name), "%s", name);
    snprintf(e->path, sizeof(e->path), "%s", path);
    e->batched             = cfg->slots > 1; /* one slot: plain tfab_model_forward steps */
    uint64_t            t0 = srv_now_ns();
    tfab_model_params_t mp = {.field_mask = TFAB_MODEL_PARAM_N_SEQ | TFAB_MODEL_PARAM_ALLOCATOR,
                              .path       = path,
                              .allocator  = &lazy_allocator};
    mp.n_seq               = e->batched ? (cfg->slots ? cfg->slots : 1) : 1;
    if (cfg->n_ctx) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_CTX;
        mp.n_ctx = cfg->n_ctx;
    }
    if (cfg->n_batch) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_BATCH;
        mp.n_batch = cfg->n_batch;
    }
    if (cfg->threads) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_THREADS;
        mp.n_threads = cfg->threads;
    }
    TFAB_INFO(MOD, "loading model '%s' from %s: mapping weights, %u KV slot(s)", name, path,
              mp.n_seq);
    if (tfab_model_create(&mp, &e->model) != TFAB_OK)
        goto err_free; /* the loader said what is wrong */
    const tfab_model_config_t *mc = tfab_model_config(e->model);
    TFAB_INFO(MOD,
              "loading model '%s': %s, %u layers, %u vocab; weights mapped in %.1f ms; reading "
              "the tokenizer",
              name, mc->arch_name, mc->n_layer, mc->n_vocab, (double)(srv_now_ns() - t0) / 1e6);
    if (tfab_vocab_load_gguf_file(path, &e->vocab) != TFAB_OK) {
        TFAB_ERROR(MOD, "%s: no usable tokenizer in its metadata", path);
        goto err_model;
    }
    e->n_vocab = mc->n_vocab;
    e->n_ctx   = tfab_model_n_ctx(e->model);
    e->n_batch = tfab_model_n_batch(e->model);
    e->n_slots = e->batched ? tfab_model_n_seq(e->model) : 1;
    if (e->n_slots > e->n_batch) { /* every decoding slot takes a batch row in each step */
        TFAB_ERROR(MOD,
                   "model '%s': %u KV slots but at most %u tokens per step (n_batch, bounded by "
                   "n_ctx %u): set slots <= n_batch",
                   name, e->n_slots, e->n_batch, e->n_ctx);
        goto err_bufs; /* nothing allocated there yet; frees the vocabulary */
    }
    e->tmpl    = cfg->chat_template[0] ? tfab_chat_tmpl_detect(cfg->chat_template)
                                       : tfab_chat_tmpl_detect(tfab_vocab_chat_template(e->vocab));
    if ((e->slot = calloc(e->n_slots, sizeof(*e->slot))) == NULL ||
        (e->b_tok = malloc(sizeof(*e->b_tok) * e->n_batch)) == NULL ||
        (e->b_pos = malloc(sizeof(*e->b_pos) * e->n_batch)) == NULL ||
        (e->b_seq = malloc(sizeof(*e->b_seq) * e->n_batch)) == NULL ||
        (e->b_want = malloc(e->n_batch)) == NULL ||
        (e->b_owner = malloc(sizeof(*e->b_owner) * e->n_batch)) == NULL ||
        (e->logits = malloc(sizeof(float) * (size_t)e->n_batch * e->n_vocab)) == NULL) {
        TFAB_ERROR(MOD, "model '%s': out of memory for the batch buffers", name);
        goto err_bufs;
    }
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cond, NULL);
    if (pthread_create(&e->thread, NULL, sched_main, e) != 0) {
        TFAB_ERROR(MOD, "model '%s': cannot start its scheduler thread", name);
        goto err_sync;
    }
    TFAB_INFO(MOD,
              "model '%s' ready in %.1f ms: context %u, batch %u, %u slot(s), %s kernels, chat "
              "template %s",
              name, (double)(srv_now_ns() - t0) / 1e6, e->n_ctx, e->n_batch, e->n_slots,
              tfab_model_kernels(e->model),
              e->tmpl ? tfab_chat_tmpl_name(e->tmpl) : "none (messages joined by newlines)");
    *e_p = e;
    return 0;
err_sync:
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
err_bufs:
    free(e->logits);
    free(e->b_owner);
    free(e->b_want);
    free(e->b_seq);
    free(e->b_pos);
    free(e->b_tok);
    free(e->slot);
    tfab_vocab_destroy(e->vocab);
err_model:
    tfab_model_destroy(e->model);
err_free:
    free(e);
    return -1;
}

void srv_engine_shutdown(srv_engine_t *e)
{
    if (e->joined)
        return;
    pthread_mutex_lock(&e->lock);
    e->stop = 1;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    pthread_join(e->thread, NULL);
    e->joined = 1;
}

void srv_engine_destroy(srv_engine_t *e)
{
    if (e == NULL)
        return;
    srv_engine_shutdown(e);
    pthread_cond_destroy(&e->cond);
    pthread_mutex_destroy(&e->lock);
    free(e->logits);
    free(e->b_owner);
    free(e->b_want);
    free(e->b_seq);
    free(e->b_pos);
    free(e->b_tok);
    free(e->slot);
    tfab_vocab_destroy(e->vocab);
    tfab_model_destroy(e->model);
    TFAB_INFO(MOD, "model '%s' unloaded", e->name);
    free(e);
}

/* The prompt text of a request: the prompt itself, or the messages through the chat template
 * (without one: the contents joined by newlines). malloc'd; *special_p: parse control tokens. */
static char *render_prompt(srv_engine_t *e, const srv_request_t *req, int *special_p,
                           srv_error_t *err)
{
    *special_p = 0;
    if (req->prompt)
        return strdup(req->prompt);
    if (e->tmpl != TFAB_CHAT_TMPL_UNKNOWN) {
        size_t need = 0;
        if (tfab_chat_render(e->tmpl, req->msgs, req->n_msgs, 1, NULL, 0, &need) !=
                TFAB_ERR_RANGE &&
            need == 0) {
            srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                          "the messages cannot be rendered with the %s template",
                          tfab_chat_tmpl_name(e->tmpl));
            return NULL;
        }
        char *buf = malloc(need + 1);
        if (buf &&
            tfab_chat_render(e->tmpl, req->msgs, req->n_msgs, 1, buf, need + 1, &need) == TFAB_OK) {
            *special_p = 1;
            return buf;
        }
        free(buf);
        srv_error_set(err, 400, "invalid_request_error", "messages", NULL,
                      "the messages cannot be rendered with the %s template",
                      tfab_chat_tmpl_name(e->tmpl));
        return NULL;
    }
    size_t len = 1;
    for (size_t i = 0; i < req->n_msgs; i++)
        len += strlen(req->msgs[i].content) + 1;
    char *buf = malloc(len), *w = buf;
    if (buf == NULL)
        return NULL;
    for (size_t i = 0; i < req->n_msgs; i++) {
        size_t n = strlen(req->msgs[i].content);
        if (i)
            *w++ = '\n';
        memcpy(w, req->msgs[i].content, n);
        w += n;
    }
    *w = '\0';
    return buf;
}

int srv_engine_submit(srv_engine_t *e, srv_stream_t *s, srv_error_t *err)
{
    int   special = 0;
    char *text    = render_prompt(e, &s->req, &special, err);
    if (text == NULL) {
        if (err->status == 0)
            srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    size_t        n = 0, len = strlen(text);
    tfab_status_t st = TFAB_ERR_NOMEM;
    if ((s->prompt = malloc(sizeof(*s->prompt) * e->n_ctx)) != NULL)
        st = tfab_tokenize(e->vocab, text, len,
                           TFAB_ENCODE_ADD_SPECIAL | (special ? TFAB_ENCODE_PARSE_SPECIAL : 0),
                           s->prompt, e->n_ctx, &n);
    free(text);
    if (st == TFAB_ERR_RANGE || (st == TFAB_OK && n >= e->n_ctx)) {
        srv_error_set(err, 400, "invalid_request_error", "messages", "context_length_exceeded",
                      "the prompt is %zu tokens; model '%s' holds %u in its context", n, e->name,
                      e->n_ctx);
        return -1;
    }
    if (st != TFAB_OK) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "tokenizing the prompt failed: %s",
                      tfab_status_str(st));
        return -1;
    }
    if (n == 0) {
        srv_error_set(err, 400, "invalid_request_error", s->req.prompt ? "prompt" : "messages",
                      NULL, "the prompt is empty");
        return -1;
    }
    s->n_prompt   = (uint32_t)n;
    uint32_t room = e->n_ctx - s->n_prompt;
    int      mt   = s->req.max_tokens;
    s->max_tokens = mt < 0
                        ? (e->srv->cfg.max_tokens_default ? e->srv->cfg.max_tokens_default : room)
                        : (uint32_t)mt;
    if (s->max_tokens > room)
        s->max_tokens = room;
    tfab_sampler_params_t sp = s->req.sp;
    if (!(sp.field_mask & TFAB_SAMPLER_PARAM_SEED)) {
        sp.field_mask |= TFAB_SAMPLER_PARAM_SEED;
        sp.seed = srv_now_ns() ^ (s->id * 0x9e3779b97f4a7c15ull);
    }
    if (tfab_sampler_create(e->n_vocab, &sp, &s->sampler) != TFAB_OK) {
        srv_error_set(err, 400, "invalid_request_error", NULL, NULL, "invalid sampling parameters");
        return -1;
    }
    for (uint32_t i = 0; i < s->n_prompt; i++)
        tfab_sampler_accept(s->sampler, s->prompt[i]);
    s->text_cap = 64 + (size_t)s->max_tokens * 16;
    if (s->text_cap > (1u << 24))
        s->text_cap = 1u << 24;
    if ((s->text = malloc(s->text_cap)) == NULL) {
        srv_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return -1;
    }
    s->engine = e;
    pthread_mutex_lock(&e->lock);
    if (e->stop) {
        pthread_mutex_unlock(&e->lock);
        srv_error_set(err, 503, "server_error", NULL, NULL, "the server is stopping");
        return -1;
    }
    atomic_fetch_add(&s->refs, 1); /* the scheduler's reference */
    if (e->pending_tail)
        e->pending_tail->next = s;
    else
        e->pending_head = s;
    e->pending_tail = s;
    e->n_pending++;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
    return 0;
}

/* ---- scheduler ------------------------------------------------------------------------------ */

static void wake_reader(srv_stream_t *s)
{
    uint64_t one = 1;
    if (write(s->efd, &one, sizeof(one)) < 0) { /* counter saturated: already awake */
    }
}

/* Queue bytes as pool chunks; returns bytes queued (less when the pool ran dry). */
static size_t queue_bytes(srv_stream_t *s, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        srv_chunk_t *c = srv_pool_get(&s->srv->pool);
        if (c == NULL)
            break;
        c->len = (uint32_t)(n - done < SRV_CHUNK_BYTES ? n - done : SRV_CHUNK_BYTES);
        /* a chunk ends on a character boundary: the reader may send it as an event alone */
        for (int k = 0; k < 3 && done + c->len < n && c->len > 1 &&
                        ((unsigned char)p[done + c->len] & 0xc0) == 0x80;
             k++)
            c->len--;
        memcpy(c->data, p + done, c->len);
        done += c->len;
        pthread_mutex_lock(&s->lock);
        if (s->tail)
            s->tail->next = c;
        else
            s->head = c;
        s->tail = c;
        s->queued++;
        pthread_mutex_unlock(&s->lock);
    }
    return done;
}

/* Queue text[text_sent..end) as well-formed UTF-8: a byte that starts no valid character (a
 * random or byte-fallback model can sample any byte) goes out as U+FFFD, so every JSON string
 * the server writes is valid. Stops early when the chunk pool is dry. */
static void queue_text(srv_stream_t *s, size_t end)
{
    static const char repl[] = "\xef\xbf\xbd";
    while (s->text_sent < end) {
        const unsigned char *p   = (const unsigned char *)s->text + s->text_sent;
        size_t               n   = end - s->text_sent, run = 0, l;
        while (run < n && (l = srv_utf8_char_len(p + run, n - run)) > 0)
            run += l;
        if (run > 0) {
            size_t q = queue_bytes(s, (const char *)p, run);
            s->text_sent += q;
            if (q < run)
                return;
            continue;
        }
        if (queue_bytes(s, repl, 3) != 3) /* one chunk: all or nothing */
            return;
        s->text_sent++;
    }
}

/* Send what is safe of the generated text: not the start of a possible stop string, not half a
 * character. A stop string found ends the stream (returns 1). */
static int emit_text(srv_stream_t *s, int final)
{
    size_t from = s->text_sent > SRV_STOP_LEN ? s->text_sent - SRV_STOP_LEN : 0;
    int    hit  = 0;
    for (unsigned i = 0; i < s->req.n_stop; i++) {
        size_t      sl = strlen(s->req.stop[i]);
        const char *m  = memmem(s->text + from, s->text_len - from, s->req.stop[i], sl);
        if (m && (size_t)(m - s->text) < s->text_len) {
            s->text_len = (size_t)(m - s->text);
            hit         = 1;
        }
    }
    size_t end = s->text_len;
    if (!hit && !final) {
        size_t hold = 0;
        for (unsigned i = 0; i < s->req.n_stop; i++) {
            size_t sl = strlen(s->req.stop[i]);
            for (size_t k = sl - 1; k > hold; k--)
                if (k <= end - s->text_sent && memcmp(s->text + end - k, s->req.stop[i], k) == 0) {
                    hold = k;
                    break;
                }
        }
        end -= hold;
    }
    if (!final) /* a character may still be completed by the next token */
        end -= srv_utf8_partial_tail(s->text, end);
    if (end > s->text_sent) {
        queue_text(s, end);
        wake_reader(s);
    }
    return hit;
}

/* End a stream in its slot: flush, mark done, free the slot, drop the scheduler's reference. */
static void finish(srv_engine_t *e, srv_stream_t *s, srv_finish_t why)
{
    if (why != SRV_FINISH_CANCELED)
        emit_text(s, 1);
    pthread_mutex_lock(&s->lock);
    s->done   = 1;
    s->finish = why;
    pthread_mutex_unlock(&s->lock);
    wake_reader(s);
    pthread_mutex_lock(&e->lock);
    if (s->slot >= 0) {
        e->slot[s->slot] = NULL;
        e->n_active--;
    }
    pthread_mutex_unlock(&e->lock);
    s->slot = -1;
    srv_stream_put(s);
}

static void count_cancel(srv_t *srv, int why)
{
    pthread_mutex_lock(&srv->metrics.lock);
    if (why == SRV_CANCEL_DISCONNECT)
        srv->metrics.cancel_disconnect++;
    else if (why == SRV_CANCEL_STALL)
        srv->metrics.cancel_stall++;
    else
        srv->metrics.cancel_shutdown++;
    pthread_mutex_unlock(&srv->metrics.lock);
}

/* Room for another chunk: fewer than `credits` unacknowledged and the pool not dry. */
static int has_credit(srv_stream_t *s)
{
    pthread_mutex_lock(&s->lock);
    unsigned q = s->queued;
    pthread_mutex_unlock(&s->lock);
    return q < s->srv->cfg.credits && srv_pool_n_free(&s->srv->pool) > 0;
}

/* One token sampled for s: record it, stream its text, end the stream when it is done. */
static void on_token(srv_engine_t *e, srv_stream_t *s, const float *row, uint64_t now)
{
    srv_t       *srv = e->srv;
    tfab_token_t tok;
    if (tfab_sampler_sample(s->sampler, row, &tok) != TFAB_OK) {
        s->error_status = 500;
        finish(e, s, SRV_FINISH_ERROR);
        return;
    }
    pthread_mutex_lock(&srv->metrics.lock);
    if (s->t_first_ns == 0) {
        double ttft = (double)(now - s->t_arrive_ns) / 1e9;
        srv_hist_add(&srv->metrics.ttft, ttft);
        srv->metrics.ttft_window_sum += ttft;
        srv->metrics.ttft_window_n++;
        s->t_first_ns = now;
    } else {
        srv_hist_add(&srv->metrics.itl, (double)(now - s->t_last_ns) / 1e9);
    }
    s->t_last_ns = now;
    pthread_mutex_unlock(&srv->metrics.lock);
    if (tfab_vocab_is_eog(e->vocab, tok)) {
        finish(e, s, SRV_FINISH_STOP);
        return;
    }
    s->n_gen++;
    pthread_mutex_lock(&srv->metrics.lock);
    srv->metrics.tokens++;
    pthread_mutex_unlock(&srv->metrics.lock);
    char   piece[256];
    size_t plen = 0;
    if (tfab_token_piece(e->vocab, tok, 0, piece, sizeof(piece), &plen) != TFAB_OK)
        plen = 0;
    if (s->text_len + plen > s->text_cap) {
        size_t cap = s->text_cap * 2 + plen;
        char  *t   = realloc(s->text, cap);
        if (t == NULL) {
            s->error_status = 500;
            finish(e, s, SRV_FINISH_ERROR);
            return;
        }
        s->text     = t;
        s->text_cap = cap;
    }
    memcpy(s->text + s->text_len, piece, plen);
    s->text_len += plen;
    s->last = tok;
    if (emit_text(s, 0)) {
        finish(e, s, SRV_FINISH_STOP);
        return;
    }
    if (s->n_gen >= s->max_tokens || s->n_past + 1 >= e->n_ctx)
        finish(e, s, SRV_FINISH_LENGTH);
}

/* Run the batch: through tfab_model_decode (wanted rows only), or one sequence's forward. */
static tfab_status_t run_batch(srv_engine_t *e, uint32_t n, uint32_t n_rows)
{
    if (e->batched) {
        tfab_model_batch_t b = {
            .n = n, .tokens = e->b_tok, .pos = e->b_pos, .seq = e->b_seq, .want_logits = e->b_want};
        return tfab_model_decode(e->model, NULL, &b, e->logits, NULL);
    }
    tfab_status_t st = tfab_model_forward(e->model, e->b_tok, n, e->b_pos[0], e->logits);
    if (st == TFAB_OK && n_rows == 1 && n > 1) /* one slot: the wanted row is the last */
        memcpy(e->logits, e->logits + (size_t)(n - 1) * e->n_vocab, sizeof(float) * e->n_vocab);
    return st;
}

static void step(srv_engine_t *e)
{
    srv_t   *srv = e->srv;
    uint64_t now = srv_now_ns();
    uint32_t n = 0, n_rows = 0;
    int      paused = 0;
    /* decoding sequences first: one token each */
    for (uint32_t i = 0; i < e->n_slots && n < e->n_batch; i++) {
        srv_stream_t *s = e->slot[i];
        if (s == NULL)
            continue;
        int c = atomic_load(&s->cancel);
        if (c != SRV_CANCEL_NONE) {
            TFAB_DEBUG(MOD, "stream %llu canceled (%s) after %u tokens; slot %u freed",
                       (unsigned long long)s->id,
                       c == SRV_CANCEL_DISCONNECT ? "disconnect"
                       : c == SRV_CANCEL_STALL    ? "stall"
                                                  : "shutdown",
                       s->n_gen, i);
            count_cancel(srv, c);
            finish(e, s, SRV_FINISH_CANCELED);
            continue;
        }
        if (s->n_fed < s->n_prompt)
            continue;
        if (!has_credit(s)) {
            if (s->paused_since_ns == 0) {
                s->paused_since_ns = now;
                TFAB_DEBUG(MOD, "stream %llu paused: %u chunks unacknowledged",
                           (unsigned long long)s->id, srv->cfg.credits);
            } else if (now - s->paused_since_ns > (uint64_t)srv->cfg.ack_timeout_ms * 1000000ull) {
                TFAB_WARN(MOD,
                          "slow consumer: stream %llu (model '%s') took no chunk for %u ms "
                          "with %u unacknowledged; canceled",
                          (unsigned long long)s->id, e->name, srv->cfg.ack_timeout_ms,
                          srv->cfg.credits);
                pthread_mutex_lock(&srv->metrics.lock);
                srv->metrics.slow_consumers++;
                pthread_mutex_unlock(&srv->metrics.lock);
                count_cancel(srv, SRV_CANCEL_STALL);
                finish(e, s, SRV_FINISH_CANCELED);
                continue;
            }
            paused = 1;
            continue;
        }
        s->paused_since_ns   = 0;
        e->b_tok[n]          = s->last;
        e->b_pos[n]          = s->n_past;
        e->b_seq[n]          = i;
        e->b_want[n]         = 1;
        e->b_owner[n_rows++] = s;
        n++;
    }
    /* prompts in the room left */
    for (uint32_t i = 0; i < e->n_slots && n < e->n_batch; i++) {
        srv_stream_t *s = e->slot[i];
        if (s == NULL || s->n_fed >= s->n_prompt)
            continue;
        if (!e->batched && n > 0)
            break;
        uint32_t k = s->n_prompt - s->n_fed;
        if (k > e->n_batch - n)
            k = e->n_batch - n;
        for (uint32_t j = 0; j < k; j++, n++) {
            e->b_tok[n]  = s->prompt[s->n_fed + j];
            e->b_pos[n]  = s->n_fed + j;
            e->b_seq[n]  = i;
            e->b_want[n] = s->n_fed + j + 1 == s->n_prompt;
            if (e->b_want[n])
                e->b_owner[n_rows++] = s;
        }
    }
    if (n == 0) {
        if (paused) { /* wait for readers to take chunks */
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
        return;
    }
    tfab_status_t st = run_batch(e, n, n_rows);
    now              = srv_now_ns();
    atomic_fetch_add(&e->steps, 1);
    atomic_fetch_add(&e->step_tokens, n);
    if (st != TFAB_OK) { /* the caches of every sequence in the batch are now unknown */
        TFAB_ERROR(MOD, "model '%s': decode step of %u tokens failed: %s; its requests fail",
                   e->name, n, tfab_status_str(st));
        for (uint32_t j = 0; j < n; j++) {
            srv_stream_t *s = e->slot[e->b_seq[j]];
            if (s == NULL) /* finished by an earlier row of this batch */
                continue;
            s->error_status = 500;
            finish(e, s, SRV_FINISH_ERROR);
        }
        return;
    }
    /* advance every sequence in the batch, then sample the rows */
    for (uint32_t j = 0; j < n; j++) {
        srv_stream_t *s = e->slot[e->b_seq[j]];
        if (s->n_fed < s->n_prompt)
            s->n_fed++;
        s->n_past = e->b_pos[j] + 1;
    }
    for (uint32_t r = 0; r < n_rows; r++) {
        srv_stream_t *s = e->b_owner[r];
        on_token(e, s, e->logits + (size_t)r * e->n_vocab, now);
    }
}

static void *sched_main(void *arg)
{
    srv_engine_t *e   = arg;
    srv_t        *srv = e->srv;
    pthread_mutex_lock(&e->lock);
    while (!e->stop) {
        /* new sequences join between steps */
        while (e->pending_head && e->n_active < e->n_slots) {
            srv_stream_t *s = e->pending_head;
            e->pending_head = s->next;
            if (e->pending_head == NULL)
                e->pending_tail = NULL;
            e->n_pending--;
            s->next    = NULL;
            uint32_t i = 0;
            while (e->slot[i])
                i++;
            s->slot    = (int)i;
            e->slot[i] = s;
            e->n_active++;
            s->t_slot_ns = srv_now_ns();
            pthread_mutex_lock(&srv->metrics.lock);
            srv_hist_add(&srv->metrics.queue, (double)(s->t_slot_ns - s->t_arrive_ns) / 1e9);
            srv->metrics.prompt_tokens += s->n_prompt;
            pthread_mutex_unlock(&srv->metrics.lock);
        }
        /* a queued stream canceled before it got a slot leaves the queue now */
        for (srv_stream_t **pp = &e->pending_head; *pp;) {
            srv_stream_t *s = *pp;
            int           c = atomic_load(&s->cancel);
            if (c == SRV_CANCEL_NONE) {
                pp = &s->next;
                continue;
            }
            *pp = s->next;
            if (e->pending_tail == s) {
                e->pending_tail = NULL;
                for (srv_stream_t *t = e->pending_head; t; t = t->next)
                    e->pending_tail = t;
            }
            e->n_pending--;
            pthread_mutex_unlock(&e->lock);
            count_cancel(srv, c);
            finish(e, s, SRV_FINISH_CANCELED);
            pthread_mutex_lock(&e->lock);
        }
        if (e->n_active == 0) {
            pthread_cond_wait(&e->cond, &e->lock);
            continue;
        }
        pthread_mutex_unlock(&e->lock);
        step(e);
        pthread_mutex_lock(&e->lock);
    }
    /* shutdown: everything still here ends canceled */
    while (e->pending_head) {
        srv_stream_t *s = e->pending_head;
        e->pending_head = s->next;
        pthread_mutex_unlock(&e->lock);
        count_cancel(srv, SRV_CANCEL_SHUTDOWN);
        finish(e, s, SRV_FINISH_CANCELED);
        pthread_mutex_lock(&e->lock);
    }
    e->pending_tail = NULL;
    for (uint32_t i = 0; i < e->n_slots; i++) {
        srv_stream_t *s = e->slot[i];
        if (s == NULL)
            continue;
        pthread_mutex_unlock(&e->lock);
        count_cancel(srv, SRV_CANCEL_SHUTDOWN);
        finish(e, s, SRV_FINISH_CANCELED);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}
