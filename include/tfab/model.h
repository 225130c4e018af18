/* tfab/model.h - Llama-family models (llama, mistral, qwen2) loaded from GGUF or HF safetensors,
 * and their CPU forward pass with a preallocated KV cache. */
#ifndef TFAB_MODEL_H
#define TFAB_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/gguf.h>
#include <tfab/status.h>
#include <tfab/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tfab_arch {
    TFAB_ARCH_LLAMA = 0, /* also mistral: same graph (sliding-window attention is not applied,
                            so mistral v0.1 is exact up to its 4096-token window) */
    TFAB_ARCH_QWEN2 = 1  /* QKV biases */
} tfab_arch_t;

typedef enum tfab_rope_style {
    TFAB_ROPE_NORMAL = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): llama GGUF (rows permuted
                             by the converter) */
    TFAB_ROPE_NEOX = 1    /* rotate halves (x[i], x[i + d/2]): qwen2, HF llama checkpoints */
} tfab_rope_style_t;

/* What was read from the file; fixed after load. */
typedef struct tfab_model_config {
    tfab_arch_t       arch;
    char              arch_name[16]; /* "llama", "mistral", "qwen2" */
    uint32_t          n_vocab;
    uint32_t          n_embd;
    uint32_t          n_layer;
    uint32_t          n_head;
    uint32_t          n_head_kv; /* < n_head: grouped-query attention */
    uint32_t          head_dim;
    uint32_t          n_ff;
    uint32_t          n_ctx_train;
    float             rms_eps;
    float             rope_theta;
    tfab_rope_style_t rope_style;
    float             rope_freq_scale; /* linear scaling: positions multiplied by this (1 = none) */
    int               rope_llama3;     /* per-dimension frequency factors in use (llama3 scaling) */
    int               tied_embd;       /* no output.weight: logits use token_embd */
    tfab_dtype_t      weight_type;     /* type of attn_q of layer 0, for messages */
} tfab_model_config_t;

#define TFAB_MODEL_PARAM_N_CTX        (1u << 0)
#define TFAB_MODEL_PARAM_N_BATCH      (1u << 1)
#define TFAB_MODEL_PARAM_N_THREADS    (1u << 2)
#define TFAB_MODEL_PARAM_PARALLEL_FOR (1u << 3)
#define TFAB_MODEL_PARAM_ALLOCATOR    (1u << 4)

typedef struct tfab_model_params {
    uint64_t    field_mask;              /* TFAB_MODEL_PARAM_* for the fields below that are set */
    const char *path;                    /* required: a .gguf file, or a directory with
                                            config.json and *.safetensors */
    uint32_t n_ctx;                      /* KV cache positions (default min(n_ctx_train, 4096)) */
    uint32_t n_batch;                    /* most tokens per forward call (default 64) */
    unsigned n_threads;                  /* own pool size when no parallel_for (default: online
                                            CPUs) */
    tfab_parallel_for_fn_t parallel_for; /* e.g. tfab_stream_parallel_for; with it no thread is
                                            started and parallel_ctx is passed to every call */
    void                          *parallel_ctx;
    const tfab_stream_allocator_t *allocator; /* KV cache, activations, norm copies: alloc
                                            (size, -1, arg) must return zeroed memory aligned
                                            to 64 bytes, or NULL (create then fails with
                                            TFAB_ERR_NOMEM, everything freed); e.g. a stream's
                                            NUMA allocator, or a failing one in tests. Must
                                            outlive the model. Default posix_memalign. */
} tfab_model_params_t;

typedef struct tfab_model tfab_model_t;

/* Load a model: weights stay in the read-only file mapping (never copied; only norm vectors and
 * biases are converted to f32), the KV cache [n_layer][n_ctx][n_head_kv * head_dim] f32 and all
 * activation buffers for n_batch tokens are allocated here, so tfab_model_forward never
 * allocates. Every tensor is checked (present, supported type f32/f16/bf16/q8_0/q4_0, exact
 * shape); an error is logged once naming the file and the tensor or key, and returned:
 * TFAB_ERR_IO, TFAB_ERR_INVALID (malformed or inconsistent), TFAB_ERR_UNSUPPORTED (architecture,
 * tensor type), TFAB_ERR_NOT_FOUND (missing tensor or key), TFAB_ERR_NOMEM. Blocks (reads). */
TFAB_API tfab_status_t tfab_model_create(const tfab_model_params_t *params, tfab_model_t **model_p);
/* Free everything and unmap. NULL is a no-op. */
TFAB_API void tfab_model_destroy(tfab_model_t *model);

TFAB_API const tfab_model_config_t *tfab_model_config(const tfab_model_t *model);
TFAB_API uint32_t                   tfab_model_n_ctx(const tfab_model_t *model);
TFAB_API uint32_t                   tfab_model_n_batch(const tfab_model_t *model);
/* The kernel set in use ("avx512", "avx2", "scalar"). */
TFAB_API const char *tfab_model_kernels(const tfab_model_t *model);

/* Run n tokens (1 <= n <= n_batch) at positions pos .. pos+n-1: their keys and values are
 * written to the cache at those positions and each token attends to cache positions 0..its own
 * (so the cache must hold positions 0..pos-1 from earlier calls; pos = 0 starts over). With
 * logits non-NULL, writes n rows of n_vocab floats (row i for tokens[i]). Never allocates.
 * Errors (logged): TFAB_ERR_RANGE (n, pos + n > n_ctx, token id >= n_vocab or < 0).
 * Not thread-safe per model: one forward at a time. Blocks until done. */
TFAB_API tfab_status_t tfab_model_forward(tfab_model_t *model, const int32_t *tokens, uint32_t n,
                                          uint32_t pos, float *logits);
/* As tfab_model_forward with a per-call context for the parallel_for given at creation (a
 * stream op's ctx, which changes per op). */
TFAB_API tfab_status_t tfab_model_forward_ctx(tfab_model_t *model, void *parallel_ctx,
                                              const int32_t *tokens, uint32_t n, uint32_t pos,
                                              float *logits);

#ifdef __cplusplus
}
#endif
#endif
