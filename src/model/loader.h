/* loader.h - private: what a model file format (GGUF, HF safetensors) hands the forward pass:
 * the config and tensors looked up by their GGUF names. */
#ifndef TFAB_MODEL_LOADER_H
#define TFAB_MODEL_LOADER_H

#include <tfab/gguf.h>
#include <tfab/model.h>

typedef struct tfab_model_tensor {
    const char  *name; /* as the file names it ("model.layers.0.self_attn.q_proj.weight") */
    const char  *file; /* the file holding it, for messages */
    tfab_dtype_t type;
    uint32_t     n_dims;
    uint64_t     ne[TFAB_GGUF_MAX_DIMS]; /* ggml order: ne[0] contiguous; past n_dims 1 */
    const void  *data;                   /* read-only mapping, valid until close */
    uint64_t     size;
} tfab_model_tensor_t;

typedef struct tfab_model_source {
    const char         *path; /* for messages */
    tfab_model_config_t cfg;  /* arch, sizes, eps, rope (n_vocab may be 0: from token_embd) */
    /* rope scaling read from metadata: llama3 per-dimension factors unless a rope_freqs tensor
     * is present */
    int      llama3;
    float    rope_factor, rope_low_freq, rope_high_freq;
    uint32_t rope_orig_ctx;
    void    *ctx;
    /* Look a tensor up by its GGUF name ("blk.0.attn_q.weight"); TFAB_ERR_NOT_FOUND silently. */
    tfab_status_t (*find)(void *ctx, const char *gguf_name, tfab_model_tensor_t *t);
    /* The name the file would use for a GGUF name (for "missing" messages). */
    void (*native_name)(void *ctx, const char *gguf_name, char *buf, size_t len);
    void (*close)(void *ctx);
} tfab_model_source_t;

/* Open path as a GGUF file / an HF directory; on error logs (naming file and key) and returns
 * the status. On success the caller calls src->close(src->ctx). */
tfab_status_t tfab_model_source_gguf(const char *path, tfab_model_source_t *src);
tfab_status_t tfab_model_source_hf(const char *dir, tfab_model_source_t *src);

#endif
