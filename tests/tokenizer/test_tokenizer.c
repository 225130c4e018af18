/* test_tokenizer.c - SPM and byte-level BPE encoding on hand-made vocabularies with exact
 * expected ids, special tokens, bos/eos, decoding, buffer sizing, tokenizer.json loading and
 * chat template rendering. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <tfab/tokenizer.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- a tiny SentencePiece vocab --------------------------------------------------------------
 * 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, 259 "▁", 260 h, 261 e, 262 l, 263 o,
 * 264 "▁h" (-1), 265 "ll" (-2), 266 "▁he" (-3), 267 "llo" (-4), 268 "▁hello" (-5), 269 "el" (-10)
 */
#define SPM_N 270
static tfab_vocab_t *make_spm(void)
{
    static char              bytes[256][8];
    const char              *tok[SPM_N];
    float                    score[SPM_N];
    int32_t                  type[SPM_N];
    static const char *const rest[] = {
        "\xe2\x96\x81",      "h", "e", "l", "o", "\xe2\x96\x81h", "ll", "\xe2\x96\x81he", "llo",
        "\xe2\x96\x81hello", "el"};
    static const float rest_score[] = {-100, -100, -100, -100, -100, -1, -2, -3, -4, -5, -10};
    tok[0] = "<unk>", type[0] = TFAB_TOKEN_TYPE_UNKNOWN, score[0] = 0;
    tok[1] = "<s>", type[1] = TFAB_TOKEN_TYPE_CONTROL, score[1] = 0;
    tok[2] = "</s>", type[2] = TFAB_TOKEN_TYPE_CONTROL, score[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        tok[3 + b] = bytes[b], type[3 + b] = TFAB_TOKEN_TYPE_BYTE, score[3 + b] = 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(rest); i++)
        tok[259 + i] = rest[i], type[259 + i] = TFAB_TOKEN_TYPE_NORMAL,
                  score[259 + i] = rest_score[i];
    tfab_vocab_params_t p = {.field_mask = TFAB_VOCAB_PARAM_SCORES | TFAB_VOCAB_PARAM_TYPES |
                                           TFAB_VOCAB_PARAM_SPECIAL_IDS,
                             .kind     = TFAB_VOCAB_SPM,
                             .n_tokens = SPM_N,
                             .tokens   = tok,
                             .scores   = score,
                             .types    = type,
                             .bos      = 1,
                             .eos      = 2,
                             .unk      = 0,
                             .pad      = TFAB_TOKEN_NULL,
                             .eot      = TFAB_TOKEN_NULL};
    tfab_vocab_t       *v = NULL;
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_OK);
    return v;
}

/* ---- a tiny byte-level BPE vocab -------------------------------------------------------------
 * ids 0..255: the GPT-2 mapped char of byte i; 256 "he", 257 "ll", 258 "hell", 259 "hello",
 * 260 "Ġw", 261 "<|end|>" (control), 262 "<tool>" (user-defined) */
#define BPE_N 263
static void byte_char(unsigned b, char *out)
{
    unsigned cp = b, n = 0;
    int      printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    if (!printable) {
        for (unsigned i = 0; i < b; i++)
            n += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174));
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp, out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = 0;
    }
}

static tfab_vocab_t *make_bpe(const char *pre)
{
    static char bytes[256][4];
    const char *tok[BPE_N];
    int32_t     type[BPE_N];
    for (unsigned b = 0; b < 256; b++) {
        byte_char(b, bytes[b]);
        tok[b] = bytes[b], type[b] = TFAB_TOKEN_TYPE_NORMAL;
    }
    static const char *const rest[] = {"he",        "ll",      "hell",  "hello",
                                       "\xc4\xa0w", "<|end|>", "<tool>"};
    for (size_t i = 0; i < ARRAY_LEN(rest); i++)
        tok[256 + i] = rest[i], type[256 + i] = TFAB_TOKEN_TYPE_NORMAL;
    type[261]                         = TFAB_TOKEN_TYPE_CONTROL;
    type[262]                         = TFAB_TOKEN_TYPE_USER_DEFINED;
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "x y"};
    tfab_vocab_params_t      p = {.field_mask = TFAB_VOCAB_PARAM_TYPES | TFAB_VOCAB_PARAM_MERGES |
                                                TFAB_VOCAB_PARAM_PRE | TFAB_VOCAB_PARAM_SPECIAL_IDS |
                                                TFAB_VOCAB_PARAM_ADD_EOS,
                                  .kind     = TFAB_VOCAB_BPE,
                                  .n_tokens = BPE_N,
                                  .tokens   = tok,
                                  .types    = type,
                                  .n_merges = ARRAY_LEN(merges),
                                  .merges   = merges,
                                  .pre      = pre,
                                  .bos      = TFAB_TOKEN_NULL,
                                  .eos      = 261,
                                  .unk      = TFAB_TOKEN_NULL,
                                  .pad      = TFAB_TOKEN_NULL,
                                  .eot      = TFAB_TOKEN_NULL,
                                  .add_eos  = 1};
    tfab_vocab_t            *v = NULL;
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_OK);
    return v;
}

