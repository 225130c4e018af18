/* cmd_logits.c - `tfab logits`: prefill a token sequence and write every position's logits as
 * little-endian float32 rows (n_vocab per token), for comparisons against reference engines. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/tfab.h>
#include <tfab/model.h>
#include "cli.h"

#define MAX_TOKENS 65536

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: tfab logits --model PATH --tokens ID,ID,... --out FILE [--threads N]\n"
        "\n"
        "Runs the model on the whole token sequence (positions 0..n-1) and writes n rows of\n"
        "n_vocab float32 logits (little-endian), row i for token i.\n"
        "\n"
        "  --model PATH    a .gguf file or a Hugging Face directory (config.json, *.safetensors)\n"
        "  --tokens LIST   comma-separated token ids\n"
        "  --out FILE      output file ('-' for stdout)\n"
        "  --threads N     compute threads (default: online CPUs)\n");
}

/* "1,2,3" -> ids; on error prints why and returns -1 */
static long parse_tokens(const char *s, int32_t *ids, long max)
{
    long        n = 0;
    const char *p = s;
    if (*p == '\0') {
        fprintf(stderr, "tfab logits: --tokens is empty\n");
        return -1;
    }
    for (;;) {
        char *end;
        errno           = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0') || *p == '-' || *p == '+' || *p == ' ' ||
            errno != 0 || v > INT32_MAX) {
            int len = (int)strcspn(p, ",");
            fprintf(stderr, "tfab logits: --tokens: '%.*s' (item %ld) is not a token id\n", len, p,
                    n + 1);
            return -1;
        }
        if (n >= max) {
            fprintf(stderr, "tfab logits: --tokens: more than %ld tokens\n", max);
            return -1;
        }
        ids[n++] = (int32_t)v;
        if (*end == '\0')
            return n;
        p = end + 1;
    }
}

int tfab_cli_logits(int argc, char **argv)
{
    const char *model_path = NULL, *tokens_arg = NULL, *out_path = NULL;
    unsigned    threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "tfab logits: %s needs a value (see tfab logits --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--model") == 0)
            model_path = v;
        else if (strcmp(a, "--tokens") == 0)
            tokens_arg = v;
        else if (strcmp(a, "--out") == 0)
            out_path = v;
        else if (strcmp(a, "--threads") == 0) {
            char         *end;
            unsigned long t = strtoul(v, &end, 10);
            if (*v == '\0' || *end != '\0' || t == 0 || t > 4096) {
                fprintf(stderr, "tfab logits: --threads '%s' is not a count in 1..4096\n", v);
                return 2;
            }
            threads = (unsigned)t;
        } else {
            fprintf(stderr, "tfab logits: unknown option '%s' (see tfab logits --help)\n", a);
            return 2;
        }
    }
    if (model_path == NULL || tokens_arg == NULL || out_path == NULL) {
        fprintf(stderr, "tfab logits: --model, --tokens and --out are required\n");
        usage(stderr);
        return 2;
    }
    int      rc  = 1;
    int32_t *ids = malloc(MAX_TOKENS * sizeof(int32_t));
    if (ids == NULL) {
        fprintf(stderr, "tfab logits: out of memory\n");
        return 1;
    }
    long n = parse_tokens(tokens_arg, ids, MAX_TOKENS);
    if (n < 0) {
        rc = 2;
        goto out_free_ids;
    }
    tfab_model_params_t params = {
        .field_mask = TFAB_MODEL_PARAM_N_CTX | TFAB_MODEL_PARAM_N_BATCH |
                      (threads ? TFAB_MODEL_PARAM_N_THREADS : 0),
        .path      = model_path,
        .n_ctx     = (uint32_t)n,
        .n_batch   = n < 256 ? (uint32_t)n : 256,
        .n_threads = threads,
    };
    tfab_model_t *model;
    if (tfab_model_create(&params, &model) != TFAB_OK) /* logged where detected */
        goto out_free_ids;
    uint32_t vocab  = tfab_model_config(model)->n_vocab;
    float   *logits = malloc((size_t)n * vocab * sizeof(float));
    if (logits == NULL) {
        fprintf(stderr, "tfab logits: out of memory for %ld x %u logits\n", n, vocab);
        goto out_destroy;
    }
    uint32_t nb = tfab_model_n_batch(model);
    for (long pos = 0; pos < n; pos += nb) {
        uint32_t cnt = (uint32_t)(n - pos < nb ? n - pos : nb);
        if (tfab_model_forward(model, ids + pos, cnt, (uint32_t)pos,
                               logits + (size_t)pos * vocab) != TFAB_OK)
            goto out_free_logits;
    }
    FILE *f = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (f == NULL) {
        fprintf(stderr, "tfab logits: cannot open %s for writing: %s\n", out_path, strerror(errno));
        goto out_free_logits;
    }
    size_t want = (size_t)n * vocab;
    if (fwrite(logits, sizeof(float), want, f) != want || (f != stdout && fclose(f) != 0) ||
        (f == stdout && fflush(f) != 0)) {
        fprintf(stderr, "tfab logits: writing %s failed: %s\n", out_path, strerror(errno));
        goto out_free_logits;
    }
    rc = 0;
out_free_logits:
    free(logits);
out_destroy:
    tfab_model_destroy(model);
out_free_ids:
    free(ids);
    return rc;
}
