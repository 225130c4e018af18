/* fuzz_serve_config.c - libFuzzer target for tfab serve's YAML configuration: the first byte picks
 * the environment, the rest is the file. Any bytes give a configuration within every key's range,
 * or an error naming the file. */
#include <stdint.h>
#include <string.h>
#include "server/srv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *envs[] = {"development", "production", "test"};
    if (size < 1)
        return 0;
    srv_config_t cfg;
    char         err[512] = "";
    srv_config_defaults(&cfg);
    if (srv_config_parse_yaml(&cfg, (const char *)data + 1, size - 1, "fuzz.yaml",
                              envs[data[0] % 3], err, sizeof(err)) != 0) {
        if (strncmp(err, "fuzz.yaml", 9) != 0)
            __builtin_trap(); /* every error names the file (and the line) */
        return 0;
    }
    if (cfg.max_models < 1 || cfg.max_models > 64 || cfg.slots < 1 || cfg.slots > 256 ||
        cfg.util_high < 0 || cfg.util_high > 1 || cfg.credits < 1 || cfg.max_body < 64 ||
        memchr(cfg.listen, 0, sizeof(cfg.listen)) == NULL ||
        memchr(cfg.model, 0, sizeof(cfg.model)) == NULL)
        __builtin_trap();
    return 0;
}