static void expect_ids(const tfab_vocab_t *v, const char *text, unsigned flags,
                       const tfab_token_t *want, size_t n_want)
{
    tfab_token_t got[256];
    size_t       n = 9999;
    assert_int_equal(tfab_tokenize(v, text, strlen(text), flags, got, ARRAY_LEN(got), &n), TFAB_OK);
    if (n != n_want || (n && memcmp(got, want, n * sizeof(*got)) != 0)) {
        fprintf(stderr, "'%s': got", text);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(n, n_want);
    if (n)
        assert_memory_equal(got, want, n * sizeof(*got));
}

static void expect_text(const tfab_vocab_t *v, const tfab_token_t *ids, size_t n, unsigned flags,
                        const char *want)
{
    char   buf[256];
    size_t len = 0;
    assert_int_equal(tfab_detokenize(v, ids, n, flags, buf, sizeof(buf), &len), TFAB_OK);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(buf, want, len);
}

static void test_spm_encode(void **state)
{
    tfab_vocab_t *v = make_spm();
    assert_int_equal(tfab_vocab_kind(v), TFAB_VOCAB_SPM);
    assert_int_equal(tfab_vocab_n_tokens(v), SPM_N);
    assert_int_equal(tfab_vocab_token_type(v, 3 + 'A'), TFAB_TOKEN_TYPE_BYTE);
    assert_int_equal(tfab_vocab_find(v, "llo", 3), 267);
    assert_int_equal(tfab_vocab_find(v, "lol", 3), TFAB_TOKEN_NULL);
    expect_ids(v, "hello", 0, (tfab_token_t[]){268}, 1);
    expect_ids(v, "hell", 0, (tfab_token_t[]){266, 265}, 2);   /* "ll" (-2) beats "▁he" (-3) */
    expect_ids(v, "hi", 0, (tfab_token_t[]){264, 3 + 'i'}, 2); /* byte fallback */
    expect_ids(v, "", 0, NULL, 0);
    expect_ids(v, "", TFAB_ENCODE_ADD_SPECIAL, (tfab_token_t[]){1}, 1);
    expect_ids(v, "hello", TFAB_ENCODE_ADD_SPECIAL, (tfab_token_t[]){1, 268}, 2);
    /* control tokens: only with PARSE_SPECIAL; the text after one gets the space prefix */
    expect_ids(v, "<s>hello", TFAB_ENCODE_PARSE_SPECIAL, (tfab_token_t[]){1, 268}, 2);
    expect_ids(v, "<s>hello", 0, (tfab_token_t[]){259, 3 + '<', 3 + 's', 3 + '>', 260, 261, 267},
               7);
    expect_ids(v, "hello hello", 0, (tfab_token_t[]){268, 268}, 2);
    tfab_vocab_destroy(v);
}

static void test_spm_decode(void **state)
{
    tfab_vocab_t *v = make_spm();
    expect_text(v, (tfab_token_t[]){268}, 1, 0, " hello");
    expect_text(v, (tfab_token_t[]){268}, 1, TFAB_DECODE_STRIP_SPACE, "hello");
    expect_text(v, (tfab_token_t[]){1, 268, 2}, 3, TFAB_DECODE_STRIP_SPACE, "hello");
    expect_text(v, (tfab_token_t[]){1, 268, 2}, 3, TFAB_DECODE_SPECIAL | TFAB_DECODE_STRIP_SPACE,
                "<s>hello</s>");
    expect_text(v, (tfab_token_t[]){259, 3 + 0xe2, 3 + 0x82, 3 + 0xac}, 4, 0, " \xe2\x82\xac");
    /* a piece alone, and buffer sizing */
    char   buf[8];
    size_t n = 0;
    assert_int_equal(tfab_token_piece(v, 268, 0, buf, sizeof(buf), &n), TFAB_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, " hello", 6);
    assert_int_equal(tfab_token_piece(v, 268, 0, buf, 3, &n), TFAB_ERR_RANGE);
    assert_int_equal(n, 6);
    assert_int_equal(tfab_token_piece(v, SPM_N, 0, buf, sizeof(buf), &n), TFAB_ERR_INVALID);
    assert_int_equal(tfab_token_piece(v, 3 + 0x41, 0, buf, sizeof(buf), &n), TFAB_OK);
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], 'A');
    tfab_vocab_destroy(v);
}

