/* pretok.c - byte-level BPE pre-tokenization: the GPT-2 byte-to-unicode map and the regex
 * splitters (PCRE2, UTF + UCP) chosen by the vocab's pre-tokenizer name. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the 68 others to
 * U+0100.. in byte order. */
static int bytemap_printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
}

uint32_t bytemap_cp(uint8_t b)
{
    if (bytemap_printable(b))
        return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++)
        n += !bytemap_printable(i);
    return 256 + n;
}

int bytemap_byte(uint32_t cp)
{
    if (cp < 256)
        return bytemap_printable(cp) ? (int)cp : -1;
    uint32_t n = cp - 256;
    for (unsigned b = 0; b < 256; b++)
        if (!bytemap_printable(b) && n-- == 0)
            return (int)b;
    return -1;
}

/* clang-format off */
/* The patterns are the pre-tokenizer regexes of the models' Hugging Face tokenizer.json files
 * (case-insensitive groups spelled out, as PCRE2 and every engine read them alike). */
#define CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"

static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+",
                                         "[0-9][0-9][0-9]"};
static const char *const re_gpt2[]    = {GPT2_RE};
static const char *const re_llama3[]  = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_qwen2[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_qwen35[] = {
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
static const char *const re_starcoder[] = {"\\p{N}", GPT2_RE};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]"};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                                                "[\\x{4e00}-\\x{9fa5}\\x{0800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+",
                                                "\\p{N}"};
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    ("\\s?[A-Za-z\\x{b5}\\x{c0}-\\x{d6}\\x{d8}-\\x{f6}\\x{f8}-\\x{1ba}\\x{1bc}-\\x{1bf}\\x{1c4}-"
    "\\x{293}\\x{295}-\\x{2af}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37b}-\\x{37d}\\x{37f}\\x{386}"
    "\\x{388}-\\x{38a}\\x{38c}\\x{38e}-\\x{3a1}\\x{3a3}-\\x{3f5}\\x{3f7}-\\x{481}\\x{48a}-\\x{52f}"
    "\\x{531}-\\x{556}\\x{10a0}-\\x{10c5}\\x{13a0}-\\x{13f5}\\x{13f8}-\\x{13fd}\\x{1c90}-\\x{1cba}"
    "\\x{1cbd}-\\x{1cbf}\\x{1d00}-\\x{1d2b}\\x{1d6b}-\\x{1d77}\\x{1d79}-\\x{1d9a}\\x{1e00}-"
    "\\x{1f15}\\x{1f18}-\\x{1f1d}\\x{1f20}-\\x{1f45}\\x{1f48}-\\x{1f4d}\\x{1f50}-\\x{1f57}\\x{1f59}"
    "\\x{1f5b}\\x{1f5d}\\x{1f5f}-\\x{1f7d}\\x{1f80}-\\x{1fb4}\\x{1fb6}-\\x{1fbc}\\x{1fbe}\\x{1fc2}-"
    "\\x{1fc4}\\x{1fc6}-\\x{1fcc}\\x{1fd0}-\\x{1fd3}\\x{1fd6}-\\x{1fdb}\\x{1fe0}-\\x{1fec}\\x{1ff2}-"
    "\\x{1ff4}\\x{1ff6}-\\x{1ffc}\\x{2102}\\x{2107}\\x{210a}-\\x{2113}\\x{2115}\\x{2119}-\\x{211d}"
    "\\x{2124}\\x{2126}\\x{2128}\\x{212a}-\\x{212d}\\x{212f}-\\x{2134}\\x{2139}\\x{213c}-\\x{213f}"
    "\\x{2145}-\\x{2149}\\x{214e}\\x{2183}\\x{2184}\\x{2c00}-\\x{2c7b}\\x{2c7e}-\\x{2ce4}\\x{2ceb}-"
    "\\x{2cee}\\x{2cf2}\\x{2cf3}\\x{a640}-\\x{a66d}\\x{a680}-\\x{a69b}\\x{a722}-\\x{a76f}\\x{a771}-"
    "\\x{a787}\\x{a78b}-\\x{a78e}\\x{ab70}-\\x{abbf}\\x{fb00}-\\x{fb06}\\x{fb13}-\\x{fb17}\\x{ff21}-"
    "\\x{ff3a}\\x{ff41}-\\x{ff5a}\\x{10400}-\\x{1044f}\\x{104b0}-\\x{104d3}\\x{104d8}-\\x{104fb}"
    "\\x{10c80}-\\x{10cb2}\\x{10cc0}-\\x{10cf2}\\x{118a0}-\\x{118df}\\x{1e900}-\\x{1e943}]+"),
    "\\s?[!-/:-~\\x{ff01}-\\x{ff0f}\\x{ff1a}-\\x{ff5e}\\x{2018}-\\x{201f}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4e00}-\\x{9fa5}\\x{0800}-\\x{4e00}\\x{ac00}-\\x{d7ff}]+",
    "\\p{N}+"};

#define N_(a) (uint32_t)(sizeof(a) / sizeof(a[0]))
static const struct {
    const char        *names;  /* space-separated aliases */
    const char *const *pats;
    uint32_t           n;
    int                ignore_merges;
} pretoks[] = {
    {"default", re_default, N_(re_default), 0},
    {"gpt-2 gpt2 mpt phi-2 olmo jina-es jina-de", re_gpt2, N_(re_gpt2), 0},
    {"llama-bpe llama3 llama-v3 falcon3 smaug-bpe dbrx", re_llama3, N_(re_llama3), 1},
    {"qwen2 stablelm2 deepseek-r1-qwen hunyuan", re_qwen2, N_(re_qwen2), 0},
    {"qwen35", re_qwen35, N_(re_qwen35), 0},
    {"starcoder refact command-r smollm codeshell exaone minerva", re_starcoder, N_(re_starcoder), 0},
    {"falcon", re_falcon, N_(re_falcon), 0},
    {"deepseek-llm", re_deepseek_llm, N_(re_deepseek_llm), 0},
    {"deepseek-coder", re_deepseek_coder, N_(re_deepseek_coder), 0},
};

/* clang-format on */

const char *const *pretok_patterns(const char *name, uint32_t *n_p, int *ignore_merges_p)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < sizeof(pretoks) / sizeof(pretoks[0]); i++) {
        for (const char *s = pretoks[i].names; *s;) {
            size_t l = strcspn(s, " ");
            if (l == nl && memcmp(s, name, l) == 0) {
                *n_p             = pretoks[i].n;
                *ignore_merges_p = pretoks[i].ignore_merges;
                return pretoks[i].pats;
            }
            s += l;
            while (*s == ' ')
                s++;
        }
    }
    return NULL;
}

