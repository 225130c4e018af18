/* cmd_run.c - `tfab run`: generate text from a prompt on this host: tokenize, batched prefill,
 * sampled decode streamed to stdout, and prefill/decode tokens per second on stderr. Without
 * --model it uses the built-in model (models/tfab-tiny-f16.gguf). */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tfab/tfab.h>
#include <tfab/model.h>
#include <tfab/sample.h>
#include <tfab/tokenizer.h>
#include "cli.h"

#define BUILTIN_MODEL "tfab-tiny-f16.gguf"

/* One forward pass as an op of the compute stream: the model's parallel_for runs on the
 * stream's workers (ctx). */
typedef struct fwd_op {
    tfab_model_t       *model;
    const tfab_token_t *toks;
    uint32_t            n, pos;
    float              *logits;
} fwd_op_t;

static tfab_status_t op_forward(tfab_stream_ctx_t *ctx, void *arg)
{
    fwd_op_t *f = arg;
    return tfab_model_forward_ctx(f->model, ctx, f->toks, f->n, f->pos, f->logits);
}

/* Run one forward on the stream and wait for it (the next token needs its logits). */
static tfab_status_t forward_on(tfab_stream_t *s, tfab_model_t *model, const tfab_token_t *toks,
                                uint32_t n, uint32_t pos, float *logits)
{
    fwd_op_t      f  = {model, toks, n, pos, logits};
    tfab_status_t st = tfab_stream_enqueue(s, op_forward, &f);
    if (st != TFAB_OK)
        return st;
    return tfab_stream_synchronize(s);
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tfab run [--model PATH] [options] \"prompt\"\n"
            "\n"
            "Generates a continuation of the prompt, streaming it to stdout; prefill and decode\n"
            "speed go to stderr. Without --model the built-in model is used.\n"
            "\n"
            "  --model PATH         a .gguf file (tokenizer from its metadata)\n"
            "  -n, --tokens N       tokens to generate at most (default 64; stops at end of text)\n"
            "  --temp T             temperature (default 0.8; 0 = greedy)\n"
            "  --top-k K            (default 40)     --top-p P   (default 0.95)\n"
            "  --min-p P            (default 0.05)   --repeat-penalty R (default 1.0)\n"
            "  --seed S             sampling seed (default 42): same seed, same text\n"
            "  --threads N          compute threads: workers of the forward pass's compute stream\n"
            "                       (default: the CPUs of this NUMA node)\n"
            "  --ctx N              context length (default: the model's, at most 4096)\n"
            "  --chat               wrap the prompt as a user turn of the model's chat template\n"
            "  --cluster FILE       run across the hosts of a cluster file (README \"Cluster\n"
            "                       file\"): this host is rank 0; see also tfab node\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The built-in model: beside the binary's tree (build/ or an install prefix), or in the
 * source tree this binary was built from. */
const char *tfab_cli_builtin_model(char *buf, size_t len)
{
    char    exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n]      = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        const char *rel[] = {"/../models/", "/../share/tfab/models/"};
        for (size_t i = 0; i < 2; i++) {
            int w = snprintf(buf, len, "%s%s%s", exe, rel[i], BUILTIN_MODEL);
            if (w > 0 && (size_t)w < len && access(buf, R_OK) == 0)
                return buf;
        }
    }
    snprintf(buf, len, "%s/models/%s", TFAB_SOURCE_DIR, BUILTIN_MODEL);
    return access(buf, R_OK) == 0 ? buf : NULL;
}

