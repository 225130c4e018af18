/* sample.c - the sampler: repetition penalty, greedy, top-k, top-p, min-p, temperature and one
 * seeded draw, on buffers preallocated per vocabulary size. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include <tfab/sample.h>

#define MOD "sample"

typedef struct cand {
    float   logit;
    int32_t id;
} cand_t;

struct tfab_sampler {
    uint32_t              n_vocab;
    tfab_sampler_params_t p;
    uint64_t              rng[4]; /* xoshiro256** state */
    cand_t               *cand;   /* [n_vocab] work list */
    float                *prob;   /* [n_vocab] probabilities of the kept candidates */
    uint32_t             *mark;   /* [n_vocab] epoch of the last penalty applied to a token */
    uint32_t              epoch;
    tfab_token_t         *hist; /* [repeat_last_n] ring of accepted tokens */
    uint32_t              hist_n, hist_pos;
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tfab_sampler_rand_u64(tfab_sampler_t *s)
{
    uint64_t *r      = s->rng;
    uint64_t  result = rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return result;
}

double tfab_sampler_rand_unit(tfab_sampler_t *s)
{
    return (double)(tfab_sampler_rand_u64(s) >> 11) * 0x1.0p-53;
}

void tfab_sampler_reset(tfab_sampler_t *s, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->hist_n = s->hist_pos = 0;
}

tfab_status_t tfab_sampler_create(uint32_t n_vocab, const tfab_sampler_params_t *params,
                                  tfab_sampler_t **sampler_p)
{
    tfab_sampler_params_t p = {.temperature    = 0.8f,
                               .top_k          = 40,
                               .top_p          = 0.95f,
                               .min_p          = 0.05f,
                               .repeat_penalty = 1.0f,
                               .repeat_last_n  = 64,
                               .seed           = 0x5eed};
    if (params) {
        uint64_t m = params->field_mask;
        if (m & TFAB_SAMPLER_PARAM_TEMPERATURE)
            p.temperature = params->temperature;
        if (m & TFAB_SAMPLER_PARAM_TOP_K)
            p.top_k = params->top_k;
        if (m & TFAB_SAMPLER_PARAM_TOP_P)
            p.top_p = params->top_p;
        if (m & TFAB_SAMPLER_PARAM_MIN_P)
            p.min_p = params->min_p;
        if (m & TFAB_SAMPLER_PARAM_REPEAT_PENALTY)
            p.repeat_penalty = params->repeat_penalty;
        if (m & TFAB_SAMPLER_PARAM_REPEAT_LAST_N)
            p.repeat_last_n = params->repeat_last_n;
        if (m & TFAB_SAMPLER_PARAM_SEED)
            p.seed = params->seed;
    }
    p.field_mask = 0;
    if (sampler_p == NULL || n_vocab == 0 || !(p.repeat_penalty > 0) || isnan(p.temperature) ||
        isnan(p.top_p) || isnan(p.min_p) || p.repeat_last_n > (1u << 24)) {
        TFAB_ERROR(MOD,
                   "sampler: invalid parameters (n_vocab %u, repeat_penalty %g, "
                   "repeat_last_n %u; temperature, top_p, min_p must be numbers)",
                   n_vocab, (double)p.repeat_penalty, p.repeat_last_n);
        return TFAB_ERR_INVALID;
    }
    tfab_sampler_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        goto err_nomem;
    s->n_vocab = n_vocab;
    s->p       = p;
    s->cand    = malloc((size_t)n_vocab * sizeof(*s->cand));
    s->prob    = malloc((size_t)n_vocab * sizeof(*s->prob));
    s->mark    = calloc(n_vocab, sizeof(*s->mark));
    s->hist    = malloc((p.repeat_last_n ? p.repeat_last_n : 1) * sizeof(*s->hist));
    if (s->cand == NULL || s->prob == NULL || s->mark == NULL || s->hist == NULL)
        goto err_free;
    tfab_sampler_reset(s, p.seed);
    *sampler_p = s;
    return TFAB_OK;

err_free:
    tfab_sampler_destroy(s);
err_nomem:
    TFAB_ERROR(MOD, "sampler: out of memory for a vocabulary of %u", n_vocab);
    return TFAB_ERR_NOMEM;
}

void tfab_sampler_destroy(tfab_sampler_t *s)
{
    if (s == NULL)
        return;
    free(s->hist);
    free(s->mark);
    free(s->prob);
    free(s->cand);
    free(s);
}

tfab_status_t tfab_sampler_accept(tfab_sampler_t *s, tfab_token_t t)
{
    if (t < 0 || (uint32_t)t >= s->n_vocab) {
        TFAB_ERROR(MOD, "sampler: token %d is outside the vocabulary (%u)", t, s->n_vocab);
        return TFAB_ERR_INVALID;
    }
    if (s->p.repeat_last_n == 0)
        return TFAB_OK;
    s->hist[s->hist_pos] = t;
    s->hist_pos          = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->hist_n < s->p.repeat_last_n)
        s->hist_n++;
    return TFAB_OK;
}

