/* cli.h - the subcommand table entry shared by the CLI's command files. */
#ifndef TFAB_CLI_H
#define TFAB_CLI_H
#include <stdio.h>

typedef struct tfab_cli_cmd {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the exit code */
} tfab_cli_cmd_t;

int tfab_cli_devices(int argc, char **argv);
int tfab_cli_run(int argc, char **argv);
int tfab_cli_topo(int argc, char **argv);
int tfab_cli_tokenize(int argc, char **argv);
int tfab_cli_detokenize(int argc, char **argv);
int tfab_cli_logits(int argc, char **argv);
int tfab_cli_node(int argc, char **argv);
int tfab_cli_plan(int argc, char **argv);
int tfab_cli_run_cluster(int argc, char **argv); /* tfab run --cluster */
int tfab_cli_serve(int argc, char **argv);
/* Path of the built-in model (beside the binary, or in the source tree), or NULL. */
const char *tfab_cli_builtin_model(char *buf, size_t len);

#endif
