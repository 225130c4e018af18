/* model_split.c - the batch API, pipeline stages and tensor parallelism against one whole model:
 * a batch schedule that mixes 3 sequences at different positions (chunks of varying size,
 * some tokens without logits) must give logits bit-identical to each sequence prefilled alone;
 * so must the same schedule through chained stages, through tensor-parallel ranks (threads in
 * this process, an allgather over a pthread barrier), and through both at once. Then bad
 * parameters must fail with their named error.
 * Usage: model_split MODEL TP_SIZES   (e.g. "2,3"; sizes must divide n_head_kv)
 *        model_split MODEL --stage BEGIN END   (create that stage only and run one batch)
 * Exit 0 when everything matched. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include <tfab/model.h>

#define N_SEQ   3
#define MAX_TP  4
#define MAX_STG 3

static const char    *path;
static uint32_t       V, D, NL;
static const uint32_t len[N_SEQ] = {11, 7, 9};
static int32_t       *tok[N_SEQ];
static float         *ref[N_SEQ]; /* [len][V] each sequence prefilled alone */
static int            n_fail;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                                                     \
        fprintf(stderr, "\n");                                                                     \
        n_fail++;                                                                                  \
    } while (0)

/* ---- a tensor-parallel group of threads: allgather over a barrier ------------------------- */
typedef struct tp_group {
    pthread_barrier_t bar;
    unsigned          size;
    void             *bufs[MAX_TP];
} tp_group_t;

typedef struct tp_rank {
    tp_group_t *g;
    unsigned    rank;
} tp_rank_t;

static tfab_status_t barrier_allgather(void *arg, void *buf, size_t bytes_per_rank)
{
    tp_rank_t *r        = arg;
    r->g->bufs[r->rank] = buf;
    pthread_barrier_wait(&r->g->bar);
    for (unsigned k = 0; k < r->g->size; k++)
        if (k != r->rank)
            memcpy((char *)buf + k * bytes_per_rank, (char *)r->g->bufs[k] + k * bytes_per_rank,
                   bytes_per_rank);
    pthread_barrier_wait(&r->g->bar); /* nobody reuses its buffer before all have read it */
    return TFAB_OK;
}

static tfab_model_t *create(uint32_t n_seq, uint32_t lb, uint32_t le, unsigned tp_rank,
                            unsigned tp_size, tp_rank_t *tp, tfab_status_t *st_p)
{
    tfab_model_params_t p = {.field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                                           TFAB_MODEL_PARAM_N_THREADS | TFAB_MODEL_PARAM_N_SEQ |
                                           TFAB_MODEL_PARAM_LAYERS | TFAB_MODEL_PARAM_TP,
                             .path         = path,
                             .n_ctx        = 16,
                             .n_batch      = 16,
                             .n_threads    = 1,
                             .n_seq        = n_seq,
                             .layer_begin  = lb,
                             .layer_end    = le,
                             .tp_rank      = tp_rank,
                             .tp_size      = tp_size,
                             .tp_allgather = tp ? barrier_allgather : NULL,
                             .tp_arg       = tp};
    if (le == 0) /* the whole model */
        p.field_mask &= ~(uint64_t)TFAB_MODEL_PARAM_LAYERS;
    tfab_model_t *m  = NULL;
    tfab_status_t st = tfab_model_create(&p, &m);
    if (st_p)
        *st_p = st;
    return st == TFAB_OK ? m : NULL;
}

/* The schedule: step s takes up to 1 + (s + k) % 4 next tokens of each sequence k (rotating
 * which sequence comes first), so batches mix sequences at different positions; tokens at
 * positions = 1 mod 3 want no logits. Runs the batches through the stages and writes the
 * logits rows into out[seq][pos]; 0 on success. */
