/* vocab_vectors.c - checks tfab_tokenize against llama.cpp's tokenizer test vectors: for each
 * VOCAB.gguf given, VOCAB.gguf.inp holds texts separated by "\n__ggml_vocab_test__\n" and
 * VOCAB.gguf.out the expected ids, one line per text (encoded without bos/eos and without
 * parsing special tokens, as llama.cpp's test-tokenizer-0 does). Also checks that decoding
 * gives the text back. Prints one line per vocab and "N passed, N failed".
 * With --chat NAME FILE...: each FILE is a jinja chat template that tfab_chat_tmpl_detect must
 * recognize as NAME ("?" for none).
 * With --pipeline MODELS_DIR: renders a chat with each template and tokenizes the prompt with
 * the matching vocab (bos added, special tokens parsed): exact ids of Llama 3, Qwen2, Llama 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/tokenizer.h>

static char *slurp(const char *path, size_t *len_p)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len_p = (size_t)n;
    }
    return buf;
}

/* Runs the cases of one vocab; returns the number of failed cases (-1: could not run). */
static int run_vocab(const char *path, int *n_cases_p)
{
    char          inp_path[4096], out_path[4096];
    size_t        inp_len, out_len;
    tfab_vocab_t *v;
    snprintf(inp_path, sizeof(inp_path), "%s.inp", path);
    snprintf(out_path, sizeof(out_path), "%s.out", path);
    char *inp = slurp(inp_path, &inp_len), *out = slurp(out_path, &out_len);
    if (inp == NULL || out == NULL || tfab_vocab_load_gguf_file(path, &v) != TFAB_OK) {
        fprintf(stderr, "%s: cannot load the vocab or its .inp/.out files\n", path);
        free(inp);
        free(out);
        return -1;
    }
    static const char sep[]  = "\n__ggml_vocab_test__\n";
    int               failed = 0, cases = 0;
    char             *ip = inp, *op = out, *iend = inp + inp_len;
    size_t            cap  = 1 << 16;
    tfab_token_t     *toks = malloc(cap * sizeof(*toks));
    char             *dec  = malloc(1 << 20);
    while (ip < iend && *op) {
        char  *next = strstr(ip, sep);
        size_t tlen = next ? (size_t)(next - ip) : (size_t)(iend - ip);
        char  *eol  = strchr(op, '\n');
        if (eol)
            *eol = '\0';
        /* expected ids */
        tfab_token_t want[4096];
        size_t       n_want = 0;
        for (char *s = op; *s;) {
            while (*s == ' ')
                s++;
            if (!*s)
                break;
            want[n_want++] = (tfab_token_t)strtol(s, &s, 10);
        }
        size_t        n  = 0;
        tfab_status_t st = tfab_tokenize(v, ip, tlen, 0, toks, cap, &n);
        int    ok = st == TFAB_OK && n == n_want && memcmp(toks, want, n * sizeof(*toks)) == 0;
        size_t dl = 0;
        int    rt =
            st == TFAB_OK &&
            tfab_detokenize(v, toks, n, TFAB_DECODE_STRIP_SPACE, dec, 1 << 20, &dl) == TFAB_OK &&
            dl == tlen && memcmp(dec, ip, tlen) == 0;
        if (!ok || !rt) {
            failed++;
            fprintf(stderr, "%s: case %d FAILED%s: '%.*s'\n  want:", path, cases,
                    ok ? " (decode round trip only)" : "", (int)tlen, ip);
            for (size_t i = 0; i < n_want; i++)
                fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %d", toks[i]);
            fprintf(stderr, "\n  decoded: '%.*s'\n", (int)dl, dec);
        }
        cases++;
        op = eol ? eol + 1 : op + strlen(op);
        if (next == NULL)
            break;
        ip = next + sizeof(sep) - 1;
    }
    printf("%-40s %d cases, %d failed\n", strrchr(path, '/') ? strrchr(path, '/') + 1 : path, cases,
           failed);
    free(dec);
    free(toks);
    free(inp);
    free(out);
    tfab_vocab_destroy(v);
    *n_cases_p = cases;
    return failed;
}

static int run_chat(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 3; i < argc; i++) {
        size_t len;
        char  *src = slurp(argv[i], &len);
        if (src == NULL) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            failed++;
            continue;
        }
        const char *got = tfab_chat_tmpl_name(tfab_chat_tmpl_detect(src));
        if (strcmp(got, argv[2]) == 0) {
            passed++;
        } else {
            fprintf(stderr, "%s: detected as %s, expected %s\n", argv[i], got, argv[2]);
            failed++;
        }
        free(src);
    }
    printf("chat templates (%s): %d passed, %d failed\n", argv[2], passed, failed);
    return failed ? 1 : 0;
}

static int pipeline_case(const char *dir, const char *vocab, tfab_chat_tmpl_t tmpl,
                         const tfab_token_t *want, size_t n_want)
{
    char                  path[4096], prompt[512];
    size_t                len, n = 0;
    tfab_token_t          toks[64];
    tfab_vocab_t         *v;
    const tfab_chat_msg_t msg = {"user", "Hello"};
    snprintf(path, sizeof(path), "%s/ggml-vocab-%s.gguf", dir, vocab);
    if (tfab_vocab_load_gguf_file(path, &v) != TFAB_OK)
        return 1;
    int ok = tfab_chat_render(tmpl, &msg, 1, 1, prompt, sizeof(prompt), &len) == TFAB_OK &&
             tfab_tokenize(v, prompt, len, TFAB_ENCODE_ADD_SPECIAL | TFAB_ENCODE_PARSE_SPECIAL,
                           toks, 64, &n) == TFAB_OK &&
             n == n_want && memcmp(toks, want, n * sizeof(*toks)) == 0;
    printf("pipeline %-7s + %-10s %s\n", tfab_chat_tmpl_name(tmpl), vocab, ok ? "ok" : "FAILED");
    if (!ok) {
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %d", toks[i]);
        fprintf(stderr, "\n");
    }
    tfab_vocab_destroy(v);
    return !ok;
}

static int run_pipeline(const char *dir)
{
    static const tfab_token_t llama3[] = {128000, 128006, 882,   128007, 271, 9906,
                                          128009, 128006, 78191, 128007, 271};
    static const tfab_token_t chatml[] = {151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198};
    static const tfab_token_t llama2[] = {1, 518, 25580, 29962, 15043, 518, 29914, 25580, 29962};
    int failed = pipeline_case(dir, "llama-bpe", TFAB_CHAT_TMPL_LLAMA3, llama3, 11) +
                 pipeline_case(dir, "qwen2", TFAB_CHAT_TMPL_CHATML, chatml, 9) +
                 pipeline_case(dir, "llama-spm", TFAB_CHAT_TMPL_LLAMA2, llama2, 9);
    printf("%d passed, %d failed\n", 3 - failed, failed);
    return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--pipeline") == 0)
        return run_pipeline(argv[2]);
    int passed = 0, failed = 0;
    if (argc >= 3 && strcmp(argv[1], "--chat") == 0)
        return run_chat(argc, argv);
    if (argc < 2) {
        fprintf(stderr, "usage: %s VOCAB.gguf...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int cases = 0, f = run_vocab(argv[i], &cases);
        if (f < 0) {
            failed++;
            continue;
        }
        passed += cases - f;
        failed += f;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
