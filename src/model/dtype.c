/* dtype.c - the ggml tensor type table: names, block sizes and bytes per block. */
#include <tfab/gguf.h>

typedef struct dtype_info {
    const char *name;
    uint32_t    block; /* elements per block; 0 marks a number ggml does not (or no longer) use */
    uint32_t    bytes; /* bytes per block */
} dtype_info_t;

static const dtype_info_t dtypes[TFAB_DTYPE_COUNT] = {
    [TFAB_DTYPE_F32]     = {"f32", 1, 4},
    [TFAB_DTYPE_F16]     = {"f16", 1, 2},
    [TFAB_DTYPE_Q4_0]    = {"q4_0", 32, 18},
    [TFAB_DTYPE_Q4_1]    = {"q4_1", 32, 20},
    [TFAB_DTYPE_Q5_0]    = {"q5_0", 32, 22},
    [TFAB_DTYPE_Q5_1]    = {"q5_1", 32, 24},
    [TFAB_DTYPE_Q8_0]    = {"q8_0", 32, 34},
    [TFAB_DTYPE_Q8_1]    = {"q8_1", 32, 36},
    [TFAB_DTYPE_Q2_K]    = {"q2_K", 256, 84},
    [TFAB_DTYPE_Q3_K]    = {"q3_K", 256, 110},
    [TFAB_DTYPE_Q4_K]    = {"q4_K", 256, 144},
    [TFAB_DTYPE_Q5_K]    = {"q5_K", 256, 176},
    [TFAB_DTYPE_Q6_K]    = {"q6_K", 256, 210},
    [TFAB_DTYPE_Q8_K]    = {"q8_K", 256, 292},
    [TFAB_DTYPE_IQ2_XXS] = {"iq2_xxs", 256, 66},
    [TFAB_DTYPE_IQ2_XS]  = {"iq2_xs", 256, 74},
    [TFAB_DTYPE_IQ3_XXS] = {"iq3_xxs", 256, 98},
    [TFAB_DTYPE_IQ1_S]   = {"iq1_s", 256, 50},
    [TFAB_DTYPE_IQ4_NL]  = {"iq4_nl", 32, 18},
    [TFAB_DTYPE_IQ3_S]   = {"iq3_s", 256, 110},
    [TFAB_DTYPE_IQ2_S]   = {"iq2_s", 256, 82},
    [TFAB_DTYPE_IQ4_XS]  = {"iq4_xs", 256, 136},
    [TFAB_DTYPE_I8]      = {"i8", 1, 1},
    [TFAB_DTYPE_I16]     = {"i16", 1, 2},
    [TFAB_DTYPE_I32]     = {"i32", 1, 4},
    [TFAB_DTYPE_I64]     = {"i64", 1, 8},
    [TFAB_DTYPE_F64]     = {"f64", 1, 8},
    [TFAB_DTYPE_IQ1_M]   = {"iq1_m", 256, 56},
    [TFAB_DTYPE_BF16]    = {"bf16", 1, 2},
    [TFAB_DTYPE_TQ1_0]   = {"tq1_0", 256, 54},
    [TFAB_DTYPE_TQ2_0]   = {"tq2_0", 256, 66},
    [TFAB_DTYPE_MXFP4]   = {"mxfp4", 32, 17},
};

const char *tfab_dtype_name(uint32_t type)
{
    return type < TFAB_DTYPE_COUNT && dtypes[type].block ? dtypes[type].name : "?";
}

uint32_t tfab_dtype_block_size(uint32_t type)
{
    return type < TFAB_DTYPE_COUNT ? dtypes[type].block : 0;
}

uint32_t tfab_dtype_type_size(uint32_t type)
{
    return type < TFAB_DTYPE_COUNT && dtypes[type].block ? dtypes[type].bytes : 0;
}

tfab_status_t tfab_dtype_bytes(uint32_t type, uint64_t n, uint64_t *bytes_p)
{
    uint32_t block = tfab_dtype_block_size(type);
    if (block == 0 || n % block != 0)
        return TFAB_ERR_INVALID;
    uint64_t bytes;
    if (__builtin_mul_overflow(n / block, (uint64_t)dtypes[type].bytes, &bytes))
        return TFAB_ERR_RANGE;
    *bytes_p = bytes;
    return TFAB_OK;
}
