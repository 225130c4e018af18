/* fuzz_tokenizer.c - libFuzzer target for the tokenizer's outside inputs. The first byte picks:
 *   0: byte-level BPE encode of arbitrary bytes; asserts decode(encode(s)) == s
 *   1: SentencePiece encode; asserts decode(encode(s)) == s with U+2581 read as ' ' (the space
 *      prefix that encoding adds is stripped by TFAB_DECODE_STRIP_SPACE)
 *   2: a tokenizer.json document (then encodes and decodes a fixed text with it)
 *   3: chat template detection and rendering (lengths agree with what is written)
 *   4: a GGUF file's tokenizer metadata (tfab_vocab_load_gguf), then encode and decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/gguf.h>
#include <tfab/log.h>
#include <tfab/tokenizer.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tfab_vocab_t *spm, *bpe, *bpe3;

static void quiet(tfab_log_level_t level, const char *module, const char *line, void *arg) {}

/* SPM: <unk> <s> </s>, 256 byte tokens, then a few pieces with scores. */
static tfab_vocab_t *make_spm(void)
{
    static char        bytes[256][8];
    static const char *rest[] = {"\xe2\x96\x81",
                                 "a",
                                 "b",
                                 "\xe2\x96\x81\x61",
                                 "ab",
                                 "ba",
                                 "\xe2\x96\x81\x61\x62",
                                 "aba",
                                 "\xe2\x96\x81\xe2\x96\x81",
                                 "<"};
    const char        *tok[3 + 256 + 10];
    float              score[3 + 256 + 10];
    int32_t            type[3 + 256 + 10];
    tok[0] = "<unk>", tok[1] = "<s>", tok[2] = "</s>";
    type[0] = TFAB_TOKEN_TYPE_UNKNOWN, type[1] = type[2] = TFAB_TOKEN_TYPE_CONTROL;
    score[0] = score[1] = score[2] = 0;
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        memcpy(bytes[b], "<0x", 3);
        bytes[b][3] = hex[b >> 4], bytes[b][4] = hex[b & 15], bytes[b][5] = '>', bytes[b][6] = 0;
        tok[3 + b] = bytes[b], type[3 + b] = TFAB_TOKEN_TYPE_BYTE, score[3 + b] = 0;
    }
    for (int i = 0; i < 10; i++)
        tok[259 + i] = rest[i], type[259 + i] = TFAB_TOKEN_TYPE_NORMAL, score[259 + i] = -(float)i;
    tfab_vocab_params_t p = {.field_mask = TFAB_VOCAB_PARAM_SCORES | TFAB_VOCAB_PARAM_TYPES |
                                           TFAB_VOCAB_PARAM_SPECIAL_IDS,
                             .kind     = TFAB_VOCAB_SPM,
                             .n_tokens = 269,
                             .tokens   = tok,
                             .scores   = score,
                             .types    = type,
                             .bos      = 1,
                             .eos      = 2,
                             .unk      = 0,
                             .pad      = TFAB_TOKEN_NULL,
                             .eot      = TFAB_TOKEN_NULL};
    tfab_vocab_t       *v = NULL;
    if (tfab_vocab_create(&p, &v) != TFAB_OK)
        abort();
    return v;
}

/* BPE: the 256 mapped bytes, merges, a control and a user-defined token. */
static tfab_vocab_t *make_bpe(const char *pre)
{
    static char bytes[256][4];
    const char *tok[256 + 6];
    int32_t     type[256 + 6];
    for (unsigned b = 0; b < 256; b++) {
        unsigned cp = b, n = 0;
        int      pr = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
        if (!pr) {
            for (unsigned i = 0; i < b; i++)
                n += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174);
            cp = 256 + n;
        }
        if (cp < 0x80)
            bytes[b][0] = (char)cp, bytes[b][1] = 0;
        else
            bytes[b][0] = (char)(0xc0 | (cp >> 6)), bytes[b][1] = (char)(0x80 | (cp & 0x3f)),
            bytes[b][2] = 0;
        tok[b] = bytes[b], type[b] = TFAB_TOKEN_TYPE_NORMAL;
    }
    static const char *rest[]   = {"ab", "abab", "\xc4\xa0\x61", "12", "<|x|>", "<u>"};
    static const char *merges[] = {"a b", "ab ab", "\xc4\xa0 a", "1 2"};
    for (int i = 0; i < 6; i++)
        tok[256 + i] = rest[i], type[256 + i] = TFAB_TOKEN_TYPE_NORMAL;
    type[260]             = TFAB_TOKEN_TYPE_CONTROL;
    type[261]             = TFAB_TOKEN_TYPE_USER_DEFINED;
    tfab_vocab_params_t p = {.field_mask = TFAB_VOCAB_PARAM_TYPES | TFAB_VOCAB_PARAM_MERGES |
                                           TFAB_VOCAB_PARAM_PRE,
                             .kind     = TFAB_VOCAB_BPE,
                             .n_tokens = 262,
                             .tokens   = tok,
                             .types    = type,
                             .n_merges = 4,
                             .merges   = merges,
                             .pre      = pre};
    tfab_vocab_t       *v = NULL;
    if (tfab_vocab_create(&p, &v) != TFAB_OK)
        abort();
    return v;
}