static int run_schedule(tfab_model_t **stages, unsigned n_stages, float **out)
{
    uint32_t done[N_SEQ] = {0};
    int32_t  bt[16];
    uint32_t bp[16], bs[16];
    uint8_t  bw[16];
    float   *h0 = malloc(16 * (size_t)D * 4), *h1 = malloc(16 * (size_t)D * 4);
    float   *lg = malloc(16 * (size_t)V * 4);
    int      rc = 0;
    for (unsigned step = 0; rc == 0; step++) {
        uint32_t n = 0;
        for (unsigned j = 0; j < N_SEQ; j++) {
            unsigned k    = (j + step) % N_SEQ;
            uint32_t take = 1 + (step + k) % 4;
            for (; take > 0 && done[k] < len[k]; take--, done[k]++, n++) {
                bt[n] = tok[k][done[k]];
                bp[n] = done[k];
                bs[n] = k;
                bw[n] = done[k] % 3 != 1;
            }
        }
        if (n == 0)
            break;
        const float *hin = NULL;
        for (unsigned s = 0; s < n_stages && rc == 0; s++) {
            tfab_model_batch_t b    = {.n           = n,
                                       .tokens      = s == 0 ? bt : NULL,
                                       .hidden_in   = hin,
                                       .pos         = bp,
                                       .seq         = bs,
                                       .want_logits = bw};
            float             *hout = s % 2 ? h1 : h0;
            if (tfab_model_decode(stages[s], NULL, &b, lg, hout) != TFAB_OK)
                rc = 1;
            hin = hout;
        }
        for (uint32_t i = 0, row = 0; i < n && rc == 0; i++)
            if (bw[i])
                memcpy(out[bs[i]] + (size_t)bp[i] * V, lg + (size_t)row++ * V, (size_t)V * 4);
    }
    free(h0);
    free(h1);
    free(lg);
    return rc;
}

/* out rows equal ref rows bit for bit, where logits were wanted */
static void compare(const char *what, float **out)
{
    for (unsigned k = 0; k < N_SEQ; k++)
        for (uint32_t p = 0; p < len[k]; p++) {
            if (p % 3 == 1)
                continue;
            if (memcmp(out[k] + (size_t)p * V, ref[k] + (size_t)p * V, (size_t)V * 4) != 0) {
                FAIL("%s: sequence %u position %u: logits differ from the sequence alone", what, k,
                     p);
                return;
            }
        }
    printf("%-52s bit-identical\n", what);
}

static float **alloc_out(void)
{
    float **o = calloc(N_SEQ, sizeof(float *));
    for (unsigned k = 0; k < N_SEQ; k++)
        o[k] = calloc((size_t)len[k] * V, 4);
    return o;
}

static void free_out(float **o)
{
    for (unsigned k = 0; k < N_SEQ; k++)
        free(o[k]);
    free(o);
}

/* ---- one tensor-parallel rank of a pipeline ---------------------------------------------- */
typedef struct rank_job {
    tp_rank_t       tp;
    unsigned        size, n_stages;
    const uint32_t *cuts; /* stage s = layers [cuts[s], cuts[s + 1]) */
    float         **out;
    int             rc;
} rank_job_t;

static void *rank_main(void *arg)
{
    rank_job_t   *j           = arg;
    tfab_model_t *st[MAX_STG] = {0};
    j->rc                     = 1;
    /* every rank creates all its stages before any runs: creation does not gather */
    for (unsigned s = 0; s < j->n_stages; s++)
        if ((st[s] = create(N_SEQ, j->cuts[s], j->cuts[s + 1], j->tp.rank, j->size, &j->tp,
                            NULL)) == NULL)
            goto out;
    j->rc = run_schedule(st, j->n_stages, j->out);
out:
    for (unsigned s = 0; s < j->n_stages; s++)
        tfab_model_destroy(st[s]);
    return NULL;
}

static void run_split(unsigned size, unsigned n_stages, const uint32_t *cuts)
{
    char what[96];
    int  w = snprintf(what, sizeof(what), "tp %u, stages", size);
    for (unsigned s = 0; s < n_stages; s++)
        w += snprintf(what + w, sizeof(what) - (size_t)w, " [%u,%u)", cuts[s], cuts[s + 1]);
    tp_group_t g = {.size = size};
    pthread_barrier_init(&g.bar, NULL, size);
    rank_job_t jobs[MAX_TP];
    pthread_t  th[MAX_TP];
    for (unsigned r = 0; r < size; r++) {
        jobs[r] = (rank_job_t){
            .tp = {&g, r}, .size = size, .n_stages = n_stages, .cuts = cuts, .out = alloc_out()};
        if (size > 1)
            pthread_create(&th[r], NULL, rank_main, &jobs[r]);
    }
    if (size == 1) {
        /* one rank: no allgather at all */
        tfab_model_t *st[MAX_STG] = {0};
        jobs[0].rc                = 1;
        unsigned s;
        for (s = 0; s < n_stages; s++)
            if ((st[s] = create(N_SEQ, cuts[s], cuts[s + 1], 0, 1, NULL, NULL)) == NULL)
                break;
        if (s == n_stages)
            jobs[0].rc = run_schedule(st, n_stages, jobs[0].out);
        for (s = 0; s < n_stages; s++)
            tfab_model_destroy(st[s]);
    } else {
        for (unsigned r = 0; r < size; r++)
            pthread_join(th[r], NULL);
    }
    for (unsigned r = 0; r < size; r++) {
        char rw[128];
        snprintf(rw, sizeof(rw), "%s, rank %u", what, r);
        if (jobs[r].rc != 0)
            FAIL("%s: a decode failed", rw);
        else
            compare(rw, jobs[r].out);
        free_out(jobs[r].out);
    }
    pthread_barrier_destroy(&g.bar);
}

