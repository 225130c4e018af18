/* tfab/gguf.h - read-only GGUF (v2, v3) model files: mmap, full validation, metadata and tensor
 * index. */
#ifndef TFAB_GGUF_H
#define TFAB_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tensor element types, numbered exactly as ggml's enum ggml_type (the numbers are stored in
 * GGUF files). Gaps are types ggml removed; they are rejected as unknown. */
typedef enum tfab_dtype {
    TFAB_DTYPE_F32     = 0,
    TFAB_DTYPE_F16     = 1,
    TFAB_DTYPE_Q4_0    = 2,
    TFAB_DTYPE_Q4_1    = 3,
    TFAB_DTYPE_Q5_0    = 6,
    TFAB_DTYPE_Q5_1    = 7,
    TFAB_DTYPE_Q8_0    = 8,
    TFAB_DTYPE_Q8_1    = 9,
    TFAB_DTYPE_Q2_K    = 10,
    TFAB_DTYPE_Q3_K    = 11,
    TFAB_DTYPE_Q4_K    = 12,
    TFAB_DTYPE_Q5_K    = 13,
    TFAB_DTYPE_Q6_K    = 14,
    TFAB_DTYPE_Q8_K    = 15,
    TFAB_DTYPE_IQ2_XXS = 16,
    TFAB_DTYPE_IQ2_XS  = 17,
    TFAB_DTYPE_IQ3_XXS = 18,
    TFAB_DTYPE_IQ1_S   = 19,
    TFAB_DTYPE_IQ4_NL  = 20,
    TFAB_DTYPE_IQ3_S   = 21,
    TFAB_DTYPE_IQ2_S   = 22,
    TFAB_DTYPE_IQ4_XS  = 23,
    TFAB_DTYPE_I8      = 24,
    TFAB_DTYPE_I16     = 25,
    TFAB_DTYPE_I32     = 26,
    TFAB_DTYPE_I64     = 27,
    TFAB_DTYPE_F64     = 28,
    TFAB_DTYPE_IQ1_M   = 29,
    TFAB_DTYPE_BF16    = 30,
    TFAB_DTYPE_TQ1_0   = 34,
    TFAB_DTYPE_TQ2_0   = 35,
    TFAB_DTYPE_MXFP4   = 39,
    TFAB_DTYPE_COUNT   = 40 /* one past the largest number; not a type */
} tfab_dtype_t;

/* Name as ggml spells it ("f32", "q8_0", "bf16"); "?" for an unknown number. Thread-safe. */
TFAB_API const char *tfab_dtype_name(uint32_t type);
/* Elements per block (1 for plain types, 32 for q8_0/q4_0, 256 for k-quants) and bytes per
 * block; both 0 for an unknown type number. */
TFAB_API uint32_t tfab_dtype_block_size(uint32_t type);
TFAB_API uint32_t tfab_dtype_type_size(uint32_t type);
/* Bytes of n elements of type: TFAB_ERR_INVALID for an unknown type or n not a multiple of the
 * block size, TFAB_ERR_RANGE on overflow. Does not log. */
TFAB_API tfab_status_t tfab_dtype_bytes(uint32_t type, uint64_t n, uint64_t *bytes_p);

/* Metadata value types, numbered as in the GGUF specification. */
typedef enum tfab_gguf_type {
    TFAB_GGUF_U8     = 0,
    TFAB_GGUF_I8     = 1,
    TFAB_GGUF_U16    = 2,
    TFAB_GGUF_I16    = 3,
    TFAB_GGUF_U32    = 4,
    TFAB_GGUF_I32    = 5,
    TFAB_GGUF_F32    = 6,
    TFAB_GGUF_BOOL   = 7,
    TFAB_GGUF_STRING = 8,
    TFAB_GGUF_ARRAY  = 9,
    TFAB_GGUF_U64    = 10,
    TFAB_GGUF_I64    = 11,
    TFAB_GGUF_F64    = 12,
    TFAB_GGUF_TYPE_COUNT
} tfab_gguf_type_t;