static void roundtrip(const tfab_vocab_t *v, const uint8_t *s, size_t n, unsigned enc, unsigned dec,
                      const char *want, size_t want_len)
{
    static tfab_token_t toks[8192];
    static char         out[16384];
    size_t              nt = 0, nd = 0;
    if (tfab_tokenize(v, (const char *)s, n, enc, toks, 8192, &nt) != TFAB_OK)
        abort();
    if (tfab_detokenize(v, toks, nt, dec, out, sizeof(out), &nd) != TFAB_OK)
        abort();
    if (want && (nd != want_len || memcmp(out, want, nd) != 0))
        abort(); /* decode(encode(s)) != s */
}

static void use_vocab(const tfab_vocab_t *v)
{
    static const char text[] = "hello world <|endoftext|> \xe2\x96\x81x 123 \xff";
    roundtrip(v, (const uint8_t *)text, sizeof(text) - 1,
              TFAB_ENCODE_ADD_SPECIAL | TFAB_ENCODE_PARSE_SPECIAL, TFAB_DECODE_SPECIAL, NULL, 0);
    size_t len;
    for (tfab_token_t id = 0; id < (tfab_token_t)tfab_vocab_n_tokens(v) && id < 512; id++) {
        char buf[64];
        (void)tfab_token_piece(v, id, TFAB_DECODE_SPECIAL, buf, sizeof(buf), &len);
    }
    (void)tfab_chat_tmpl_detect(tfab_vocab_chat_template(v));
}

static void fuzz_chat(const uint8_t *d, size_t n)
{
    char *s = malloc(n + 1);
    if (s == NULL)
        return;
    memcpy(s, d, n);
    s[n] = '\0';
    /* messages: role and content alternate between NULs */
    tfab_chat_msg_t m[4];
    size_t          nm = 0;
    char           *p = s, *end = s + n;
    while (nm < 4 && p < end) {
        m[nm].role = p;
        p += strlen(p) + 1;
        m[nm].content = p < end ? p : "";
        if (p < end)
            p += strlen(p) + 1;
        nm++;
    }
    (void)tfab_chat_tmpl_detect(s);
    for (int t = TFAB_CHAT_TMPL_LLAMA2; t <= TFAB_CHAT_TMPL_CHATML; t++) {
        static char buf[65536];
        char        small[16];
        size_t      len = 0, len2 = 0;
        if (tfab_chat_render((tfab_chat_tmpl_t)t, m, nm, 1, buf, sizeof(buf), &len) != TFAB_OK)
            abort();
        if (strlen(buf) > len)
            abort(); /* contents may hold no NUL, so strlen <= len */
        if (tfab_chat_render((tfab_chat_tmpl_t)t, m, nm, 1, small, sizeof(small), &len2) !=
                (len < sizeof(small) ? TFAB_OK : TFAB_ERR_RANGE) ||
            len2 != len)
            abort();
    }
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (spm == NULL) {
        tfab_log_set_sink(quiet, NULL);
        spm  = make_spm();
        bpe  = make_bpe("gpt-2");
        bpe3 = make_bpe("llama-bpe");
    }
    if (size < 2 || size > 4096)
        return 0;
    uint8_t        mode = data[0], flags = data[1];
    const uint8_t *s = data + 2;
    size_t         n = size - 2;
    switch (mode % 5) {
    case 0: {
        unsigned enc = flags & 1 ? TFAB_ENCODE_PARSE_SPECIAL : 0;
        roundtrip(flags & 2 ? bpe3 : bpe, s, n, enc, enc ? TFAB_DECODE_SPECIAL : 0, (const char *)s,
                  n);
        break;
    }
    case 1: {
        /* expected: the input with every U+2581 read as a space */
        static char want[4096];
        size_t      w = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && s[i] == 0xe2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                want[w++] = ' ';
                i += 2;
            } else {
                want[w++] = (char)s[i];
            }
        }
        roundtrip(spm, s, n, 0, TFAB_DECODE_STRIP_SPACE, want, w);
        roundtrip(spm, s, n, TFAB_ENCODE_PARSE_SPECIAL | TFAB_ENCODE_ADD_SPECIAL, 0, NULL, 0);
        break;
    }
    case 2: {
        tfab_vocab_t *v = NULL;
        if (tfab_vocab_load_hf_json((const char *)s, n, &v) == TFAB_OK) {
            use_vocab(v);
            tfab_vocab_destroy(v);
        }
        break;
    }
    case 3:
        fuzz_chat(s, n);
        break;
    default: {
        tfab_gguf_t  *g = NULL;
        tfab_vocab_t *v = NULL;
        if (tfab_gguf_open_buffer(s, n, "fuzz", &g) != TFAB_OK)
            break;
        if (tfab_vocab_load_gguf(g, &v) == TFAB_OK) {
            use_vocab(v);
            tfab_vocab_destroy(v);
        }
        tfab_gguf_close(g);
        break;
    }
    }
    return 0;
}