static int parse_num(const char *opt, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno    = 0;
    double x = v ? strtod(v, &end) : 0;
    if (v == NULL || end == v || *end != '\0' || errno || x < lo || x > hi) {
        fprintf(stderr, "tfab run: %s needs a number from %g to %g, got '%s'\n", opt, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int tfab_cli_run(int argc, char **argv)
{
    const char           *model_path = NULL, *prompt = NULL;
    double                n_gen = 64, threads = 0, ctx = 0, seed = 42;
    int                   chat = 0;
    tfab_sampler_params_t sp   = {0};
    double                temp = 0.8, top_k = 40, top_p = 0.95, min_p = 0.05, rep = 1.0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--cluster") == 0)
            return tfab_cli_run_cluster(argc, argv); /* distributed: cmd_cluster.c */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int         bad = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--model") == 0 && v) {
            model_path = argv[++i];
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--tokens") == 0) {
            bad = parse_num(a, v, 0, 1e6, &n_gen), i++;
        } else if (strcmp(a, "--temp") == 0) {
            bad = parse_num(a, v, 0, 100, &temp), i++;
        } else if (strcmp(a, "--top-k") == 0) {
            bad = parse_num(a, v, 0, 1e9, &top_k), i++;
        } else if (strcmp(a, "--top-p") == 0) {
            bad = parse_num(a, v, 0, 1, &top_p), i++;
        } else if (strcmp(a, "--min-p") == 0) {
            bad = parse_num(a, v, 0, 1, &min_p), i++;
        } else if (strcmp(a, "--repeat-penalty") == 0) {
            bad = parse_num(a, v, 0.01, 100, &rep), i++;
        } else if (strcmp(a, "--seed") == 0) {
            bad = parse_num(a, v, 0, 1e18, &seed), i++;
        } else if (strcmp(a, "--threads") == 0) {
            bad = parse_num(a, v, 1, 1024, &threads), i++;
        } else if (strcmp(a, "--ctx") == 0) {
            bad = parse_num(a, v, 8, 1 << 20, &ctx), i++;
        } else if (strcmp(a, "--chat") == 0) {
            chat = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "tfab run: unknown option '%s' (see tfab run --help)\n", a);
            return 2;
        } else if (prompt == NULL) {
            prompt = a;
        } else {
            fprintf(stderr, "tfab run: one prompt only (quote it)\n");
            return 2;
        }
        if (bad)
            return 2;
    }
    if (prompt == NULL) {
        usage(stderr);
        return 2;
    }
    char builtin[PATH_MAX];
    if (model_path == NULL && (model_path = tfab_cli_builtin_model(builtin, sizeof(builtin))) == NULL) {
        fprintf(stderr, "tfab run: the built-in model %s was not found (looked beside the binary "
                        "and in %s/models); give --model PATH\n", BUILTIN_MODEL, TFAB_SOURCE_DIR);
        return 1;
    }

    int                 rc      = 1;
    tfab_model_t       *model   = NULL;
    tfab_vocab_t       *vocab   = NULL;
    tfab_sampler_t     *sampler = NULL;
    tfab_token_t       *toks    = NULL;
    float              *logits  = NULL;
    char               *text    = NULL;
    tfab_stream_t      *fwd     = NULL;
    tfab_model_params_t mp      = {.field_mask   = TFAB_MODEL_PARAM_PARALLEL_FOR,
                                   .path         = model_path,
                                   .parallel_for = tfab_stream_parallel_for};
    /* the forward pass runs on a compute stream: its workers are the model's threads, pinned
     * to the cores of this CPU's NUMA node (one per online CPU of it unless --threads) */
    tfab_stream_params_t fp = {.field_mask = TFAB_STREAM_PARAM_NAME, .name = "fwd"};
    if (threads > 0) {
        fp.field_mask |= TFAB_STREAM_PARAM_N_WORKERS;
        fp.n_workers = (unsigned)threads;
    }
    if (tfab_stream_create(&fp, &fwd) != TFAB_OK) {
        fprintf(stderr, "tfab run: cannot create the compute stream (see the log above)\n");
        goto out;
    }
    if (ctx > 0) {
        mp.field_mask |= TFAB_MODEL_PARAM_N_CTX;
        mp.n_ctx = (uint32_t)ctx;
    }
    double t_load = now_s();
    if (tfab_model_create(&mp, &model) != TFAB_OK)
        goto out; /* the loader said what is wrong */
    if (tfab_vocab_load_gguf_file(model_path, &vocab) != TFAB_OK) {
        fprintf(stderr, "tfab run: %s: no usable tokenizer in its metadata\n", model_path);
        goto out;
    }
    t_load                           = now_s() - t_load;
    const tfab_model_config_t *cfg   = tfab_model_config(model);
    uint32_t                   n_ctx = tfab_model_n_ctx(model), n_batch = tfab_model_n_batch(model);

    /* the prompt, optionally as a chat turn */
    const char *input     = prompt;
    size_t      input_len = strlen(prompt);
    if (chat) {
        tfab_chat_tmpl_t tmpl = tfab_chat_tmpl_detect(tfab_vocab_chat_template(vocab));
        tfab_chat_msg_t  msg  = {"user", prompt};
        size_t           need = 0;
        if (tmpl == TFAB_CHAT_TMPL_UNKNOWN) {
            fprintf(stderr,
                    "tfab run: %s has no chat template tfab knows (llama2, llama3, chatml)\n",
                    model_path);
            goto out;
        }
        tfab_chat_render(tmpl, &msg, 1, 1, NULL, 0, &need);
        if ((text = malloc(need + 1)) == NULL ||
            tfab_chat_render(tmpl, &msg, 1, 1, text, need + 1, &need) != TFAB_OK)
            goto out;
        input     = text;
        input_len = need;
    }
    size_t n_prompt = 0;
    if ((toks = malloc(sizeof(*toks) * n_ctx)) == NULL)
        goto out;
    tfab_status_t st = tfab_tokenize(
        vocab, input, input_len, TFAB_ENCODE_ADD_SPECIAL | (chat ? TFAB_ENCODE_PARSE_SPECIAL : 0),
        toks, n_ctx, &n_prompt);
    if (st != TFAB_OK || n_prompt == 0) {
        fprintf(stderr, "tfab run: the prompt is %s tokens, the context holds %u\n",
                st == TFAB_ERR_RANGE ? "more than" : "not", n_ctx);
        goto out;
    }
    if (n_prompt + (size_t)n_gen > n_ctx)
        n_gen = (double)(n_ctx - n_prompt);

    sp.field_mask = TFAB_SAMPLER_PARAM_TEMPERATURE | TFAB_SAMPLER_PARAM_TOP_K |
                    TFAB_SAMPLER_PARAM_TOP_P | TFAB_SAMPLER_PARAM_MIN_P |
                    TFAB_SAMPLER_PARAM_REPEAT_PENALTY | TFAB_SAMPLER_PARAM_SEED;
    sp.temperature    = (float)temp;
    sp.top_k          = (int32_t)top_k;
    sp.top_p          = (float)top_p;
    sp.min_p          = (float)min_p;
    sp.repeat_penalty = (float)rep;
    sp.seed           = (uint64_t)seed;
    if (tfab_sampler_create(cfg->n_vocab, &sp, &sampler) != TFAB_OK ||
        (logits = malloc(sizeof(float) * (size_t)n_batch * cfg->n_vocab)) == NULL)
        goto out;
    for (size_t i = 0; i < n_prompt; i++)
        tfab_sampler_accept(sampler, toks[i]);

    /* prefill in batches; the last row of the last batch predicts the first new token */
    double   t0   = now_s();
    uint32_t last = 0;
    for (size_t pos = 0; pos < n_prompt; pos += n_batch) {
        uint32_t n = (uint32_t)(n_prompt - pos < n_batch ? n_prompt - pos : n_batch);
        if (forward_on(fwd, model, toks + pos, n, (uint32_t)pos, logits) != TFAB_OK)
            goto out;
        last = n - 1;
    }
    double t_prefill = now_s() - t0;
    fwrite(prompt, 1, strlen(prompt), stdout);
    fflush(stdout);

    t0            = now_s();
    size_t n_done = 0;
    float *row    = logits + (size_t)last * cfg->n_vocab;
    for (; n_done < (size_t)n_gen; n_done++) {
        tfab_token_t tok;
        if (tfab_sampler_sample(sampler, row, &tok) != TFAB_OK)
            goto out;
        if (tfab_vocab_is_eog(vocab, tok))
            break;
        char   piece[256];
        size_t plen = 0;
        if (tfab_token_piece(vocab, tok, 0, piece, sizeof(piece), &plen) == TFAB_OK) {
            fwrite(piece, 1, plen, stdout);
            fflush(stdout);
        }
        toks[n_prompt + n_done] = tok;
        if (n_done + 1 < (size_t)n_gen &&
            forward_on(fwd, model, &tok, 1, (uint32_t)(n_prompt + n_done), logits) != TFAB_OK)
            goto out;
        row = logits;
    }
    double t_decode = now_s() - t0;
    printf("\n");
    fflush(stdout); /* the text ends before the statistics on stderr start */
    fprintf(stderr,
            "tfab run: %s (%s, %u layers, %s kernels), load %.0f ms\n"
            "tfab run: prefill %zu tokens in %.1f ms (%.1f tok/s); decode %zu tokens in %.1f ms "
            "(%.1f tok/s)\n",
            model_path, cfg->arch_name, cfg->n_layer, tfab_model_kernels(model), t_load * 1e3,
            n_prompt, t_prefill * 1e3, (double)n_prompt / t_prefill, n_done, t_decode * 1e3,
            n_done ? (double)n_done / t_decode : 0.0);
    rc = 0;
out:
    free(text);
    free(logits);
    free(toks);
    tfab_sampler_destroy(sampler);
    tfab_vocab_destroy(vocab);
    tfab_model_destroy(model);
    if (fwd)
        tfab_stream_destroy(fwd);
    return rc;
}
