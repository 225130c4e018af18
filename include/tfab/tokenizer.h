/* tfab/tokenizer.h - vocabularies (SentencePiece-style and byte-level BPE), text <-> token ids,
 * and chat templates (llama2, llama3, chatml) rendering messages to a prompt. */
#ifndef TFAB_TOKENIZER_H
#define TFAB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t tfab_token_t;
#define TFAB_TOKEN_NULL ((tfab_token_t)-1)

/* How text becomes tokens. */
typedef enum tfab_vocab_kind {
    TFAB_VOCAB_SPM = 1, /* SentencePiece-style BPE: ' ' -> U+2581, merges by token score,
                           byte fallback to <0xXX> tokens (GGUF tokenizer.ggml.model "llama") */
    TFAB_VOCAB_BPE = 2  /* byte-level BPE: regex pre-tokenizer, GPT-2 byte-to-unicode mapping,
                           ranked merges (GGUF tokenizer.ggml.model "gpt2") */
} tfab_vocab_kind_t;

/* Token types, numbered as GGUF's tokenizer.ggml.token_type (and SentencePiece). */
typedef enum tfab_token_type {
    TFAB_TOKEN_TYPE_UNDEFINED    = 0,
    TFAB_TOKEN_TYPE_NORMAL       = 1,
    TFAB_TOKEN_TYPE_UNKNOWN      = 2,
    TFAB_TOKEN_TYPE_CONTROL      = 3, /* <s>, <|eot_id|>: matched in text only when asked */
    TFAB_TOKEN_TYPE_USER_DEFINED = 4, /* always matched in text before the model's algorithm */
    TFAB_TOKEN_TYPE_UNUSED       = 5,
    TFAB_TOKEN_TYPE_BYTE         = 6 /* <0xXX> byte fallback */
} tfab_token_type_t;

typedef struct tfab_vocab tfab_vocab_t;

/* Pre-tokenizer names understood for TFAB_VOCAB_BPE (GGUF tokenizer.ggml.pre):
 *   "default" (also used when absent), "gpt-2" (also "gpt2", "mpt", "phi-2", "olmo"),
 *   "llama-bpe" (also "llama3", "llama-v3", "falcon3", "smaug-bpe", "dbrx"), "qwen2" (also
 *   "stablelm2", "deepseek-r1-qwen"), "qwen35", "starcoder" (also "refact", "command-r",
 *   "smollm", "codeshell", "exaone", "minerva"), "falcon", "deepseek-llm", "deepseek-coder".
 * Anything else is TFAB_ERR_UNSUPPORTED. */

/* Which fields of tfab_vocab_params_t are set (append-only, like the struct). */
enum {
    TFAB_VOCAB_PARAM_SCORES        = 1u << 0,
    TFAB_VOCAB_PARAM_TYPES         = 1u << 1,
    TFAB_VOCAB_PARAM_MERGES        = 1u << 2,
    TFAB_VOCAB_PARAM_PRE           = 1u << 3,
    TFAB_VOCAB_PARAM_SPECIAL_IDS   = 1u << 4, /* bos, eos, unk, pad, eot */
    TFAB_VOCAB_PARAM_ADD_BOS       = 1u << 5,
    TFAB_VOCAB_PARAM_ADD_EOS       = 1u << 6,
    TFAB_VOCAB_PARAM_SPACE_PREFIX  = 1u << 7,
    TFAB_VOCAB_PARAM_CHAT_TMPL     = 1u << 8,
    TFAB_VOCAB_PARAM_PRE_REGEX     = 1u << 9,
    TFAB_VOCAB_PARAM_IGNORE_MERGES = 1u << 10
};

/* A vocabulary independent of any file format. Everything is copied by tfab_vocab_create:
 * the caller keeps ownership of the arrays. Unset fields take the defaults given. */
