/* cmd_tokenize.c - `tfab tokenize` and `tfab detokenize`: text <-> token ids with a model's
 * vocabulary (a GGUF file or a Hugging Face tokenizer.json). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/tokenizer.h>
#include "cli.h"

static void tok_usage(FILE *out)
{
    fprintf(out,
            "usage: tfab tokenize --model PATH [--no-bos] [--parse-special] [--pieces] TEXT|-\n"
            "  Print the token ids of TEXT (- reads standard input), space-separated.\n"
            "  --model PATH      a GGUF model or vocab, or a Hugging Face tokenizer.json\n"
            "  --no-bos          do not add the bos/eos tokens the vocabulary asks for\n"
            "  --parse-special   read control tokens such as <|eot_id|> in TEXT as tokens\n"
            "  --pieces          print id:'piece' pairs, one per line\n");
}

static void detok_usage(FILE *out)
{
    fprintf(out, "usage: tfab detokenize --model PATH [--special] ID...\n"
                 "  Print the text of the token ids.\n"
                 "  --special         render control tokens (<s>, <|eot_id|>) as text\n");
}

static int load(const char *path, tfab_vocab_t **v_p)
{
    size_t        n  = strlen(path);
    tfab_status_t st = n >= 5 && strcmp(path + n - 5, ".json") == 0
                           ? tfab_vocab_load_hf_file(path, v_p)
                           : tfab_vocab_load_gguf_file(path, v_p);
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab: cannot load a vocabulary from %s: %s\n", path, tfab_status_str(st));
        return 1;
    }
    return 0;
}

static char *read_stdin(size_t *len_p)
{
    size_t cap = 1 << 16, n = 0, r;
    char  *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len_p = n;
    return buf;
}

int tfab_cli_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL;
    unsigned    flags  = TFAB_ENCODE_ADD_SPECIAL;
    int         pieces = 0, rc = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            tok_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--no-bos") == 0) {
            flags &= ~(unsigned)TFAB_ENCODE_ADD_SPECIAL;
        } else if (strcmp(argv[i], "--parse-special") == 0) {
            flags |= TFAB_ENCODE_PARSE_SPECIAL;
        } else if (strcmp(argv[i], "--pieces") == 0) {
            pieces = 1;
        } else if (text == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0)) {
            text = argv[i];
        } else {
            fprintf(stderr, "tfab tokenize: unexpected argument '%s'\n", argv[i]);
            tok_usage(stderr);
            return 2;
        }
    }
    if (model == NULL || text == NULL) {
        tok_usage(stderr);
        return 2;
    }
    tfab_vocab_t *v;
    if (load(model, &v) != 0)
        return 1;
    size_t len = strlen(text);
    char  *in  = NULL;
    if (strcmp(text, "-") == 0) {
        if ((in = read_stdin(&len)) == NULL) {
            fprintf(stderr, "tfab tokenize: out of memory reading standard input\n");
            goto out_vocab;
        }
        text = in;
    }
    size_t        cap = len + 16, n = 0;
    tfab_token_t *ids = malloc(cap * sizeof(*ids));
    tfab_status_t st  = ids ? tfab_tokenize(v, text, len, flags, ids, cap, &n) : TFAB_ERR_NOMEM;
    if (st == TFAB_ERR_RANGE) {
        tfab_token_t *more = realloc(ids, n * sizeof(*ids));
        st  = more ? tfab_tokenize(v, text, len, flags, more, n, &n) : TFAB_ERR_NOMEM;
        ids = more ? more : ids;
    }
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab tokenize: %s\n", tfab_status_str(st));
        goto out_ids;
    }
    for (size_t i = 0; i < n; i++) {
        if (pieces) {
            char   piece[256];
            size_t pl = 0;
            (void)tfab_token_piece(v, ids[i], TFAB_DECODE_SPECIAL, piece, sizeof(piece), &pl);
            printf("%d:'%.*s'\n", ids[i], (int)(pl < sizeof(piece) ? pl : sizeof(piece)), piece);
        } else {
            printf(i ? " %d" : "%d", ids[i]);
        }
    }
    if (!pieces)
        printf("\n");
    rc = 0;
out_ids:
    free(ids);
    free(in);
out_vocab:
    tfab_vocab_destroy(v);
    return rc;
}

int tfab_cli_detokenize(int argc, char **argv)
{
    const char *model = NULL;
    unsigned    flags = TFAB_DECODE_STRIP_SPACE;
    int         first = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            detok_usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--special") == 0) {
            flags |= TFAB_DECODE_SPECIAL;
        } else if (argv[i][0] != '-' || (argv[i][1] >= '0' && argv[i][1] <= '9')) {
            first = i;
            break;
        } else {
            fprintf(stderr, "tfab detokenize: unexpected argument '%s'\n", argv[i]);
            detok_usage(stderr);
            return 2;
        }
    }
    if (model == NULL || first == 0) {
        detok_usage(stderr);
        return 2;
    }
    size_t        n   = (size_t)(argc - first);
    tfab_token_t *ids = malloc(n * sizeof(*ids));
    if (ids == NULL)
        return 1;
    for (size_t i = 0; i < n; i++) {
        char *end;
        long  id = strtol(argv[first + (int)i], &end, 10);
        if (*end != '\0' || id < 0 || id > INT32_MAX) {
            fprintf(stderr, "tfab detokenize: '%s' is not a token id\n", argv[first + (int)i]);
            free(ids);
            return 2;
        }
        ids[i] = (tfab_token_t)id;
    }
    tfab_vocab_t *v;
    if (load(model, &v) != 0) {
        free(ids);
        return 1;
    }
    int           rc  = 1;
    size_t        len = 0;
    tfab_status_t st  = tfab_detokenize(v, ids, n, flags, NULL, 0, &len);
    char         *buf = NULL;
    if (st == TFAB_ERR_RANGE || st == TFAB_OK) {
        buf = malloc(len + 1);
        st  = buf ? tfab_detokenize(v, ids, n, flags, buf, len + 1, &len) : TFAB_ERR_NOMEM;
    }
    if (st == TFAB_OK) {
        fwrite(buf, 1, len, stdout);
        printf("\n");
        rc = 0;
    } else {
        fprintf(stderr, "tfab detokenize: %s\n", tfab_status_str(st));
    }
    free(buf);
    free(ids);
    tfab_vocab_destroy(v);
    return rc;
}
