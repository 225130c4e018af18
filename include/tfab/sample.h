/* tfab/sample.h - picking the next token from logits: greedy, temperature, top-k, top-p, min-p
 * and a repetition penalty, seeded and bit-reproducible. */
#ifndef TFAB_SAMPLE_H
#define TFAB_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>
#include <tfab/tokenizer.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Which fields of tfab_sampler_params_t are set (append-only). */
enum {
    TFAB_SAMPLER_PARAM_TEMPERATURE    = 1u << 0,
    TFAB_SAMPLER_PARAM_TOP_K          = 1u << 1,
    TFAB_SAMPLER_PARAM_TOP_P          = 1u << 2,
    TFAB_SAMPLER_PARAM_MIN_P          = 1u << 3,
    TFAB_SAMPLER_PARAM_REPEAT_PENALTY = 1u << 4,
    TFAB_SAMPLER_PARAM_REPEAT_LAST_N  = 1u << 5,
    TFAB_SAMPLER_PARAM_SEED           = 1u << 6
};

/* Unset fields take the default shown. The pipeline, in this order (as llama.cpp's default):
 *   1. repetition penalty: each distinct token among the last repeat_last_n accepted tokens
 *      has its logit divided by repeat_penalty if positive, multiplied if negative;
 *   2. temperature <= 0: greedy, the highest logit (lowest id on ties), nothing random;
 *   3. top-k: keep the k highest logits (ties broken by lower id);
 *   4. top-p: keep the smallest prefix (by probability at temperature 1) whose mass >= top_p;
 *   5. min-p: drop tokens whose probability < min_p * the top probability;
 *   6. softmax(logit / temperature) over what is left, one draw from the sampler's PRNG. */
typedef struct tfab_sampler_params {
    uint64_t field_mask;     /* TFAB_SAMPLER_PARAM_* */
    float    temperature;    /* 0.8; <= 0 means greedy */
    int32_t  top_k;          /* 40; <= 0 or >= n_vocab means off */
    float    top_p;          /* 0.95; >= 1 means off */
    float    min_p;          /* 0.05; <= 0 means off */
    float    repeat_penalty; /* 1.0 (off); must be > 0 */
    uint32_t repeat_last_n;  /* 64; 0 means off */
    uint64_t seed;           /* 0x5eed */
} tfab_sampler_params_t;

typedef struct tfab_sampler tfab_sampler_t;

/* A sampler for logits of n_vocab entries. Allocates every work buffer here (candidates,
 * history ring, dedup marks: O(n_vocab)); sampling never allocates. params may be NULL (all
 * defaults). Errors: TFAB_ERR_INVALID (n_vocab 0, repeat_penalty <= 0, NaN), TFAB_ERR_NOMEM.
 * A sampler is not thread-safe: use one per sequence. */
TFAB_API tfab_status_t tfab_sampler_create(uint32_t n_vocab, const tfab_sampler_params_t *params,
                                           tfab_sampler_t **sampler_p);
TFAB_API void          tfab_sampler_destroy(tfab_sampler_t *sampler);

/* Forget the history and restart the PRNG from seed: the same seed, params and logits give the
 * same tokens on any machine (own PRNG: splitmix64-seeded xoshiro256**). */
TFAB_API void tfab_sampler_reset(tfab_sampler_t *sampler, uint64_t seed);

/* Record a token in the repetition history (prompt tokens; sampled ones are recorded by
 * tfab_sampler_sample). TFAB_ERR_INVALID for an id outside the vocabulary. */
TFAB_API tfab_status_t tfab_sampler_accept(tfab_sampler_t *sampler, tfab_token_t token);

/* Pick the next token from logits[n_vocab] (not modified) and record it in the history.
 * NaN and -inf logits are never picked; +inf counts as the largest float. TFAB_ERR_INVALID if
 * logits is NULL or every logit is NaN or -inf. O(n_vocab log k) with top-k, O(n_vocab log
 * n_vocab) without; no allocation. */
TFAB_API tfab_status_t tfab_sampler_sample(tfab_sampler_t *sampler, const float *logits,
                                           tfab_token_t *token_p);

/* The PRNG alone: next 64 random bits, and a double uniform in [0, 1) from 53 of them. */
TFAB_API uint64_t tfab_sampler_rand_u64(tfab_sampler_t *sampler);
TFAB_API double   tfab_sampler_rand_unit(tfab_sampler_t *sampler);

#ifdef __cplusplus
}
#endif
#endif