typedef struct tfab_vocab_params {
    uint64_t           field_mask; /* TFAB_VOCAB_PARAM_* */
    tfab_vocab_kind_t  kind;       /* required */
    uint32_t           n_tokens;   /* required, >= 1 */
    const char *const *tokens;     /* required: [n_tokens] token texts (SPM: with U+2581 for
                                      spaces; BPE: byte-to-unicode mapped) */
    const uint32_t *token_lens;    /* [n_tokens] byte lengths, or NULL: tokens are NUL-terminated */
    const float    *scores;        /* [n_tokens]; default 0 (SPM merges by score) */
    const int32_t  *types;         /* [n_tokens] tfab_token_type_t; default NORMAL, except
                                      SPM "<0xXX>" tokens default to BYTE */
    uint32_t           n_merges;   /* BPE merges, in rank order (rank 0 first) */
    const char *const *merges;     /* [n_merges] "left right", NUL-terminated */
    const char        *pre;        /* BPE pre-tokenizer name, see above; default "default" */
    tfab_token_t       bos, eos, unk, pad, eot; /* TFAB_TOKEN_NULL if none (default) */
    int                add_bos;                 /* default: SPM 1, BPE 0 ("llama-bpe": 1) */
    int                add_eos;                 /* default 0 */
    int                add_space_prefix;        /* SPM: prefix text with a space; default 1 */
    const char        *chat_template; /* tokenizer.chat_template (jinja source), or NULL */
    /* Explicit pre-tokenizer regexes (PCRE2 syntax, applied in sequence, each splitting the
     * pieces of the previous one; BPE only); overrides pre. */
    uint32_t           n_pre_regex;
    const char *const *pre_regex;
    /* BPE: a pre-tokenized word that is itself a token is emitted whole, before any merge
     * (Hugging Face ignore_merges). Default: 1 for the llama-bpe family, else 0. */
    int ignore_merges;
} tfab_vocab_params_t;

/* Build a vocabulary. Validates ids (special ids in range), merges (both sides and their
 * concatenation must be tokens; others are skipped with a debug log), regexes. Duplicate token
 * texts: the last id wins for text lookup. Errors: TFAB_ERR_INVALID, TFAB_ERR_UNSUPPORTED
 * (unknown pre-tokenizer), TFAB_ERR_NOMEM; logged once. */
TFAB_API tfab_status_t tfab_vocab_create(const tfab_vocab_params_t *params, tfab_vocab_t **vocab_p);

struct tfab_gguf;
/* From GGUF metadata (tokenizer.ggml.*: model, pre, tokens, scores, token_type, merges,
 * bos/eos/unknown/padding/eot_token_id, add_bos_token, add_eos_token, add_space_prefix, and
 * tokenizer.chat_template). The vocab copies what it needs: gguf may be closed afterwards.
 * TFAB_ERR_UNSUPPORTED for tokenizer models other than "llama" and "gpt2". */
TFAB_API tfab_status_t tfab_vocab_load_gguf(const struct tfab_gguf *gguf, tfab_vocab_t **vocab_p);
/* Open path with tfab_gguf_open, load the vocab, close it. */
TFAB_API tfab_status_t tfab_vocab_load_gguf_file(const char *path, tfab_vocab_t **vocab_p);

/* From a Hugging Face tokenizer.json held in memory (json need not be NUL-terminated).
 * Supports model.type "BPE" with a ByteLevel pre-tokenizer (Split regexes taken from the file,
 * else GPT-2's) and SentencePiece-style BPE (byte_fallback, U+2581 normalizer; scores derived
 * from merge ranks). added_tokens become CONTROL (special) or USER_DEFINED tokens; bos and
 * add_bos come from post_processor TemplateProcessing, eos from the added tokens named
 * "</s>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>" or "<|eot_id|>". Errors as for
 * tfab_vocab_create; malformed JSON is TFAB_ERR_INVALID. */
TFAB_API tfab_status_t tfab_vocab_load_hf_json(const char *json, size_t len,
                                               tfab_vocab_t **vocab_p);
TFAB_API tfab_status_t tfab_vocab_load_hf_file(const char *path, tfab_vocab_t **vocab_p);

