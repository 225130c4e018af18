/* cmd_serve.c - `tfab serve`: the OpenAI- and Ollama-compatible HTTP server on TCP and a Unix
 * socket, until SIGINT or SIGTERM. Configuration: see `tfab serve --help-config`. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <tfab/tfab.h>
#include "../server/srv.h"
#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tfab serve [--config FILE] [--env ENV] [--KEY VALUE ...]\n"
            "\n"
            "Serves models over HTTP: OpenAI /v1/chat/completions, /v1/completions, /v1/models;\n"
            "Ollama /api/generate, /api/chat, /api/tags; /health, /metrics (Prometheus) and a\n"
            "dashboard at /. Stops on SIGINT or SIGTERM.\n"
            "\n"
            "  --config FILE     YAML configuration (default config/runtime.yaml when present;\n"
            "                    environment: TFAB_CONFIG)\n"
            "  --env ENV         development (default), production or test: which section of\n"
            "                    the file's environments: applies (TFAB_ENV)\n"
            "  --listen H:P      TCP address (default 127.0.0.1:8080; port 0: any free one)\n"
            "  --socket PATH     also serve on this Unix domain socket\n"
            "  --model PATH      default model (default: the built-in tfab-tiny)\n"
            "  --models-dir DIR  more models, by file stem\n"
            "  --help-config     every key, its variable, flag, default and meaning\n"
            "  --print-config    print the configuration that would be used, and exit\n"
            "\n"
            "Precedence, later wins: defaults, the file, its environments.ENV section, TFAB_*\n"
            "variables, flags.\n");
}

int tfab_cli_serve(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    static srv_config_t cfg;
    char                err[512];
    int                 r = srv_config_load(&cfg, argc, argv, err, sizeof(err));
    if (r > 0)
        return 0;
    if (r < 0) {
        fprintf(stderr, "tfab serve: %s\n", err);
        return 2;
    }
    if (cfg.log_level[0]) {
        tfab_log_level_t lvl;
        if (tfab_log_level_parse(cfg.log_level, &lvl) == TFAB_OK)
            tfab_log_set_level(lvl);
    }
    char builtin[PATH_MAX];
    if (cfg.model[0] == '\0') {
        if (tfab_cli_builtin_model(builtin, sizeof(builtin)) == NULL) {
            fprintf(stderr, "tfab serve: the built-in model was not found; give --model PATH\n");
            return 1;
        }
        snprintf(cfg.model, sizeof(cfg.model), "%s", builtin);
    }
    /* every thread inherits this mask: the signals come to sigwait below */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    static srv_t srv;
    if (srv_start(&srv, &cfg) != 0) {
        fprintf(stderr, "tfab serve: could not start (see above)\n");
        return 1;
    }
    if (srv.mhd_tcp)
        fprintf(stderr, "tfab serve: listening on http://%.*s:%u\n",
                (int)(strrchr(cfg.listen, ':') - cfg.listen), cfg.listen, srv.tcp_port);
    if (srv.mhd_uds)
        fprintf(stderr, "tfab serve: listening on unix:%s\n", cfg.socket_path);
    fprintf(stderr, "tfab serve: model '%s' (%s), environment %s, ready\n", srv.default_name,
            cfg.model, cfg.environment);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "tfab serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    srv_stop(&srv);
    return 0;
}