/* PCRE2's \s with UCP is [\t-\r\p{Z}]; Unicode White_Space (what the reference tokenizers use)
 * adds U+0085. Widen \s and \S accordingly. */
static char *widen_space(const char *pat)
{
    size_t n   = strlen(pat);
    char  *out = malloc(n * 12 + 1), *o = out;
    int    in_class = 0;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (pat[i] == '\\' && i + 1 < n) {
            char c = pat[i + 1];
            if (c == 's' && !in_class)
                o += sprintf(o, "[\\s\\x{85}]");
            else if (c == 's')
                o += sprintf(o, "\\s\\x{85}");
            else if (c == 'S' && !in_class)
                o += sprintf(o, "[^\\s\\x{85}]");
            else {
                *o++ = '\\';
                *o++ = c;
            }
            i++;
            continue;
        }
        if (pat[i] == '[' && !in_class) {
            in_class = 1;
            *o++     = pat[i];
            if (i + 1 < n && pat[i + 1] == '^')
                *o++ = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']') /* a leading ] is literal */
                *o++ = pat[++i];
            continue;
        }
        if (pat[i] == ']' && in_class)
            in_class = 0;
        *o++ = pat[i];
    }
    *o = '\0';
    return out;
}

void *pretok_compile(const char *pattern)
{
    char *pat = widen_space(pattern);
    if (pat == NULL) {
        TFAB_ERROR(TOK_MOD, "pre-tokenizer: out of memory");
        return NULL;
    }
    int         err;
    PCRE2_SIZE  erroff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY, &err,
                      &erroff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof(msg));
        TFAB_ERROR(TOK_MOD, "pre-tokenizer regex '%.80s' does not compile at offset %zu: %s",
                   pattern, (size_t)erroff, (const char *)msg);
        free(pat);
        return NULL;
    }
    free(pat);
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    return re;
}

