/* cmd_cluster.c - distributed inference from the command line: `tfab node` (join a coordinator
 * and serve a pipeline stage) and `tfab run --cluster FILE` (the coordinator: tokenize, run
 * the pipeline, sample). Under Slurm or an MPI launcher every rank runs the same command and
 * takes its role from the environment (rank 0 coordinates, the others serve). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tfab/cluster.h>
#include <tfab/log.h>
#include <tfab/sample.h>
#include <tfab/tokenizer.h>
#include <tfab/units.h>
#include "cli.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int num(const char *cmd, const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno    = 0;
    double x = v ? strtod(v, &end) : 0;
    if (v == NULL || end == v || *end != '\0' || errno || x < lo || x > hi) {
        fprintf(stderr, "tfab %s: %s needs a number from %g to %g, got '%s'\n", cmd, opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* The rank from --rank or a launcher's environment; -1 when neither says. */
static int launcher_rank(const char *cmd, int rank_opt, const tfab_cluster_t *cl, int *rank_p)
{
    int         rank = rank_opt, size = 0;
    const char *which = "--rank";
    char        err[256];
    if (rank < 0) {
        int got = tfab_cluster_env_rank(&rank, &size, &which, err, sizeof(err));
        if (got < 0) {
            fprintf(stderr, "tfab %s: %s\n", cmd, err);
            return -1;
        }
        if (got == 0)
            rank = -1;
    }
    if (cl && size && (unsigned)size != cl->n_ranks) {
        fprintf(stderr,
                "tfab %s: the launcher runs %d ranks but %s lists %u (coordinator and "
                "nodes)\n",
                cmd, size, cl->name, cl->n_ranks);
        return -1;
    }
    if (cl && rank >= (int)cl->n_ranks) {
        fprintf(stderr, "tfab %s: rank %d (%s) but %s lists %u ranks\n", cmd, rank, which, cl->name,
                cl->n_ranks);
        return -1;
    }
    *rank_p = rank;
    return 0;
}

static const char *cluster_token(const tfab_cluster_t *cl, const char *opt)
{
    if (opt)
        return opt;
    const char *env = getenv("TFAB_CLUSTER_TOKEN");
    if (env && *env)
        return env;
    return cl && cl->token[0] ? cl->token : NULL;
}

static uint64_t node_pool_bytes; /* --pool-size of tfab node */

static int serve_as_node(const char *cmd, const tfab_cluster_t *cl, int rank, const char *coord,
                         const char *listen, const char *token, const char *model, unsigned threads)
{
    if (token == NULL) {
        fprintf(stderr,
                "tfab %s: no cluster token (--token, TFAB_CLUSTER_TOKEN or 'token' in "
                "the cluster file)\n",
                cmd);
        return 2;
    }
    tfab_node_params_t np = {.coordinator = coord,
                             .listen      = listen,
                             .token       = token,
                             .model       = model,
                             .rank        = rank,
                             .n_threads   = threads,
                             .backend     = cl ? cl->backend : NULL,
                             .pool_bytes  = (size_t)node_pool_bytes};
    tfab_status_t      st = tfab_node_run(&np);
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab %s: node %s stopped: %s\n", cmd, listen, tfab_status_str(st));
        return 1;
    }
    return 0;
}

