/* fuzz_topology.c - libFuzzer target for the topology priority file parser: any bytes give a
 * topology or an error message naming the file and line, never a crash or a leak; a parsed
 * topology ranks every pair without reading outside its links. */
#include <stdint.h>
#include <string.h>
#include <tfab/topology.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tfab_topology_t *t;
    char             err[512];
    if (tfab_topology_parse((const char *)data, size, "fuzz.yaml", &t, err, sizeof(err)) != TFAB_OK) {
        if (strncmp(err, "fuzz.yaml:", 10) != 0)
            __builtin_trap(); /* every error names the file and line */
        return 0;
    }
    unsigned n = tfab_topology_n_hosts(t);
    for (unsigned a = 0; a < n && a < 8; a++)
        for (unsigned b = 0; b < n && b < 8; b++) {
            tfab_topology_path_t p[16];
            unsigned k = tfab_topology_rank(t, tfab_topology_host(t, a)->name,
                                            tfab_topology_host(t, b)->name, p, 16);
            for (unsigned i = 0; i < k && i < 16; i++)
                if (strcmp(p[i].local->name, p[i].remote->name) != 0)
                    __builtin_trap();
        }
    tfab_topology_free(t);
    return 0;
}
