/* chat.c - chat templates: recognizes llama2, llama3 and chatml by name or by the markers of a
 * jinja source, and renders {role, content} messages to a prompt string. */
#include <ctype.h>
#include <string.h>
#include <tfab/log.h>
#include "vocab_int.h"

tfab_chat_tmpl_t tfab_chat_tmpl_detect(const char *s)
{
    if (s == NULL)
        return TFAB_CHAT_TMPL_UNKNOWN;
    if (strcmp(s, "chatml") == 0 || strstr(s, "<|im_start|>") != NULL)
        return TFAB_CHAT_TMPL_CHATML;
    if (strcmp(s, "llama3") == 0 ||
        (strstr(s, "<|start_header_id|>") != NULL && strstr(s, "<|end_header_id|>") != NULL))
        return TFAB_CHAT_TMPL_LLAMA3;
    if (strcmp(s, "llama2") == 0)
        return TFAB_CHAT_TMPL_LLAMA2;
    /* Mistral's later formats also use [INST] but differ; their markers rule them out */
    if (strstr(s, "[INST]") != NULL && strstr(s, "[AVAILABLE_TOOLS]") == NULL &&
        strstr(s, "[SYSTEM_PROMPT]") == NULL && strstr(s, "[TOOL_CALLS]") == NULL)
        return TFAB_CHAT_TMPL_LLAMA2;
    return TFAB_CHAT_TMPL_UNKNOWN;
}

const char *tfab_chat_tmpl_name(tfab_chat_tmpl_t t)
{
    switch (t) {
    case TFAB_CHAT_TMPL_LLAMA2:
        return "llama2";
    case TFAB_CHAT_TMPL_LLAMA3:
        return "llama3";
    case TFAB_CHAT_TMPL_CHATML:
        return "chatml";
    default:
        return "?";
    }
}

/* An output cursor that counts what does not fit. */
typedef struct out {
    char  *buf;
    size_t cap, n;
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->n < o->cap) {
        size_t room = o->cap - o->n;
        memcpy(o->buf + o->n, s, n < room ? n : room);
    }
    o->n += n;
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

/* s without leading and trailing whitespace. */
static void put_trimmed(out_t *o, const char *s)
{
    size_t n = strlen(s), b = 0;
    while (b < n && isspace((unsigned char)s[b]))
        b++;
    while (n > b && isspace((unsigned char)s[n - 1]))
        n--;
    put(o, s + b, n - b);
}

static void render_llama2(out_t *o, const tfab_chat_msg_t *m, size_t n)
{
    int in_turn = 0, first = 1;
    for (size_t i = 0; i < n; i++) {
        if (!in_turn) {
            puts_(o, first ? "[INST] " : "<s>[INST] ");
            in_turn = 1;
            first   = 0;
        }
        if (strcmp(m[i].role, "system") == 0) {
            puts_(o, "<<SYS>>\n");
            put_trimmed(o, m[i].content);
            puts_(o, "\n<</SYS>>\n\n");
        } else if (strcmp(m[i].role, "assistant") == 0) {
            puts_(o, " ");
            put_trimmed(o, m[i].content);
            puts_(o, " </s>");
            in_turn = 0;
        } else {
            put_trimmed(o, m[i].content);
            puts_(o, " [/INST]");
        }
    }
}

tfab_status_t tfab_chat_render(tfab_chat_tmpl_t tmpl, const tfab_chat_msg_t *msgs, size_t n,
                               int add_assistant, char *buf, size_t cap, size_t *len_p)
{
    out_t o = {.buf = buf, .cap = cap ? cap - 1 : 0}; /* room for the NUL */
    if (len_p == NULL || (msgs == NULL && n) || (buf == NULL && cap)) {
        TFAB_ERROR(TOK_MOD, "chat: NULL argument");
        return TFAB_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++)
        if (msgs[i].role == NULL || msgs[i].content == NULL) {
            TFAB_ERROR(TOK_MOD, "chat: message %zu has no role or content", i);
            return TFAB_ERR_INVALID;
        }
    switch (tmpl) {
    case TFAB_CHAT_TMPL_CHATML:
        for (size_t i = 0; i < n; i++) {
            puts_(&o, "<|im_start|>");
            puts_(&o, msgs[i].role);
            puts_(&o, "\n");
            puts_(&o, msgs[i].content);
            puts_(&o, "<|im_end|>\n");
        }
        if (add_assistant)
            puts_(&o, "<|im_start|>assistant\n");
        break;
    case TFAB_CHAT_TMPL_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            puts_(&o, "<|start_header_id|>");
            puts_(&o, msgs[i].role);
            puts_(&o, "<|end_header_id|>\n\n");
            put_trimmed(&o, msgs[i].content);
            puts_(&o, "<|eot_id|>");
        }
        if (add_assistant)
            puts_(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case TFAB_CHAT_TMPL_LLAMA2:
        render_llama2(&o, msgs, n);
        break;
    default:
        TFAB_ERROR(TOK_MOD, "chat: unknown template %d (llama2, llama3, chatml)", (int)tmpl);
        return TFAB_ERR_INVALID;
    }
    *len_p = o.n;
    if (o.n >= cap) {
        if (cap)
            buf[cap - 1] = '\0';
        return TFAB_ERR_RANGE;
    }
    buf[o.n] = '\0';
    return TFAB_OK;
}