/* "u32", "string", "array", ...; "?" for anything else. */
TFAB_API const char *tfab_gguf_type_name(uint32_t type);

#define TFAB_GGUF_MAX_DIMS          4
#define TFAB_GGUF_DEFAULT_ALIGNMENT 32

/* One tensor of the file. Owned by the tfab_gguf_t and valid until tfab_gguf_close(). */
typedef struct tfab_gguf_tensor {
    const char *name;                   /* NUL-terminated ("blk.0.attn_q.weight") */
    uint32_t    n_dims;                 /* 1..TFAB_GGUF_MAX_DIMS */
    uint64_t    ne[TFAB_GGUF_MAX_DIMS]; /* ggml order: ne[0] is the contiguous dimension;
                                           dimensions past n_dims are 1 */
    tfab_dtype_t type;                  /* a known type; ne[0] is a multiple of its block */
    uint64_t     offset;                /* from the start of the data section */
    uint64_t     size;                  /* bytes */
    const void  *data;                  /* inside the read-only mapping, aligned as the file
                                           says (general.alignment) relative to the file start */
} tfab_gguf_tensor_t;

/* An array value. data points at n packed little-endian elements inside the mapping (numeric
 * element types only; NULL for string arrays); it may be unaligned: read through memcpy or the
 * tfab_gguf_arr_* helpers below. */
typedef struct tfab_gguf_arr {
    tfab_gguf_type_t type; /* element type (never ARRAY: nesting is rejected) */
    uint64_t         n;
    const void      *data;
    uint64_t         kv; /* index of the key-value pair (for tfab_gguf_arr_str) */
} tfab_gguf_arr_t;

typedef struct tfab_gguf tfab_gguf_t;

/* Map path read-only and validate the whole file against its size: header, every key, string
 * length, array count, tensor dims, type, offset and size, alignment (general.alignment, a power
 * of two), with overflow-safe arithmetic; duplicate keys or tensor names are errors. Nothing of
 * the file is copied except the index. On error logs one line naming the file and what is
 * wrong (key, tensor, offset) and returns TFAB_ERR_IO (cannot open/map), TFAB_ERR_INVALID
 * (malformed), TFAB_ERR_UNSUPPORTED (version 1, big-endian) or TFAB_ERR_NOMEM.
 * The handle is immutable after open: all getters are thread-safe. */
TFAB_API tfab_status_t tfab_gguf_open(const char *path, tfab_gguf_t **gguf_p);

/* As tfab_gguf_open on a caller-owned buffer (tests, fuzzing); name is used in messages.
 * The buffer must stay valid and unchanged until tfab_gguf_close(). */
TFAB_API tfab_status_t tfab_gguf_open_buffer(const void *data, size_t size, const char *name,
                                             tfab_gguf_t **gguf_p);

/* Unmap and free. Every pointer obtained from the handle becomes invalid. NULL is a no-op. */
TFAB_API void tfab_gguf_close(tfab_gguf_t *gguf);

TFAB_API const char *tfab_gguf_name(const tfab_gguf_t *gguf); /* path or name given */
TFAB_API uint32_t    tfab_gguf_version(const tfab_gguf_t *gguf);
TFAB_API uint64_t    tfab_gguf_alignment(const tfab_gguf_t *gguf);
TFAB_API uint64_t    tfab_gguf_file_size(const tfab_gguf_t *gguf);
TFAB_API uint64_t    tfab_gguf_data_offset(const tfab_gguf_t *gguf); /* data section start */

/* ---- metadata ------------------------------------------------------------------------------
 * Keys are iterated by index 0..n_kv-1 in file order. Lookups by key are O(1) (hashed).
 * Getters return TFAB_ERR_NOT_FOUND (silently) when the key is absent; a present key of the wrong
 * type (TFAB_ERR_INVALID) or an integer out of the target's range (TFAB_ERR_RANGE) is logged
 * naming the file and key. Outputs are written only on success. */
