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
#define TFAB_MODEL_PARAM_N_SEQ        (1u << 5)
#define TFAB_MODEL_PARAM_LAYERS       (1u << 6)
#define TFAB_MODEL_PARAM_TP           (1u << 7)

/* Tensor-parallel gather: every rank passes buf [size][bytes_per_rank] with its own block at
 * rank * bytes_per_rank filled; on return all blocks are filled (tfab_ring_allgather's
 * contract). A non-OK status fails the forward with it. */
typedef tfab_status_t (*tfab_model_allgather_fn_t)(void *arg, void *buf, size_t bytes_per_rank);

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
    uint32_t n_seq;                      /* KV cache slots, independent sequences (default 1) */
    uint32_t layer_begin, layer_end;     /* pipeline stage: load and run only layers
                                            [begin, end); token embeddings are used only when
                                            begin == 0, output norm and head only when end ==
                                            n_layer (default: all layers) */
    uint32_t tp_rank, tp_size;           /* tensor parallel (default 0, 1): this rank owns
                                            query/KV heads and MLP rows [rank/size] of each
                                            layer; n_head_kv and n_ff divisible by size. Every
                                            output element is one rank's whole dot product, the
                                            pieces joined by tp_allgather: results are
                                            bit-identical to tp_size 1 */
    tfab_model_allgather_fn_t tp_allgather; /* required when tp_size > 1 */
    void                     *tp_arg;
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

/* A batch of tokens from one or more sequences (llama.cpp's llama_batch, minus embeddings): token
 * i sits at position pos[i] of sequence seq[i], its key and value go to that slot's cache at
 * that position, and it attends to that slot's positions 0..pos[i] (earlier calls or earlier
 * tokens of this batch). Tokens of one sequence appear in position order. */
typedef struct tfab_model_batch {
    uint32_t        n;           /* 1..n_batch tokens */
    const int32_t  *tokens;      /* [n] ids (first stage); NULL when hidden_in is given */
    const float    *hidden_in;   /* [n][n_embd] residual stream from the previous stage, or NULL */
    const uint32_t *pos;         /* [n] positions */
    const uint32_t *seq;         /* [n] slots < n_seq; NULL: all in slot 0 */
    const uint8_t  *want_logits; /* [n] nonzero: a logits row for this token; NULL: every token */
} tfab_model_batch_t;

/* Run a batch through this model's layers. Last stage (layer_end == n_layer): logits gets one row
 * of n_vocab floats per token with want_logits, in batch order (logits may be NULL: cache
 * only). Other stages: hidden_out gets [n][n_embd], the residual stream after layer_end - 1, to
 * pass as the next stage's hidden_in. Errors (logged): TFAB_ERR_RANGE (n, a position beyond
 * n_ctx, a slot >= n_seq, an id outside the vocabulary), TFAB_ERR_INVALID (tokens vs hidden_in
 * not as the stage needs), or the allgather's status. Never allocates; one call at a time. */
TFAB_API tfab_status_t tfab_model_decode(tfab_model_t *model, void *parallel_ctx,
                                         const tfab_model_batch_t *batch, float *logits,
                                         float *hidden_out);

/* Which part of the model this instance holds. */
TFAB_API void tfab_model_layers(const tfab_model_t *model, uint32_t *begin_p, uint32_t *end_p);
TFAB_API uint32_t tfab_model_n_seq(const tfab_model_t *model);

#ifdef __cplusplus
}
#endif
#endif
