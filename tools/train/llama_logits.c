/* llama_logits.c - prints llama.cpp's last-position logits for given token ids (peer check of tfab-tiny).
 *
 * usage: llama_logits MODEL.gguf ID [ID...]   -> one logit per line on stdout, n_vocab lines
 * Built by tools/train/check_llama_cpp.py against the static libraries of tools/llama_cpp.sh;
 * it is a test tool, not part of tfab. */
#include <stdio.h>
#include <stdlib.h>

#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL.gguf ID [ID...]\n", argv[0]);
        return 2;
    }
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(argv[1], llama_model_default_params());
    if (!model) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    int n = argc - 2;
    cp.n_ctx = (unsigned)(n < 256 ? 256 : n);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 2;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    llama_token *ids = malloc(sizeof(*ids) * (size_t)n);
    if (!ctx || !ids) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        ids[i] = (llama_token)atoi(argv[i + 2]);
    if (llama_decode(ctx, llama_batch_get_one(ids, n)) != 0) {
        fprintf(stderr, "llama_decode failed\n");
        return 1;
    }
    const float *logits = llama_get_logits_ith(ctx, -1);
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int i = 0; i < n_vocab; i++)
        printf("%.6f\n", logits[i]);
    free(ids);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
