/* bench_decode.c - decode and prefill speed: one-token forward steps on a model file, reported
 * as tokens/s and as GB/s of weights streamed (every matrix is read once per token), next to a
 * STREAM-style multi-threaded read of a buffer of the same size (the attainable bandwidth, the
 * roofline of decode); prefill is one forward of P tokens at position 0 without logits.
 * Usage: bench_decode MODEL [threads] [steps] [P]
 * The last line is machine-readable:
 *   BENCH decode_tps=... decode_gbs=... prefill_tps=... read_gbs=... bytes=... */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tfab/gguf.h>
#include <tfab/model.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct rd {
    const uint64_t *p;
    size_t          n;
    uint64_t        sum;
} rd_t;

/* STREAM-style read: sum of the buffer in 64-byte vectors, 4 independent accumulators (AVX2
 * when the CPU has it: 32-byte loads; otherwise the compiler's baseline vectors) */
typedef uint64_t v8u64 __attribute__((vector_size(64)));

#define READ_BODY                                                                                  \
    const v8u64 *v  = (const v8u64 *)r->p;                                                         \
    v8u64        s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};                                           \
    size_t       nv = r->n / 8;                                                                    \
    for (size_t i = 0; i + 4 <= nv; i += 4) {                                                      \
        s0 += v[i];                                                                                \
        s1 += v[i + 1];                                                                            \
        s2 += v[i + 2];                                                                            \
        s3 += v[i + 3];                                                                            \
    }                                                                                              \
    v8u64 s = s0 + s1 + s2 + s3;                                                                   \
    r->sum  = s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];

__attribute__((target("avx2"))) static void read_avx2(rd_t *r)
{
    READ_BODY
}

static void read_plain(rd_t *r)
{
    READ_BODY
}

static void *read_part(void *arg)
{
    if (__builtin_cpu_supports("avx2"))
        read_avx2(arg);
    else
        read_plain(arg);
    return NULL;
}

/* GB/s of reading bytes of (already faulted) memory with n threads, best of 5 */
static double read_bw(size_t bytes, unsigned n)
{
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 64, bytes) != 0)
        return 0;
    memset(buf, 1, bytes);
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        pthread_t tid[256];
        rd_t      parts[256];
        size_t    per = bytes / 8 / n;
        double    t0  = now();
        for (unsigned i = 0; i < n; i++) {
            parts[i] = (rd_t){buf + i * per, per, 0};
            pthread_create(&tid[i], NULL, read_part, &parts[i]);
        }
        for (unsigned i = 0; i < n; i++)
            pthread_join(tid[i], NULL);
        double gbs = bytes / (now() - t0) / 1e9;
        best       = gbs > best ? gbs : best;
    }
    free(buf);
    return best;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_decode MODEL [threads] [steps] [prefill_tokens]\n");
        return 2;
    }
    unsigned threads = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
    unsigned steps   = argc > 3 ? (unsigned)atoi(argv[3]) : 8;
    unsigned ptok    = argc > 4 ? (unsigned)atoi(argv[4]) : 64;
    if (threads == 0 || threads > 256 || steps == 0 || ptok == 0 || ptok > 4096)
        return 2;
    /* bytes streamed per token: every matrix except the embedding table (one row), plus the
     * output matrix (token_embd again when tied) */
    tfab_gguf_t *g;
    if (tfab_gguf_open(argv[1], &g) != TFAB_OK)
        return 1;
    uint64_t bytes = 0;
    int      tied  = tfab_gguf_find_tensor(g, "output.weight") == NULL;
    for (uint64_t i = 0; i < tfab_gguf_n_tensors(g); i++) {
        const tfab_gguf_tensor_t *t = tfab_gguf_tensor(g, i);
        if (t->n_dims == 2 && (strcmp(t->name, "token_embd.weight") != 0 || tied))
            bytes += t->size;
    }
    tfab_gguf_close(g);

    tfab_model_params_t params = {.field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                                                TFAB_MODEL_PARAM_N_THREADS,
                                  .path      = argv[1],
                                  .n_ctx     = ptok > steps + 1 ? ptok : steps + 1,
                                  .n_batch   = ptok,
                                  .n_threads = threads};
    tfab_model_t       *m;
    if (tfab_model_create(&params, &m) != TFAB_OK)
        return 1;
    const tfab_model_config_t *c      = tfab_model_config(m);
    float                     *logits = malloc((size_t)c->n_vocab * sizeof(float));
    int32_t                    tok    = 1;
    /* first step faults the mapping in */
    if (tfab_model_forward(m, &tok, 1, 0, logits) != TFAB_OK)
        return 1;
    double best = 1e30, total = 0;
    for (unsigned s = 1; s <= steps; s++) {
        double t0 = now();
        if (tfab_model_forward(m, &tok, 1, s, logits) != TFAB_OK)
            return 1;
        double dt = now() - t0;
        total += dt;
        best = dt < best ? dt : best;
        tok  = (int32_t)((tok * 7919u + 13) % c->n_vocab);
    }
    /* prefill: one forward of ptok tokens at position 0 without logits (llama-bench's pp
     * computes the logits of the last token only; tfab_model_forward has all or none) */
    uint32_t nb    = tfab_model_n_batch(m);
    int32_t *ptoks = malloc(nb * sizeof(int32_t));
    for (uint32_t i = 0; i < nb; i++)
        ptoks[i] = (int32_t)((i * 7919u + 13) % c->n_vocab);
    double pbest = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        if (tfab_model_forward(m, ptoks, nb, 0, NULL) != TFAB_OK)
            return 1;
        double dt = now() - t0;
        pbest     = dt < pbest ? dt : pbest;
    }
    free(ptoks);
    double mem = read_bw(bytes, threads);
    printf("%s: %s weights, %.1f MB streamed per token, %u threads, kernels %s\n", argv[1],
           tfab_dtype_name(c->weight_type), bytes / 1e6, threads, tfab_model_kernels(m));
    printf("decode: %.2f ms/token mean, %.2f ms best -> %.1f tokens/s, %.2f GB/s of weights "
           "(best %.2f GB/s)\n",
           total / steps * 1e3, best * 1e3, steps / total, bytes / (total / steps) / 1e9,
           bytes / best / 1e9);
    printf("prefill: %u tokens in %.1f ms (best of 3, no logits) -> %.0f tokens/s\n", nb,
           pbest * 1e3, nb / pbest);
    printf("plain memory read of the same size with %u threads: %.2f GB/s -> decode at %.0f%% "
           "of it\n",
           threads, mem, 100.0 * bytes / (total / steps) / 1e9 / mem);
    printf("BENCH decode_tps=%.2f decode_gbs=%.2f prefill_tps=%.1f read_gbs=%.2f bytes=%llu\n",
           steps / total, bytes / (total / steps) / 1e9, nb / pbest, mem,
           (unsigned long long)bytes);
    free(logits);
    tfab_model_destroy(m);
    return 0;
}