/* a ranks before b: higher logit, then lower id (a total order: results never depend on the
 * sort algorithm). */
static inline int cand_before(const cand_t *a, const cand_t *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *a, const void *b)
{
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* Keep the k best of c[0..n) in c[0..k), sorted: a min-heap of the k best so far. */
static void top_k_select(cand_t *c, size_t n, size_t k)
{
    for (size_t i = 0; i < n; i++) {
        cand_t x = c[i];
        size_t j;
        if (i < k) { /* sift up into the heap c[0..i] (root = worst) */
            for (j = i; j > 0 && cand_before(&c[(j - 1) / 2], &x); j = (j - 1) / 2)
                c[j] = c[(j - 1) / 2];
            c[j] = x;
            continue;
        }
        if (!cand_before(&x, &c[0]))
            continue;
        for (j = 0;;) { /* replace the root and sift down */
            size_t ch = 2 * j + 1;
            if (ch >= k)
                break;
            if (ch + 1 < k && cand_before(&c[ch], &c[ch + 1]))
                ch++;
            if (!cand_before(&x, &c[ch]))
                break;
            c[j] = c[ch];
            j    = ch;
        }
        c[j] = x;
    }
    qsort(c, k, sizeof(*c), cand_cmp);
}

/* Softmax of c[0..n).logit / temp into prob (c sorted, c[0] the largest). Returns the sum. */
static double softmax(const cand_t *c, size_t n, double temp, float *prob)
{
    double sum = 0, max = c[0].logit;
    for (size_t i = 0; i < n; i++) {
        double e = exp(((double)c[i].logit - max) / temp);
        prob[i]  = (float)e;
        sum += e;
    }
    return sum;
}

tfab_status_t tfab_sampler_sample(tfab_sampler_t *s, const float *logits, tfab_token_t *token_p)
{
    if (s == NULL || logits == NULL || token_p == NULL)
        return TFAB_ERR_INVALID;
    const tfab_sampler_params_t *p = &s->p;
    size_t                       n = 0;
    for (uint32_t i = 0; i < s->n_vocab; i++) /* +inf is clamped so softmax stays finite */
        if (!isnan(logits[i]) && logits[i] != -INFINITY)
            s->cand[n++] = (cand_t){fminf(logits[i], FLT_MAX), (int32_t)i};
    if (n == 0) {
        TFAB_ERROR(MOD, "sampler: every logit is NaN or -inf");
        return TFAB_ERR_INVALID;
    }
    /* 1. repetition penalty, once per distinct token of the window: mark the window's tokens
     * with a fresh epoch, then penalize the marked candidates */
    if (p->repeat_penalty != 1.0f && s->hist_n) {
        if (++s->epoch == 0) {
            memset(s->mark, 0, s->n_vocab * sizeof(*s->mark));
            s->epoch = 1;
        }
        for (uint32_t h = 0; h < s->hist_n; h++)
            s->mark[s->hist[h]] = s->epoch;
        for (size_t i = 0; i < n; i++) {
            if (s->mark[s->cand[i].id] != s->epoch)
                continue;
            float *l = &s->cand[i].logit;
            *l       = *l > 0 ? *l / p->repeat_penalty : *l * p->repeat_penalty;
        }
    }
    /* 2. greedy */
    if (p->temperature <= 0) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (cand_before(&s->cand[i], &s->cand[best]))
                best = i;
        *token_p = s->cand[best].id;
        return tfab_sampler_accept(s, *token_p);
    }
    /* 3. top-k (also sorts what is kept) */
    size_t k = p->top_k > 0 && (size_t)p->top_k < n ? (size_t)p->top_k : n;
    if (k < n)
        top_k_select(s->cand, n, k);
    else
        qsort(s->cand, n, sizeof(*s->cand), cand_cmp);
    n = k;
    /* 4. top-p and 5. min-p, on probabilities at temperature 1 */
    if (p->top_p < 1.0f || p->min_p > 0.0f) {
        double sum = softmax(s->cand, n, 1.0, s->prob), cum = 0;
        size_t keep = n;
        if (p->top_p < 1.0f) {
            for (size_t i = 0; i < n; i++) {
                cum += s->prob[i] / sum;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        if (p->min_p > 0.0f) {
            double floor_p = (double)p->min_p * s->prob[0];
            size_t i       = 1;
            while (i < keep && s->prob[i] >= floor_p)
                i++;
            keep = i;
        }
        n = keep;
    }
    /* 6. temperature and one draw */
    double sum = softmax(s->cand, n, p->temperature, s->prob);
    double u = tfab_sampler_rand_unit(s) * sum, cum = 0;
    size_t pick = n - 1;
    for (size_t i = 0; i < n; i++) {
        cum += s->prob[i];
        if (u < cum) {
            pick = i;
            break;
        }
    }
    *token_p = s->cand[pick].id;
    return tfab_sampler_accept(s, *token_p);
}