/* ---- bad parameters ------------------------------------------------------------------------ */
static char last_err[512];
static void sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    if (level == TFAB_LOG_ERROR)
        snprintf(last_err, sizeof(last_err), "%s", line);
}

static void expect(const char *what, tfab_status_t got, tfab_status_t want, const char *msg)
{
    if (got != want || strstr(last_err, msg) == NULL)
        FAIL("%s: status %s, error '%s'; expected %s and '%s'", what, tfab_status_str(got),
             last_err, tfab_status_str(want), msg);
    else
        printf("%-52s %s: %s\n", what, tfab_status_str(got), last_err);
    last_err[0] = 0;
}

static void bad_params(uint32_t n_head_kv)
{
    tfab_status_t st;
    tp_group_t    g   = {.size = 1};
    tp_rank_t     tp  = {&g, 0};
    unsigned      bad = n_head_kv + 1;
    char          want[64];
    tfab_log_set_sink(sink, NULL);
    snprintf(want, sizeof(want), "does not divide the %u KV heads", n_head_kv);
    create(1, 0, NL, 0, bad, &tp, &st);
    expect("n_head_kv not divisible by tp_size", st, TFAB_ERR_INVALID, want);
    create(1, 0, NL, 2, 2, &tp, &st);
    expect("tp_rank >= tp_size", st, TFAB_ERR_INVALID, "need rank < size");
    if (n_head_kv % 2 == 0) {
        create(1, 0, NL, 0, 2, NULL, &st);
        expect("tp_size 2 without allgather", st, TFAB_ERR_INVALID, "without a tp_allgather");
    }
    create(1, 0, NL + 1, 0, 1, NULL, &st);
    expect("stage end beyond n_layer", st, TFAB_ERR_INVALID, "out of bounds");
    create(1, 1, 1, 0, 1, NULL, &st);
    expect("empty stage", st, TFAB_ERR_INVALID, "out of bounds");
    create(0, 0, NL, 0, 1, NULL, &st);
    expect("n_seq 0", st, TFAB_ERR_INVALID, "n_seq 0 must be");

    tfab_model_t      *m    = create(2, 0, NL, 0, 1, NULL, &st);
    int32_t            t[2] = {1, 2};
    uint32_t           p[2] = {0, 0}, s[2] = {0, 2};
    float             *h  = calloc(2 * (size_t)D, 4);
    float             *lg = calloc(2 * (size_t)V, 4);
    tfab_model_batch_t b  = {.n = 2, .tokens = t, .pos = p, .seq = s};
    expect("slot >= n_seq", tfab_model_decode(m, NULL, &b, lg, NULL), TFAB_ERR_RANGE,
           "sequence slot 2 out of range (n_seq 2)");
    s[1] = 1;
    p[1] = 16;
    expect("position beyond n_ctx", tfab_model_decode(m, NULL, &b, lg, NULL), TFAB_ERR_RANGE,
           "position 16 beyond the context");
    p[1]        = 0;
    b.hidden_in = h;
    expect("tokens and hidden_in to the first stage", tfab_model_decode(m, NULL, &b, lg, NULL),
           TFAB_ERR_INVALID, "first stage takes token ids");
    b.hidden_in = NULL;
    b.n         = 17;
    expect("batch above n_batch", tfab_model_decode(m, NULL, &b, lg, NULL), TFAB_ERR_RANGE,
           "must be 1..n_batch (16)");
    tfab_model_destroy(m);
    if (NL > 1) {
        m = create(1, 1, NL, 0, 1, NULL, &st);
        b = (tfab_model_batch_t){.n = 2, .tokens = t, .pos = p};
        expect("tokens to a later stage", tfab_model_decode(m, NULL, &b, lg, NULL),
               TFAB_ERR_INVALID, "later stage takes hidden_in");
        uint32_t lb, le;
        tfab_model_layers(m, &lb, &le);
        if (lb != 1 || le != NL || tfab_model_n_seq(m) != 1)
            FAIL("tfab_model_layers: [%u, %u), n_seq %u", lb, le, tfab_model_n_seq(m));
        tfab_model_destroy(m);
    }
    free(h);
    free(lg);
    tfab_log_set_sink(NULL, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: model_split MODEL TP_SIZES | MODEL --stage BEGIN END\n");
        return 2;
    }
    path = argv[1];
    if (strcmp(argv[2], "--stage") == 0 && argc == 5) {
        tfab_model_t *m =
            create(1, (uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]), 0, 1, NULL, NULL);
        if (m == NULL)
            return 1;
        const tfab_model_config_t *c    = tfab_model_config(m);
        int32_t                    t[2] = {1, 2};
        uint32_t                   p[2] = {0, 1};
        float                     *h    = calloc(2 * (size_t)c->n_embd, 4);
        float                     *lg   = calloc(2 * (size_t)c->n_vocab, 4);
        uint32_t                   lb, le;
        tfab_model_layers(m, &lb, &le);
        tfab_model_batch_t b = {
            .n = 2, .tokens = lb == 0 ? t : NULL, .hidden_in = lb == 0 ? NULL : h, .pos = p};
        tfab_status_t st = tfab_model_decode(m, NULL, &b, lg, h);
        printf("stage [%u, %u) of %u layers: %s\n", lb, le, c->n_layer, tfab_status_str(st));
        free(h);
        free(lg);
        tfab_model_destroy(m);
        return st == TFAB_OK ? 0 : 1;
    }

    /* the reference: each sequence alone, prefilled in one call on a whole model */
    tfab_model_t *m = create(1, 0, 0, 0, 1, NULL, NULL);
    if (m == NULL)
        return 1;
    const tfab_model_config_t *c = tfab_model_config(m);
    V                            = c->n_vocab;
    D                            = c->n_embd;
    NL                           = c->n_layer;
    uint32_t n_head_kv           = c->n_head_kv;
    for (unsigned k = 0; k < N_SEQ; k++) {
        tok[k] = malloc(len[k] * sizeof(int32_t));
        ref[k] = malloc((size_t)len[k] * V * 4);
        for (uint32_t i = 0; i < len[k]; i++)
            tok[k][i] = (int32_t)(((i + 7 * k) * 2654435761u + 17 * k + 3) % V);
        if (tfab_model_forward(m, tok[k], len[k], 0, ref[k]) != TFAB_OK)
            return 1;
    }
    tfab_model_destroy(m);
    printf("%s: %u layers, embd %u, vocab %u, kv heads %u\n", path, NL, D, V, n_head_kv);

    uint32_t whole[2] = {0, NL};
    run_split(1, 1, whole); /* the batch API alone: 3 sequences mixed */
    if (NL >= 2) {
        for (uint32_t k = 1; k < NL; k++) {
            uint32_t cuts[3] = {0, k, NL};
            run_split(1, 2, cuts);
        }
    }
    if (NL >= 3) {
        uint32_t cuts[4] = {0, 1, 2, NL};
        run_split(1, 3, cuts);
    }
    for (const char *s = argv[2]; *s;) {
        char    *end;
        unsigned size = (unsigned)strtoul(s, &end, 10);
        if (end == s || (*end != ',' && *end != 0) || size < 1 || size > MAX_TP) {
            fprintf(stderr, "model_split: bad TP_SIZES '%s' (a list like 2,3 of 1..%d)\n", argv[2],
                    MAX_TP);
            return 2;
        }
        s = *end ? end + 1 : end;
        if (size < 2)
            continue;
        run_split(size, 1, whole);
        if (NL >= 2) {
            uint32_t cuts[3] = {0, NL / 2, NL};
            run_split(size, 2, cuts); /* hybrid: pipeline stages, each tensor-parallel */
        }
    }
    bad_params(n_head_kv);
    for (unsigned k = 0; k < N_SEQ; k++) {
        free(tok[k]);
        free(ref[k]);
    }
    if (n_fail)
        fprintf(stderr, "%d checks failed\n", n_fail);
    return n_fail ? 1 : 0;
}