static void test_bpe_encode(void **state)
{
    tfab_vocab_t *v = make_bpe("gpt-2");
    assert_string_equal(tfab_vocab_pre(v), "gpt-2");
    expect_ids(v, "hello world", 0, (tfab_token_t[]){259, 260, 'o', 'r', 'l', 'd'}, 6);
    expect_ids(v, "hello", TFAB_ENCODE_ADD_SPECIAL, (tfab_token_t[]){259, 261}, 2); /* add_eos */
    expect_ids(v, "hell\n", 0, (tfab_token_t[]){258, '\n'}, 2);
    /* control token: text unless PARSE_SPECIAL; user-defined: always a token */
    expect_ids(v, "<|end|>", 0, (tfab_token_t[]){'<', '|', 'e', 'n', 'd', '|', '>'}, 7);
    expect_ids(v, "<|end|>", TFAB_ENCODE_PARSE_SPECIAL, (tfab_token_t[]){261}, 1);
    expect_ids(v, "a<tool>he", 0, (tfab_token_t[]){'a', 262, 256}, 3);
    /* bytes outside ASCII, and invalid UTF-8, go through the byte map */
    expect_ids(v, "\xff\xfe", 0, (tfab_token_t[]){0xff, 0xfe}, 2);
    expect_ids(v, "\xe2\x82\xac!", 0, (tfab_token_t[]){0xe2, 0x82, 0xac, '!'}, 4);
    /* too small a buffer: TFAB_ERR_RANGE with the count needed */
    tfab_token_t out[2];
    size_t       n = 0;
    assert_int_equal(tfab_tokenize(v, "hello world", 11, 0, out, 2, &n), TFAB_ERR_RANGE);
    assert_int_equal(n, 6);
    assert_int_equal(out[0], 259);
    assert_true(tfab_vocab_is_eog(v, 261));
    assert_false(tfab_vocab_is_eog(v, 259));
    tfab_vocab_destroy(v);

    /* the llama3 pre-tokenizer: digits in groups of three, merges ignored for whole tokens */
    v = make_bpe("llama-bpe");
    expect_ids(v, "12345", 0, (tfab_token_t[]){'1', '2', '3', '4', '5'}, 5);
    expect_ids(v, "hello", 0, (tfab_token_t[]){259}, 1);
    tfab_vocab_destroy(v);
}

static void test_bpe_decode(void **state)
{
    tfab_vocab_t *v = make_bpe("gpt-2");
    expect_text(v, (tfab_token_t[]){259, 260, 'o', 'r', 'l', 'd'}, 6, 0, "hello world");
    expect_text(v, (tfab_token_t[]){259, 261}, 2, 0, "hello");
    expect_text(v, (tfab_token_t[]){259, 261}, 2, TFAB_DECODE_SPECIAL, "hello<|end|>");
    expect_text(v, (tfab_token_t[]){262, 0xff, 0x0a}, 3, 0, "<tool>\xff\n");
    char   buf[4];
    size_t n = 0;
    assert_int_equal(tfab_detokenize(v, (tfab_token_t[]){259, 259}, 2, 0, buf, sizeof(buf), &n),
                     TFAB_ERR_RANGE);
    assert_int_equal(n, 10);
    assert_int_equal(tfab_detokenize(v, (tfab_token_t[]){-1}, 1, 0, buf, sizeof(buf), &n),
                     TFAB_ERR_INVALID);
    tfab_vocab_destroy(v);
}

