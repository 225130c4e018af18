/* fuzz_cluster.c - libFuzzer target for the cluster file parser: any bytes give a cluster or an
 * error naming the file and line, never a crash; a parsed cluster is consistent (ranks, addresses
 * terminated, layer ranges consecutive when given). */
#include <stdint.h>
#include <string.h>
#include <tfab/cluster.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static tfab_cluster_t c;
    char                  err[512];
    if (tfab_cluster_parse((const char *)data, size, "fuzz.cluster", &c, err, sizeof(err)) !=
        TFAB_OK) {
        if (strncmp(err, "fuzz.cluster:", 13) != 0)
            __builtin_trap(); /* every error names the file and line */
        return 0;
    }
    if (c.n_ranks == 0 || c.n_ranks > TFAB_CLUSTER_MAX_RANKS || c.chunk == 0 ||
        c.dead_ms <= c.heartbeat_ms)
        __builtin_trap();
    for (unsigned r = 0; r < c.n_ranks; r++) {
        if (memchr(c.ranks[r].address, '\0', sizeof(c.ranks[r].address)) == NULL)
            __builtin_trap();
        if (c.ranks[0].layer_end && r > 0 && c.ranks[r].layer_begin != c.ranks[r - 1].layer_end)
            __builtin_trap();
    }
    return 0;
}