int tfab_cli_node(int argc, char **argv)
{
    const char *coord = NULL, *listen = NULL, *token = NULL, *model = NULL, *cluster = NULL;
    const char *backend = NULL;
    double      threads = 0, rank_d = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: tfab node --coordinator IP:PORT --listen IP:PORT [--token T] [options]\n"
                   "       tfab node --cluster FILE [--rank R] [options]\n"
                   "\n"
                   "Joins the coordinator of a cluster (tfab run --cluster on rank 0), loads the\n"
                   "pipeline stage it assigns (only those layers of this host's model copy) and\n"
                   "serves it until the coordinator stops. With --cluster, the coordinator,\n"
                   "token and this node's address come from the file, by rank (--rank, or\n"
                   "SLURM_PROCID, OMPI_COMM_WORLD_RANK, PMI_RANK, TFAB_RANK).\n"
                   "\n"
                   "  --token T       cluster token (or TFAB_CLUSTER_TOKEN, or the file's)\n"
                   "  --model PATH    this host's copy (default: the coordinator's path)\n"
                   "  --threads N     compute threads (default: online CPUs)\n"
                   "  --backend B     tcp (default) or verbs\n"
                   "  --pool-size S   message-buffer pool (default 32MiB)\n");
            return 0;
        }
        if (v == NULL) {
            fprintf(stderr, "tfab node: %s needs a value (see tfab node --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--coordinator") == 0)
            coord = v;
        else if (strcmp(a, "--listen") == 0)
            listen = v;
        else if (strcmp(a, "--token") == 0)
            token = v;
        else if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--cluster") == 0)
            cluster = v;
        else if (strcmp(a, "--backend") == 0)
            backend = v;
        else if (strcmp(a, "--pool-size") == 0) {
            if (tfab_size_parse(v, &node_pool_bytes) != TFAB_OK || node_pool_bytes < (1u << 20)) {
                fprintf(stderr, "tfab node: --pool-size '%s': a size of at least 1MiB\n", v);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (num("node", a, v, 1, 1024, &threads))
                return 2;
        } else if (strcmp(a, "--rank") == 0) {
            if (num("node", a, v, 1, TFAB_CLUSTER_MAX_RANKS - 1, &rank_d))
                return 2;
        } else {
            fprintf(stderr, "tfab node: unknown option '%s' (see tfab node --help)\n", a);
            return 2;
        }
    }
    static tfab_cluster_t cl;
    int                   rank = (int)rank_d;
    if (cluster) {
        char err[512];
        if (tfab_cluster_load(cluster, &cl, err, sizeof(err)) != TFAB_OK) {
            fprintf(stderr, "tfab node: %s\n", err);
            return 2;
        }
        if (backend)
            snprintf(cl.backend, sizeof(cl.backend), "%s", backend);
        if (launcher_rank("node", rank, &cl, &rank) != 0)
            return 2;
        if (rank < 1 && listen == NULL) {
            fprintf(stderr,
                    "tfab node: which node is this? give --rank (1..%u), run under a "
                    "launcher, or give --listen\n",
                    cl.n_ranks - 1);
            return 2;
        }
        coord  = coord ? coord : cl.ranks[0].address;
        listen = listen ? listen : cl.ranks[rank].address;
    } else {
        if (coord == NULL || listen == NULL) {
            fprintf(stderr, "tfab node: --coordinator and --listen are required without "
                            "--cluster (see tfab node --help)\n");
            return 2;
        }
        if (launcher_rank("node", rank, NULL, &rank) != 0)
            return 2;
        snprintf(cl.backend, sizeof(cl.backend), "%s", backend ? backend : "tcp");
    }
    return serve_as_node("node", &cl, rank, coord, listen, cluster_token(&cl, token), model,
                         (unsigned)threads);
}