TFAB_API uint64_t         tfab_gguf_n_kv(const tfab_gguf_t *gguf);
TFAB_API const char      *tfab_gguf_kv_key(const tfab_gguf_t *gguf,
                                           uint64_t           i); /* NULL if i out of range */
TFAB_API tfab_gguf_type_t tfab_gguf_kv_type(const tfab_gguf_t *gguf, uint64_t i);
/* Index of key, or -1. */
TFAB_API int64_t tfab_gguf_find_key(const tfab_gguf_t *gguf, const char *key);

/* Integer getters accept any integer type (u8..i64) whose value fits the target. */
TFAB_API tfab_status_t tfab_gguf_get_u32(const tfab_gguf_t *gguf, const char *key, uint32_t *v_p);
TFAB_API tfab_status_t tfab_gguf_get_i32(const tfab_gguf_t *gguf, const char *key, int32_t *v_p);
TFAB_API tfab_status_t tfab_gguf_get_u64(const tfab_gguf_t *gguf, const char *key, uint64_t *v_p);
TFAB_API tfab_status_t tfab_gguf_get_i64(const tfab_gguf_t *gguf, const char *key, int64_t *v_p);
/* Accepts f32 and f64 (rounded to f32). */
TFAB_API tfab_status_t tfab_gguf_get_f32(const tfab_gguf_t *gguf, const char *key, float *v_p);
TFAB_API tfab_status_t tfab_gguf_get_bool(const tfab_gguf_t *gguf, const char *key, int *v_p);
/* A string value: *s_p points into the mapping and is NOT NUL-terminated; *len_p is its length. */
TFAB_API tfab_status_t tfab_gguf_get_str(const tfab_gguf_t *gguf, const char *key, const char **s_p,
                                         size_t *len_p);
TFAB_API tfab_status_t tfab_gguf_get_arr(const tfab_gguf_t *gguf, const char *key,
                                         tfab_gguf_arr_t *arr_p);
/* The i-th string of a string array, O(1): pointer into the mapping (not NUL-terminated) and
 * length. TFAB_ERR_INVALID if arr is not a string array, TFAB_ERR_RANGE if i >= arr->n. */
TFAB_API tfab_status_t tfab_gguf_arr_str(const tfab_gguf_t *gguf, const tfab_gguf_arr_t *arr,
                                         uint64_t i, const char **s_p, size_t *len_p);

/* Element i of a numeric array (no type or bounds check: the caller checked arr->type, i < n). */
static inline float tfab_gguf_arr_f32(const tfab_gguf_arr_t *arr, uint64_t i)
{
    float v;
    memcpy(&v, (const char *)arr->data + 4 * i, 4);
    return v;
}
static inline int32_t tfab_gguf_arr_i32(const tfab_gguf_arr_t *arr, uint64_t i)
{
    int32_t v;
    memcpy(&v, (const char *)arr->data + 4 * i, 4);
    return v;
}
static inline uint32_t tfab_gguf_arr_u32(const tfab_gguf_arr_t *arr, uint64_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)arr->data + 4 * i, 4);
    return v;
}

/* ---- tensors ------------------------------------------------------------------------------ */
TFAB_API uint64_t tfab_gguf_n_tensors(const tfab_gguf_t *gguf);
/* Tensor i in file order, NULL if out of range. */
TFAB_API const tfab_gguf_tensor_t *tfab_gguf_tensor(const tfab_gguf_t *gguf, uint64_t i);
/* Tensor by name (O(1)), NULL if absent. Does not log. */
TFAB_API const tfab_gguf_tensor_t *tfab_gguf_find_tensor(const tfab_gguf_t *gguf, const char *name);

#ifdef __cplusplus
}
#endif
#endif
