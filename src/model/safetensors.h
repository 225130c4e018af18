/* safetensors.h - private: read-only safetensors files (mmap, JSON header validated against the
 * file size), tensors by name. */
#ifndef TFAB_MODEL_SAFETENSORS_H
#define TFAB_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/gguf.h>
#include <tfab/status.h>

#define TFAB_ST_DTYPE_OTHER TFAB_DTYPE_COUNT /* a safetensors dtype without a ggml type */

typedef struct tfab_st_tensor {
    char       *name;
    char        dtype[12];              /* as in the file: "BF16", "F32", "I64" */
    uint32_t    type;                   /* tfab_dtype_t, or TFAB_ST_DTYPE_OTHER */
    uint32_t    n_dims;                 /* 0..TFAB_GGUF_MAX_DIMS */
    uint64_t    ne[TFAB_GGUF_MAX_DIMS]; /* ggml order (reversed shape); past n_dims 1 */
    const void *data;
    uint64_t    size;
} tfab_st_tensor_t;

typedef struct tfab_st tfab_st_t;

/* Map and validate: header length, JSON, every entry's dtype, shape (<= 4 dims, overflow-safe
 * byte size equal to its data_offsets span) and offsets within the file. Errors are logged naming
 * the file and tensor: TFAB_ERR_IO, TFAB_ERR_INVALID, TFAB_ERR_NOMEM. */
tfab_status_t tfab_st_open(const char *path, tfab_st_t **st_p);
/* As tfab_st_open on a caller-owned buffer that outlives the handle (fuzzing). */
tfab_status_t           tfab_st_open_buffer(const void *data, size_t size, const char *name,
                                            tfab_st_t **st_p);
void                    tfab_st_close(tfab_st_t *st);
const char             *tfab_st_name(const tfab_st_t *st);
size_t                  tfab_st_n_tensors(const tfab_st_t *st);
const tfab_st_tensor_t *tfab_st_tensor(const tfab_st_t *st, size_t i);
/* NULL if absent; does not log. */
const tfab_st_tensor_t *tfab_st_find(const tfab_st_t *st, const char *name);

#endif