void pretok_free(void *re)
{
    pcre2_code_free(re);
}

tfab_status_t span_push(span_vec_t *sv, uint32_t start, uint32_t len)
{
    if (sv->n == sv->cap) {
        size_t  cap = sv->cap ? sv->cap * 2 : 64;
        span_t *nv  = realloc(sv->v, cap * sizeof(*nv));
        if (nv == NULL)
            return TFAB_ERR_NOMEM;
        sv->v   = nv;
        sv->cap = cap;
    }
    sv->v[sv->n++] = (span_t){start, len};
    return TFAB_OK;
}

static size_t utf8_len(uint8_t c)
{
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
}

/* Split each span of in by re into out: matches and the text between them, in order. */
static tfab_status_t split_one(const pcre2_code *re, pcre2_match_data *md, const char *text,
                               const span_vec_t *in, span_vec_t *out)
{
    tfab_status_t st;
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        const char *s   = text + in->v[k].start;
        size_t      len = in->v[k].len, pos = 0, last = 0;
        while (pos < len) {
            int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0 && rc != 0) {
                PCRE2_UCHAR msg[120];
                pcre2_get_error_message(rc, msg, sizeof(msg));
                TFAB_ERROR(TOK_MOD, "pre-tokenizer regex match failed: %s", (const char *)msg);
                return TFAB_ERR_INVALID;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t      ms = ov[0], me = ov[1];
            if (me <= ms) { /* empty match: step one character */
                pos = ms + utf8_len((uint8_t)s[ms]);
                continue;
            }
            if (ms > last && (st = span_push(out, in->v[k].start + (uint32_t)last,
                                             (uint32_t)(ms - last))) != TFAB_OK)
                return st;
            if ((st = span_push(out, in->v[k].start + (uint32_t)ms, (uint32_t)(me - ms))) !=
                TFAB_OK)
                return st;
            pos = last = me;
        }
        if (last < len && (st = span_push(out, in->v[k].start + (uint32_t)last,
                                          (uint32_t)(len - last))) != TFAB_OK)
            return st;
    }
    return TFAB_OK;
}

tfab_status_t pretok_split(const tfab_vocab_t *v, const char *text, uint32_t len, span_vec_t *out)
{
    tfab_status_t st = TFAB_OK;
    span_vec_t    a = {0}, b = {0}, *cur = &a, *nxt = &b;
    out->n = 0;
    if (len == 0)
        return TFAB_OK;
    if ((st = span_push(cur, 0, len)) != TFAB_OK)
        goto out_free;
    for (uint32_t i = 0; i < v->n_regex; i++) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(v->regex[i], NULL);
        if (md == NULL) {
            st = TFAB_ERR_NOMEM;
            goto out_free;
        }
        st = split_one(v->regex[i], md, text, cur, nxt);
        pcre2_match_data_free(md);
        if (st != TFAB_OK)
            goto out_free;
        span_vec_t *t = cur;
        cur           = nxt;
        nxt           = t;
    }
    free(out->v);
    *out = *cur;
    if (cur == &a)
        a = (span_vec_t){0};
    else
        b = (span_vec_t){0};
out_free:
    free(a.v);
    free(b.v);
    return st;
}
