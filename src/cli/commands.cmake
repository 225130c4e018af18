list(APPEND TFAB_CLI_SOURCES cli/cmd_logits.c)
list(APPEND TFAB_CLI_SOURCES cli/cmd_tokenize.c)
list(APPEND TFAB_CLI_SOURCES cli/cmd_topo.c)
list(APPEND TFAB_CLI_SOURCES cli/cmd_run.c)
