/* main.c - the tfab command line: global options and the subcommand table. Only the CLI owns
 * main() and may call exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/tfab.h>
#include "cli.h"

static const tfab_cli_cmd_t commands[] = {
    {"run", "generate text from a prompt (the built-in model unless --model)", tfab_cli_run},
    {"serve", "serve models over HTTP and a Unix socket (OpenAI and Ollama APIs, metrics)",
     tfab_cli_serve},
    {"devices", "list RDMA devices (ports, MTU, GIDs), TCP interfaces and pinning limits",
     tfab_cli_devices},
    {"topo", "check a topology priority file and print the ranked links between hosts", tfab_cli_topo},
    {"tokenize", "print the token ids of a text (--model GGUF or tokenizer.json)", tfab_cli_tokenize},
    {"detokenize", "print the text of token ids (--model GGUF or tokenizer.json)", tfab_cli_detokenize},
    {"logits", "run a model on a token sequence and write its logits (float32 rows)",
     tfab_cli_logits},
    {"node", "join a cluster's coordinator and serve a pipeline stage", tfab_cli_node},
    {"plan", "place a model on a cluster: stages, links, bytes per token", tfab_cli_plan},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tfab [global options] COMMAND [args]\n"
            "\n"
            "tfab is a tensor fabric: an RDMA/TCP transport and a distributed CPU inference\n"
            "engine for LLMs.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(out,
            "\n"
            "global options:\n"
            "  -h, --help            show this help (COMMAND --help for a command's)\n"
            "  -V, --version         print the version and build features\n"
            "  -v, --verbose         log more (repeat for debug, trace)\n"
            "  --log-level LEVEL     error, warn, info, debug or trace (default warn;\n"
            "                        environment: TFAB_LOG_LEVEL)\n");
}

static void version(void)
{
    printf("tfab %s (verbs backend: %s)\n", TFAB_VERSION_STRING, TFAB_HAVE_VERBS ? "yes" : "no");
}

int main(int argc, char **argv)
{
    tfab_log_level_t level = TFAB_LOG_WARN;
    const char      *env   = getenv("TFAB_LOG_LEVEL");
    if (env != NULL && tfab_log_level_parse(env, &level) != TFAB_OK) {
        fprintf(stderr, "tfab: TFAB_LOG_LEVEL=%s is not a log level (error, warn, info, debug, trace)\n",
                env);
        return 2;
    }
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            version();
            return 0;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            if (level < TFAB_LOG_TRACE)
                level++;
        } else if (strcmp(a, "--log-level") == 0) {
            if (i + 1 >= argc || tfab_log_level_parse(argv[i + 1], &level) != TFAB_OK) {
                fprintf(stderr, "tfab: --log-level needs one of error, warn, info, debug, trace\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "tfab: unknown option '%s' (see tfab --help)\n", a);
            return 2;
        }
    }
    tfab_log_set_level(level);
    if (i >= argc) {
        usage(stderr);
        return 2;
    }
    for (size_t c = 0; c < N_COMMANDS; c++)
        if (strcmp(argv[i], commands[c].name) == 0)
            return commands[c].run(argc - i, argv + i);
    fprintf(stderr, "tfab: unknown command '%s' (see tfab --help)\n", argv[i]);
    return 2;
}
