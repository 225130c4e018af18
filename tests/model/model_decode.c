/* model_decode.c - KV-cache check: for a model file and n tokens, full prefill, one-token decode
 * steps and prefill in chunks of 5 must give the same logits (the same kernels run in the same
 * order, so bit-identical); so must a prefill run as an op of a compute stream through
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

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: model_decode MODEL N_TOKENS\n");
        return 2;
    }
    uint32_t            n      = (uint32_t)atoi(argv[2]);
    tfab_model_params_t params = {.field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                                                TFAB_MODEL_PARAM_N_THREADS,
                                  .path      = argv[1],
                                  .n_ctx     = n,
                                  .n_batch   = n,
                                  .n_threads = 2};
    tfab_model_t       *m;
    if (n == 0 || tfab_model_create(&params, &m) != TFAB_OK)
        return 1;
    uint32_t V   = tfab_model_config(m)->n_vocab;
    int32_t *tok = malloc(n * sizeof(int32_t));
    float   *a = malloc((size_t)n * V * 4), *b = malloc((size_t)n * V * 4),
          *c = malloc((size_t)n * V * 4);
    for (uint32_t i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 2654435761u + 17) % V);
    int rc = 1;
    if (tfab_model_forward(m, tok, n, 0, a) != TFAB_OK)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        if (tfab_model_forward(m, tok + i, 1, i, b + (size_t)i * V) != TFAB_OK)
            goto out;
    for (uint32_t i = 0; i < n; i += 5) {
        uint32_t cnt = n - i < 5 ? n - i : 5;
        if (tfab_model_forward(m, tok + i, cnt, i, c + (size_t)i * V) != TFAB_OK)
            goto out;
    }
    float d1 = max_diff(a, b, (size_t)n * V), d2 = max_diff(a, c, (size_t)n * V);
    /* a sanity check that the cache matters: the last row differs from a fresh 1-token run */
    float *fresh = malloc((size_t)V * 4);
    if (tfab_model_forward(m, tok + n - 1, 1, 0, fresh) != TFAB_OK)
        goto out;
    float d3 = max_diff(fresh, a + (size_t)(n - 1) * V, V);
    free(fresh);
    if (stream_prefill(argv[1], tok, n, c) != 0)
        goto out;
    float d4 = max_diff(a, c, (size_t)n * V);
    printf("%u tokens: decode vs prefill %g, chunked vs prefill %g, on a stream vs prefill %g "
           "(no-context differs by %g)\n",
           n, d1, d2, d4, d3);
    rc = d1 == 0.0f && d2 == 0.0f && d4 == 0.0f && d3 > 1e-3f ? 0 : 1;
out:
    free(tok);
    free(a);
    free(b);
    free(c);
    tfab_model_destroy(m);
    return rc;
}