static void test_vocab_errors(void **state)
{
    const char         *tok[] = {"a", "b"};
    tfab_vocab_t       *v     = (tfab_vocab_t *)0x1;
    tfab_vocab_params_t p     = {.kind       = TFAB_VOCAB_BPE,
                                 .n_tokens   = 2,
                                 .tokens     = tok,
                                 .field_mask = TFAB_VOCAB_PARAM_PRE,
                                 .pre        = "no-such-pre"};
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_ERR_UNSUPPORTED);
    assert_ptr_equal(v, (tfab_vocab_t *)0x1);
    p.pre        = "gpt-2";
    p.field_mask = TFAB_VOCAB_PARAM_PRE | TFAB_VOCAB_PARAM_SPECIAL_IDS;
    p.bos = p.unk = p.pad = p.eot = TFAB_TOKEN_NULL;
    p.eos                         = 2; /* out of range */
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_ERR_INVALID);
    p.field_mask  = TFAB_VOCAB_PARAM_PRE_REGEX;
    p.n_pre_regex = 1;
    p.pre_regex   = (const char *[]){"(unbalanced"};
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_ERR_INVALID);
    p.n_tokens = 0;
    assert_int_equal(tfab_vocab_create(&p, &v), TFAB_ERR_INVALID);
    assert_ptr_equal(v, (tfab_vocab_t *)0x1);
    tfab_vocab_destroy(NULL);
}

static const char hf_json[] =
    "{\"version\":\"1.0\",\"added_tokens\":["
    "{\"id\":13,\"content\":\"<|endoftext|>\",\"special\":true},"
    "{\"id\":14,\"content\":\"<|user|>\",\"special\":false}],"
    "\"normalizer\":null,"
    "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
    "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?i:'s|'t)|\\\\p{L}+|\\\\s+\"},\"behavior\":"
    "\"Isolated\"},"
    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]},"
    "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"ignore_merges\":false,\"vocab\":{"
    "\"h\":0,\"e\":1,\"l\":2,\"o\":3,\"\\u0120\":4,\"w\":5,\"r\":6,\"d\":7,"
    "\"he\":8,\"ll\":9,\"hell\":10,\"hello\":11,\"wo\":12},"
    "\"merges\":[\"h e\",\"l l\",[\"he\",\"ll\"],\"hell o\",\"w o\"]}}";

