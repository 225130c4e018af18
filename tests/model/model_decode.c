/* model_decode.c - KV-cache and batch-invariance check: for a model file and n tokens, the
 * logits of every token must be bit-identical whatever batch it runs in - one prefill of all n,
 * one-token decode steps, batches of 3, 5, 8 and 64 - with 1 and 2 threads (the gemm kernels'
 * fixed per-element order, kernels.h), and as an op of a compute stream through
 * tfab_stream_parallel_for. Prints the max differences; exit 1 on mismatch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include <tfab/model.h>
#include <tfab/stream.h>

typedef struct stream_job {
    tfab_model_t  *m;
    const int32_t *tok;
    uint32_t       n;
    float         *logits;
} stream_job_t;

static tfab_status_t stream_forward(tfab_stream_ctx_t *ctx, void *arg)
{
    stream_job_t *j = arg;
    return tfab_model_forward_ctx(j->m, ctx, j->tok, j->n, 0, j->logits);
}

/* prefill on a 2-worker stream; 0 on success */
static int stream_prefill(const char *path, const int32_t *tok, uint32_t n, float *logits)
{
    tfab_stream_params_t sp = {.field_mask = TFAB_STREAM_PARAM_N_WORKERS, .n_workers = 2};
    tfab_stream_t       *s;
    if (tfab_stream_create(&sp, &s) != TFAB_OK)
        return 1;
    tfab_model_params_t mp = {.field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                                            TFAB_MODEL_PARAM_PARALLEL_FOR,
                              .path         = path,
                              .n_ctx        = n,
                              .n_batch      = n,
                              .parallel_for = tfab_stream_parallel_for};
    tfab_model_t       *m;
    int                 rc = 1;
    if (tfab_model_create(&mp, &m) == TFAB_OK) {
        stream_job_t j = {m, tok, n, logits};
        if (tfab_stream_enqueue(s, stream_forward, &j) == TFAB_OK &&
            tfab_stream_synchronize(s) == TFAB_OK)
            rc = 0;
        tfab_model_destroy(m);
    }
    tfab_stream_destroy(s);
    return rc;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* logits of tok[0..n) run in chunks of chunk tokens (positions 0..n) into out; 0 on success */
static int run_chunked(tfab_model_t *m, const int32_t *tok, uint32_t n, uint32_t chunk, float *out)
{
    uint32_t V = tfab_model_config(m)->n_vocab;
    for (uint32_t i = 0; i < n; i += chunk) {
        uint32_t cnt = n - i < chunk ? n - i : chunk;
        if (tfab_model_forward(m, tok + i, cnt, i, out + (size_t)i * V) != TFAB_OK)
            return 1;
    }
    return 0;
}

static tfab_model_t *open_model(const char *path, uint32_t n, unsigned threads)
{
    tfab_model_params_t params = {.field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                                                TFAB_MODEL_PARAM_N_THREADS,
                                  .path      = path,
                                  .n_ctx     = n,
                                  .n_batch   = n,
                                  .n_threads = threads};
    tfab_model_t       *m;
    return tfab_model_create(&params, &m) == TFAB_OK ? m : NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: model_decode MODEL N_TOKENS\n");
        return 2;
    }
    uint32_t      n = (uint32_t)atoi(argv[2]);
    tfab_model_t *m = n ? open_model(argv[1], n, 2) : NULL;
    if (m == NULL)
        return 1;
    uint32_t V   = tfab_model_config(m)->n_vocab;
    int32_t *tok = malloc(n * sizeof(int32_t));
    float   *a = malloc((size_t)n * V * 4), *c = malloc((size_t)n * V * 4);
    for (uint32_t i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 2654435761u + 17) % V);
    int rc = 1;
    if (tfab_model_forward(m, tok, n, 0, a) != TFAB_OK)
        goto out;
    /* every batch size and both thread counts: bit-identical logits per token */
    static const uint32_t chunks[] = {1, 3, 5, 8, 64};
    float                 worst    = 0;
    unsigned              runs     = 0;
    for (unsigned threads = 1; threads <= 2; threads++) {
        tfab_model_t *mt = threads == 2 ? m : open_model(argv[1], n, threads);
        if (mt == NULL)
            goto out;
        for (size_t ci = 0; ci < sizeof(chunks) / sizeof(chunks[0]); ci++) {
            if (run_chunked(mt, tok, n, chunks[ci], c) != 0) {
                if (mt != m)
                    tfab_model_destroy(mt);
                goto out;
            }
            float d = max_diff(a, c, (size_t)n * V);
            if (d != 0.0f)
                printf("%u threads, batches of %u: logits differ from one batch by %g\n", threads,
                       chunks[ci], d);
            worst = fmaxf(worst, d);
            runs++;
        }
        if (mt != m)
            tfab_model_destroy(mt);
    }
    /* a sanity check that the cache matters: the last row differs from a fresh 1-token run */
    float *fresh = malloc((size_t)V * 4);
    if (tfab_model_forward(m, tok + n - 1, 1, 0, fresh) != TFAB_OK)
        goto out;
    float d3 = max_diff(fresh, a + (size_t)(n - 1) * V, V);
    free(fresh);
    if (stream_prefill(argv[1], tok, n, c) != 0)
        goto out;
    float d4 = max_diff(a, c, (size_t)n * V);
    printf("%u tokens: batches of 1, 3, 5, 8, 64 with 1 and 2 threads vs one batch: max %g over "
           "%u runs; on a stream vs prefill %g (no-context differs by %g)\n",
           n, worst, runs, d4, d3);
    rc = worst == 0.0f && d4 == 0.0f && d3 > 1e-3f ? 0 : 1;
out:
    free(tok);
    free(a);
    free(c);
    tfab_model_destroy(m);
    return rc;
}