/* `tfab run --cluster FILE ...` */
int tfab_cli_run_cluster(int argc, char **argv)
{
    const char *cluster = NULL, *model = NULL, *prompt = NULL, *dump = NULL;
    const char *token = NULL, *ids = NULL;
    double      n_gen = 64, threads = 0, ctx = 0, seed = 42, temp = 0.8, rank_d = -1;
    double      top_k = 40, top_p = 0.95, min_p = 0.05;
    int         print_ids = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int         bad = 0;
        if (strcmp(a, "--cluster") == 0 && v)
            cluster = argv[++i];
        else if (strcmp(a, "--model") == 0 && v)
            model = argv[++i];
        else if (strcmp(a, "--token") == 0 && v)
            token = argv[++i];
        else if (strcmp(a, "--dump-logits") == 0 && v)
            dump = argv[++i];
        else if (strcmp(a, "--prompt-ids") == 0 && v)
            ids = argv[++i];
        else if (strcmp(a, "--print-ids") == 0)
            print_ids = 1;
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--tokens") == 0)
            bad = num("run", a, v, 0, 1e6, &n_gen), i++;
        else if (strcmp(a, "--temp") == 0)
            bad = num("run", a, v, 0, 100, &temp), i++;
        else if (strcmp(a, "--top-k") == 0)
            bad = num("run", a, v, 0, 1e9, &top_k), i++;
        else if (strcmp(a, "--top-p") == 0)
            bad = num("run", a, v, 0, 1, &top_p), i++;
        else if (strcmp(a, "--min-p") == 0)
            bad = num("run", a, v, 0, 1, &min_p), i++;
        else if (strcmp(a, "--seed") == 0)
            bad = num("run", a, v, 0, 1e18, &seed), i++;
        else if (strcmp(a, "--threads") == 0)
            bad = num("run", a, v, 1, 1024, &threads), i++;
        else if (strcmp(a, "--ctx") == 0)
            bad = num("run", a, v, 8, 1 << 20, &ctx), i++;
        else if (strcmp(a, "--rank") == 0)
            bad = num("run", a, v, 0, TFAB_CLUSTER_MAX_RANKS - 1, &rank_d), i++;
        else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr,
                    "tfab run: option '%s' is not supported with --cluster (see tfab "
                    "run --help)\n",
                    a);
            return 2;
        } else if (prompt == NULL)
            prompt = a;
        else {
            fprintf(stderr, "tfab run: one prompt only (quote it)\n");
            return 2;
        }
        if (bad)
            return 2;
    }
    static tfab_cluster_t cl;
    char                  err[512];
    if (cluster == NULL) {
        fprintf(stderr, "tfab run: --cluster needs a file\n");
        return 2;
    }
    if (tfab_cluster_load(cluster, &cl, err, sizeof(err)) != TFAB_OK) {
        fprintf(stderr, "tfab run: %s\n", err);
        return 2;
    }
    int rank;
    if (launcher_rank("run", (int)rank_d, &cl, &rank) != 0)
        return 2;
    const char *tok = cluster_token(&cl, token);
    if (rank > 0) /* a launcher started every rank with this command: serve a stage */
        return serve_as_node("run", &cl, rank, cl.ranks[0].address, cl.ranks[rank].address, tok,
                             model, (unsigned)threads);
    if ((prompt == NULL) == (ids == NULL)) {
        fprintf(stderr, "tfab run: give a prompt or --prompt-ids ID,ID,... (one of them)\n");
        return 2;
    }
    if (model == NULL)
        model = cl.model[0] ? cl.model : NULL;
    if (model == NULL) {
        fprintf(stderr, "tfab run: no model: give --model or 'model PATH' in %s\n", cluster);
        return 2;
    }
    if (tok == NULL && cl.n_ranks > 1) {
        fprintf(stderr,
                "tfab run: no cluster token (--token, TFAB_CLUSTER_TOKEN or 'token' in "
                "%s)\n",
                cluster);
        return 2;
    }
    if (tok != cl.token)
        snprintf(cl.token, sizeof(cl.token), "%s", tok ? tok : "");

    int             rc      = 1;
    tfab_pipe_t    *pipe    = NULL;
    tfab_vocab_t   *vocab   = NULL;
    tfab_sampler_t *sampler = NULL;
    tfab_token_t   *toks    = NULL;
    float          *logits  = NULL;
    FILE           *df      = NULL;
    double          t_load  = now_s();
    if (prompt && tfab_vocab_load_gguf_file(model, &vocab) != TFAB_OK) {
        fprintf(stderr,
                "tfab run: %s: no usable tokenizer in its metadata (--prompt-ids works "
                "without one)\n",
                model);
        goto out;
    }
    tfab_pipe_params_t pp = {
        .cluster = &cl, .model = model, .n_ctx = (uint32_t)ctx, .n_threads = (unsigned)threads};
    if (tfab_pipe_create(&pp, &pipe) != TFAB_OK)
        goto out; /* logged */
    t_load         = now_s() - t_load;
    uint32_t n_ctx = tfab_pipe_n_ctx(pipe), V = tfab_pipe_n_vocab(pipe);
    size_t   n_prompt = 0;
    if ((toks = malloc(sizeof(*toks) * n_ctx)) == NULL ||
        (logits = malloc(sizeof(float) * V)) == NULL)
        goto out;
    tfab_status_t st = TFAB_OK;
    if (prompt) {
        st = tfab_tokenize(vocab, prompt, strlen(prompt), TFAB_ENCODE_ADD_SPECIAL, toks, n_ctx,
                           &n_prompt);
    } else {
        for (const char *q = ids; *q && st == TFAB_OK;) {
            char *end;
            long  id = strtol(q, &end, 10);
            if (end == q || id < 0 || (uint32_t)id >= V || (*end != ',' && *end != '\0')) {
                fprintf(stderr, "tfab run: --prompt-ids: '%s' is not a list of ids below %u\n", ids,
                        V);
                goto out;
            }
            if (n_prompt == n_ctx)
                st = TFAB_ERR_RANGE;
            else
                toks[n_prompt++] = (tfab_token_t)id;
            q = *end ? end + 1 : end;
        }
    }
    if (st != TFAB_OK || n_prompt == 0) {
        fprintf(stderr, "tfab run: the prompt is %s tokens, the context holds %u\n",
                st == TFAB_ERR_RANGE ? "more than" : "not", n_ctx);
        goto out;
    }
    if (n_prompt + (size_t)n_gen > n_ctx)
        n_gen = (double)(n_ctx - n_prompt);
    tfab_sampler_params_t sp = {.field_mask = TFAB_SAMPLER_PARAM_TEMPERATURE |
                                              TFAB_SAMPLER_PARAM_TOP_K | TFAB_SAMPLER_PARAM_TOP_P |
                                              TFAB_SAMPLER_PARAM_MIN_P | TFAB_SAMPLER_PARAM_SEED,
                                .temperature = (float)temp,
                                .top_k       = (int32_t)top_k,
                                .top_p       = (float)top_p,
                                .min_p       = (float)min_p,
                                .seed        = (uint64_t)seed};
    if (tfab_sampler_create(V, &sp, &sampler) != TFAB_OK)
        goto out;
    for (size_t i = 0; i < n_prompt; i++)
        tfab_sampler_accept(sampler, toks[i]);
    if (dump && (df = fopen(dump, "wb")) == NULL) {
        fprintf(stderr, "tfab run: %s: %s\n", dump, strerror(errno));
        goto out;
    }
    double t0 = now_s();
    if (tfab_pipe_eval(pipe, toks, (uint32_t)n_prompt, 0, logits) != TFAB_OK)
        goto out;
    double            t_prefill = now_s() - t0;
    tfab_pipe_stats_t pre;
    tfab_pipe_get_stats(pipe, &pre);
    if (prompt) {
        fwrite(prompt, 1, strlen(prompt), stdout);
        fflush(stdout);
    }
    t0            = now_s();
    size_t n_done = 0, n_ids = n_prompt;
    for (; n_done < (size_t)n_gen; n_done++) {
        tfab_token_t t;
        if (df && fwrite(logits, sizeof(float), V, df) != V) {
            fprintf(stderr, "tfab run: writing %s failed\n", dump);
            goto out;
        }
        if (tfab_sampler_sample(sampler, logits, &t) != TFAB_OK)
            goto out;
        toks[n_prompt + n_done] = t;
        n_ids                   = n_prompt + n_done + 1;
        if (vocab && tfab_vocab_is_eog(vocab, t))
            break;
        char   piece[256];
        size_t plen = 0;
        if (vocab && tfab_token_piece(vocab, t, 0, piece, sizeof(piece), &plen) == TFAB_OK) {
            fwrite(piece, 1, plen, stdout);
            fflush(stdout);
        }
        if (n_done + 1 < (size_t)n_gen &&
            tfab_pipe_eval(pipe, &t, 1, (uint32_t)(n_prompt + n_done), logits) != TFAB_OK)
            goto out;
    }
    double t_decode = now_s() - t0;
    printf("\n");
    fflush(stdout);
    if (print_ids) {
        fprintf(stderr, "tfab run: ids");
        for (size_t i = 0; i < n_ids; i++)
            fprintf(stderr, "%s%d", i ? "," : " ", toks[i]);
        fprintf(stderr, "\n");
    }
    tfab_pipe_stats_t ps;
    char              stages[1024];
    tfab_pipe_get_stats(pipe, &ps);
    tfab_pipe_stages(pipe, stages, sizeof(stages));
    fprintf(stderr, "tfab run: stages %s\n", stages);
    fprintf(stderr,
            "tfab run: cluster %s, %u ranks, load %.0f ms\n"
            "tfab run: prefill %zu tokens in %.1f ms (%.1f tok/s); decode %zu tokens in %.1f ms "
            "(%.1f tok/s)\n"
            "tfab run: coordinator sent %llu activation bytes (%.0f per token), received %llu "
            "logits bytes; own stage %.1f ms, waiting %.1f ms\n",
            cluster, cl.n_ranks, t_load * 1e3, n_prompt, t_prefill * 1e3,
            (double)n_prompt / t_prefill, n_done, t_decode * 1e3,
            n_done ? (double)n_done / t_decode : 0.0, (unsigned long long)ps.bytes_sent,
            ps.tokens ? (double)ps.bytes_sent / (double)ps.tokens : 0.0,
            (unsigned long long)ps.bytes_received, ps.compute_s * 1e3, ps.wait_s * 1e3);
    if (cl.n_ranks > 1 && cl.tp <= 1)
        fprintf(stderr,
                "tfab run: prefill transfers to the next stage %.2f ms, %.2f ms of it hidden "
                "behind the next chunk's compute (overlap %.2f)\n",
                pre.xfer_s * 1e3, pre.hidden_s * 1e3,
                pre.xfer_s > 0 ? pre.hidden_s / pre.xfer_s : 0.0);
    rc = 0;
out:
    if (df)
        fclose(df);
    free(logits);
    free(toks);
    tfab_sampler_destroy(sampler);
    tfab_pipe_destroy(pipe);
    tfab_vocab_destroy(vocab);
    return rc;
}