static void test_hf_json(void **state)
{
    tfab_vocab_t *v = NULL;
    assert_int_equal(tfab_vocab_load_hf_json(hf_json, strlen(hf_json), &v), TFAB_OK);
    assert_int_equal(tfab_vocab_kind(v), TFAB_VOCAB_BPE);
    assert_int_equal(tfab_vocab_n_tokens(v), 15);
    assert_int_equal(tfab_vocab_eos(v), 13);
    assert_int_equal(tfab_vocab_bos(v), TFAB_TOKEN_NULL);
    assert_int_equal(tfab_vocab_token_type(v, 13), TFAB_TOKEN_TYPE_CONTROL);
    assert_int_equal(tfab_vocab_token_type(v, 14), TFAB_TOKEN_TYPE_USER_DEFINED);
    /* Split regex (not GPT-2's): " " is a word of its own, so "Ġ" never merges with "w" */
    expect_ids(v, "hello world", 0, (tfab_token_t[]){11, 4, 12, 6, 2, 7}, 6);
    expect_ids(v, "<|user|>hello<|endoftext|>", TFAB_ENCODE_PARSE_SPECIAL,
               (tfab_token_t[]){14, 11, 13}, 3);
    expect_text(v, (tfab_token_t[]){11, 4, 12, 6, 2, 7}, 6, 0, "hello world");
    tfab_vocab_destroy(v);
    /* SentencePiece-style: byte fallback, U+2581 normalizer, scores from merge order */
    static const char spm_json[] =
        "{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\","
        "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x41>\":3,\"\\u2581\":4,\"a\":5,"
        "\"b\":6,\"\\u2581a\":7,\"ab\":8},\"merges\":[\"\\u2581 a\",\"a b\"]},"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\","
        "\"prepend\":\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},"
        "\"content\":\"\\u2581\"}]},\"added_tokens\":[{\"id\":1,\"content\":\"<s>\","
        "\"special\":true},{\"id\":2,\"content\":\"</s>\",\"special\":true}],"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
        "{\"id\":\"<s>\"}},{\"Sequence\":{\"id\":\"A\"}}]}}";
    assert_int_equal(tfab_vocab_load_hf_json(spm_json, strlen(spm_json), &v), TFAB_OK);
    assert_int_equal(tfab_vocab_kind(v), TFAB_VOCAB_SPM);
    assert_int_equal(tfab_vocab_bos(v), 1);
    assert_int_equal(tfab_vocab_unk(v), 0);
    assert_true(tfab_vocab_add_bos(v));
    assert_int_equal(tfab_vocab_token_type(v, 3), TFAB_TOKEN_TYPE_BYTE);
    assert_true(tfab_vocab_token_score(v, 7) > tfab_vocab_token_score(v, 8));
    expect_ids(v, "aab", TFAB_ENCODE_ADD_SPECIAL, (tfab_token_t[]){1, 7, 8}, 3);
    expect_ids(v, "A", TFAB_ENCODE_ADD_SPECIAL, (tfab_token_t[]){1, 4, 3}, 3);
    expect_ids(v, "c", 0, (tfab_token_t[]){4, 0}, 2); /* no byte token: unk */
    expect_text(v, (tfab_token_t[]){1, 7, 8, 4, 3}, 5, TFAB_DECODE_STRIP_SPACE, "aab A");
    tfab_vocab_destroy(v);
    /* malformed inputs */
    static const char *const bad[] = {
        "",
        "{",
        "[]",
        "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{}}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[7]}}",
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1}]}"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        v = (tfab_vocab_t *)0x1;
        assert_true(tfab_vocab_load_hf_json(bad[i], strlen(bad[i]), &v) < 0);
        assert_ptr_equal(v, (tfab_vocab_t *)0x1);
    }
}

static void expect_chat(tfab_chat_tmpl_t t, const tfab_chat_msg_t *m, size_t n, int add,
                        const char *want)
{
    char   buf[1024];
    size_t len = 0;
    assert_int_equal(tfab_chat_render(t, m, n, add, buf, sizeof(buf), &len), TFAB_OK);
    assert_string_equal(buf, want);
    assert_int_equal(len, strlen(want));
}

static void test_chat(void **state)
{
    const tfab_chat_msg_t m[] = {{"system", "You are terse."},
                                 {"user", "Hi there "},
                                 {"assistant", " Hello."},
                                 {"user", "2+2?"}};
    expect_chat(TFAB_CHAT_TMPL_CHATML, m, 4, 1,
                "<|im_start|>system\nYou are terse.<|im_end|>\n"
                "<|im_start|>user\nHi there <|im_end|>\n"
                "<|im_start|>assistant\n Hello.<|im_end|>\n"
                "<|im_start|>user\n2+2?<|im_end|>\n"
                "<|im_start|>assistant\n");
    expect_chat(TFAB_CHAT_TMPL_LLAMA3, m, 4, 1,
                "<|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_chat(TFAB_CHAT_TMPL_LLAMA2, m, 4, 1,
                "[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello. </s>"
                "<s>[INST] 2+2? [/INST]");
    expect_chat(TFAB_CHAT_TMPL_CHATML, m + 1, 1, 0, "<|im_start|>user\nHi there <|im_end|>\n");
    expect_chat(TFAB_CHAT_TMPL_LLAMA3, NULL, 0, 0, "");

    assert_int_equal(tfab_chat_tmpl_detect("chatml"), TFAB_CHAT_TMPL_CHATML);
    assert_int_equal(tfab_chat_tmpl_detect("llama2"), TFAB_CHAT_TMPL_LLAMA2);
    assert_int_equal(tfab_chat_tmpl_detect("llama3"), TFAB_CHAT_TMPL_LLAMA3);
    assert_int_equal(tfab_chat_tmpl_detect("{% for message in messages %}{{'<|im_start|>' + "
                                           "message['role'] + '\\n'}}{% endfor %}"),
                     TFAB_CHAT_TMPL_CHATML);
    assert_int_equal(tfab_chat_tmpl_detect("{{ '<|start_header_id|>' + message['role'] + "
                                           "'<|end_header_id|>\\n\\n' }}"),
                     TFAB_CHAT_TMPL_LLAMA3);
    assert_int_equal(tfab_chat_tmpl_detect("{{ bos_token + '[INST] ' + content + ' [/INST]' }}"),
                     TFAB_CHAT_TMPL_LLAMA2);
    assert_int_equal(tfab_chat_tmpl_detect("{{ messages }}"), TFAB_CHAT_TMPL_UNKNOWN);
    assert_int_equal(tfab_chat_tmpl_detect(NULL), TFAB_CHAT_TMPL_UNKNOWN);
    assert_string_equal(tfab_chat_tmpl_name(TFAB_CHAT_TMPL_LLAMA3), "llama3");

    char   small[10];
    size_t len = 0;
    assert_int_equal(tfab_chat_render(TFAB_CHAT_TMPL_CHATML, m, 1, 0, small, sizeof(small), &len),
                     TFAB_ERR_RANGE);
    assert_int_equal(len, strlen("<|im_start|>system\nYou are terse.<|im_end|>\n"));
    assert_int_equal(small[9], '\0');
    assert_int_equal(tfab_chat_render(TFAB_CHAT_TMPL_UNKNOWN, m, 1, 0, small, sizeof(small), &len),
                     TFAB_ERR_INVALID);
    const tfab_chat_msg_t bad = {"user", NULL};
    assert_int_equal(
        tfab_chat_render(TFAB_CHAT_TMPL_CHATML, &bad, 1, 0, small, sizeof(small), &len),
        TFAB_ERR_INVALID);
}