/* Free everything. NULL is a no-op. */
TFAB_API void tfab_vocab_destroy(tfab_vocab_t *vocab);

/* ---- queries: O(1) unless noted; thread-safe (the vocab is immutable after creation) ------ */
TFAB_API tfab_vocab_kind_t tfab_vocab_kind(const tfab_vocab_t *vocab);
TFAB_API uint32_t          tfab_vocab_n_tokens(const tfab_vocab_t *vocab);
TFAB_API tfab_token_t      tfab_vocab_bos(const tfab_vocab_t *vocab); /* TFAB_TOKEN_NULL if none */
TFAB_API tfab_token_t      tfab_vocab_eos(const tfab_vocab_t *vocab);
TFAB_API tfab_token_t      tfab_vocab_unk(const tfab_vocab_t *vocab);
TFAB_API tfab_token_t      tfab_vocab_pad(const tfab_vocab_t *vocab);
TFAB_API int               tfab_vocab_add_bos(const tfab_vocab_t *vocab);
TFAB_API int               tfab_vocab_add_eos(const tfab_vocab_t *vocab);
/* The pre-tokenizer name in use ("" for SPM). */
TFAB_API const char *tfab_vocab_pre(const tfab_vocab_t *vocab);
/* tokenizer.chat_template, NUL-terminated, or NULL. */
TFAB_API const char *tfab_vocab_chat_template(const tfab_vocab_t *vocab);
/* Raw token text (not NUL-terminated) and its length; NULL for an id out of range. */
TFAB_API const char       *tfab_vocab_token_text(const tfab_vocab_t *vocab, tfab_token_t id,
                                                 size_t *len_p);
TFAB_API tfab_token_type_t tfab_vocab_token_type(const tfab_vocab_t *vocab, tfab_token_t id);
TFAB_API float             tfab_vocab_token_score(const tfab_vocab_t *vocab, tfab_token_t id);
/* Id of the token whose raw text is exactly text[0..len), or TFAB_TOKEN_NULL. Hashed. */
TFAB_API tfab_token_t tfab_vocab_find(const tfab_vocab_t *vocab, const char *text, size_t len);
/* End of generation: eos, eot, or a control token named <|eot_id|>, <|im_end|>, <|end|>,
 * <|eom_id|>, <end_of_turn>, <|endoftext|>. */
TFAB_API int tfab_vocab_is_eog(const tfab_vocab_t *vocab, tfab_token_t id);

/* ---- encoding ------------------------------------------------------------------------------ */
enum {
    TFAB_ENCODE_ADD_SPECIAL   = 1u << 0, /* add bos / eos as the vocab's add_bos/add_eos say */
    TFAB_ENCODE_PARSE_SPECIAL = 1u << 1  /* match control tokens' text ("<|eot_id|>") in text */
};

/* Encode text[0..len) (any bytes; invalid UTF-8 is kept byte by byte) into at most max ids
 * written to out. Returns TFAB_OK and *n_p = count; TFAB_ERR_RANGE if max is too small, then
 * (only then, as an exception to outputs-on-success) *n_p is the count needed and out holds
 * the first max ids. TFAB_ERR_NOMEM on allocation failure. Runs in O(n log n) of the text;
 * allocates scratch per call; thread-safe on a shared vocab.
 * Matches llama.cpp's llama_tokenize (and so Hugging Face tokenizers) for supported vocabs. */
TFAB_API tfab_status_t tfab_tokenize(const tfab_vocab_t *vocab, const char *text, size_t len,
                                     unsigned flags, tfab_token_t *out, size_t max, size_t *n_p);

/* ---- decoding ------------------------------------------------------------------------------ */
enum {
    TFAB_DECODE_SPECIAL     = 1u << 0, /* render control/unknown tokens' text (else nothing) */
    TFAB_DECODE_STRIP_SPACE = 1u << 1  /* SPM with add_space_prefix: drop the leading space
                                          that encoding added (first piece only) */
};