/* Encoding is not quadratic: 1 MiB of one letter (one long word) and of spaces. */
static void test_long_input(void **state)
{
    tfab_vocab_t *v   = make_bpe("llama-bpe");
    size_t        len = 1 << 20;
    char         *s   = malloc(len);
    tfab_token_t *out = malloc(len * sizeof(*out));
    size_t        n   = 0;
    memset(s, 'l', len);
    assert_int_equal(tfab_tokenize(v, s, len, 0, out, len, &n), TFAB_OK);
    assert_int_equal(n, len / 2);
    assert_int_equal(out[0], 257);
    memset(s, ' ', len);
    assert_int_equal(tfab_tokenize(v, s, len, 0, out, len, &n), TFAB_OK);
    assert_int_equal(n, len);
    tfab_vocab_destroy(v);
    v = make_spm();
    memset(s, 'l', len);
    assert_int_equal(tfab_tokenize(v, s, len, 0, out, len, &n), TFAB_OK);
    assert_int_equal(n, len / 2 + 1); /* "▁", then "ll" pairs */
    tfab_vocab_destroy(v);
    free(out);
    free(s);
}

/* One shared vocab, several threads encoding at once (compiled regexes, hashes are shared). */
static void *encode_loop(void *arg)
{
    const tfab_vocab_t *v      = arg;
    static const char   text[] = "hello world, hello <tool> 12345 \xe2\x82\xac!\n\n  hell";
    tfab_token_t        first[64], again[64];
    size_t              n1 = 0, n2 = 0;
    if (tfab_tokenize(v, text, sizeof(text) - 1, 0, first, 64, &n1) != TFAB_OK)
        return (void *)1;
    for (int i = 0; i < 300; i++)
        if (tfab_tokenize(v, text, sizeof(text) - 1, 0, again, 64, &n2) != TFAB_OK || n2 != n1 ||
            memcmp(first, again, n1 * sizeof(*first)) != 0)
            return (void *)1;
    return NULL;
}

static void test_threads(void **state)
{
    tfab_vocab_t *v = make_bpe("llama-bpe");
    pthread_t     th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, encode_loop, v), 0);
    for (int i = 0; i < 4; i++) {
        void *r = (void *)1;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_null(r);
    }
    tfab_vocab_destroy(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_encode),   cmocka_unit_test(test_spm_decode),
        cmocka_unit_test(test_bpe_encode),   cmocka_unit_test(test_bpe_decode),
        cmocka_unit_test(test_vocab_errors), cmocka_unit_test(test_hf_json),
        cmocka_unit_test(test_chat),         cmocka_unit_test(test_long_input),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