/* The bytes of one token into buf (cap bytes), *len_p = length: SPM U+2581 -> ' ', BPE
 * unicode -> bytes, <0xXX> -> that byte, user-defined tokens as written, control tokens only
 * with TFAB_DECODE_SPECIAL. A piece can be part of a UTF-8 character. TFAB_ERR_RANGE if cap is
 * too small (*len_p = length needed), TFAB_ERR_INVALID for an id out of range. No allocation. */
TFAB_API tfab_status_t tfab_token_piece(const tfab_vocab_t *vocab, tfab_token_t id, unsigned flags,
                                        char *buf, size_t cap, size_t *len_p);

/* Concatenated pieces of n tokens into buf (not NUL-terminated), as tfab_token_piece, with
 * TFAB_DECODE_STRIP_SPACE applied to the first piece. TFAB_ERR_RANGE if cap is too small
 * (*len_p = length needed). */
TFAB_API tfab_status_t tfab_detokenize(const tfab_vocab_t *vocab, const tfab_token_t *tokens,
                                       size_t n, unsigned flags, char *buf, size_t cap,
                                       size_t *len_p);

/* ---- chat templates ------------------------------------------------------------------------ */
typedef enum tfab_chat_tmpl {
    TFAB_CHAT_TMPL_UNKNOWN = 0,
    TFAB_CHAT_TMPL_LLAMA2  = 1, /* [INST] <<SYS>> ... <</SYS>> ... [/INST] */
    TFAB_CHAT_TMPL_LLAMA3  = 2, /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    TFAB_CHAT_TMPL_CHATML  = 3  /* <|im_start|>role\n...<|im_end|>\n */
} tfab_chat_tmpl_t;

typedef struct tfab_chat_msg {
    const char *role;    /* "system", "user", "assistant" (others are passed through) */
    const char *content; /* NUL-terminated */
} tfab_chat_msg_t;

/* Recognize a template from a name ("llama2", "llama3", "chatml") or from the markers of a
 * jinja source (tokenizer.chat_template), in this order: <|im_start|> -> chatml;
 * <|start_header_id|> and <|end_header_id|> -> llama3; [INST] -> llama2 unless Mistral's
 * [AVAILABLE_TOOLS], [SYSTEM_PROMPT] or [TOOL_CALLS] appear. NULL or unrecognized:
 * TFAB_CHAT_TMPL_UNKNOWN. Pure function. */
TFAB_API tfab_chat_tmpl_t tfab_chat_tmpl_detect(const char *name_or_source);
TFAB_API const char      *tfab_chat_tmpl_name(tfab_chat_tmpl_t tmpl); /* "?" if unknown */

/* Render msgs as a prompt into buf (cap bytes, NUL-terminated), *len_p = length without the
 * NUL. add_assistant appends the header that makes the model answer. The BOS token is not
 * written (tokenize with TFAB_ENCODE_ADD_SPECIAL | TFAB_ENCODE_PARSE_SPECIAL). Formats:
 *   chatml: "<|im_start|>{role}\n{content}<|im_end|>\n" per message; "<|im_start|>assistant\n"
 *   llama3: "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>" per message
 *           (content trimmed of leading/trailing whitespace); add_assistant appends
 *           "<|start_header_id|>assistant<|end_header_id|>\n\n"
 *   llama2: "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ..."
 *           (a system message goes inside the next [INST]; content trimmed; an assistant turn is
 *           followed by "</s>" and the next user turn starts with "<s>[INST] ")
 * Errors: TFAB_ERR_INVALID (unknown template, NULL role/content), TFAB_ERR_RANGE if cap is too
 * small (*len_p = length needed). No allocation; thread-safe. */
TFAB_API tfab_status_t tfab_chat_render(tfab_chat_tmpl_t tmpl, const tfab_chat_msg_t *msgs,
                                        size_t n_msgs, int add_assistant, char *buf, size_t cap,
                                        size_t *len_p);

#ifdef __cplusplus
}
#endif
#endif
