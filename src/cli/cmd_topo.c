/* cmd_topo.c - `tfab topo`: check a topology priority file and print, for each pair of hosts,
 * the links tfab will use, best first. */
#include <stdio.h>
#include <string.h>
#include <tfab/tfab.h>
#include <tfab/topology.h>
#include "cli.h"

static void print_link(const tfab_topology_link_t *l)
{
    if (l->kind == TFAB_LINK_VERBS) {
        printf("%s:%d", l->device, l->port);
        if (l->gid_index >= 0)
            printf(" gid %d", l->gid_index);
        if (l->address[0])
            printf(" %s", l->address);
    } else {
        printf("%s", l->address);
    }
}

int tfab_cli_topo(int argc, char **argv)
{
    const char *file = NULL, *from = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tfab topo --file TOPOLOGY.yaml [--from HOST]\n"
                   "  Checks the topology priority file (errors name the line) and prints the\n"
                   "  ranked links between each pair of hosts (or from HOST). The format is in\n"
                   "  config/topology.example.yaml and the README.\n");
            return 0;
        } else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else {
            fprintf(stderr, "tfab topo: unknown argument '%s' (see tfab topo --help)\n", argv[i]);
            return 2;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "tfab topo: --file is required\n");
        return 2;
    }
    tfab_topology_t  *t;
    char          err[512];
    tfab_status_t st = tfab_topology_load(file, &t, err, sizeof(err));
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab topo: %s\n", err);
        return 1;
    }
    if (from != NULL && tfab_topology_find_host(t, from) == NULL) {
        fprintf(stderr, "tfab topo: host '%s' is not in %s\n", from, file);
        tfab_topology_free(t);
        return 1;
    }
    unsigned n = tfab_topology_n_hosts(t);
    printf("%u hosts\n", n);
    for (unsigned a = 0; a < n; a++) {
        const tfab_topology_host_t *ha = tfab_topology_host(t, a);
        if (from != NULL && strcmp(ha->name, from) != 0)
            continue;
        for (unsigned b = 0; b < n; b++) {
            const tfab_topology_host_t *hb = tfab_topology_host(t, b);
            if (a == b)
                continue;
            tfab_topology_path_t p[16];
            unsigned         k = tfab_topology_rank(t, ha->name, hb->name, p, 16);
            printf("%s -> %s:%s\n", ha->name, hb->name, k ? "" : " NO COMMON LINK");
            for (unsigned i = 0; i < k && i < 16; i++) {
                printf("  %u. %-8s %-5s ", i + 1, p[i].local->name, tfab_link_kind_str(p[i].local->kind));
                print_link(p[i].local);
                printf(" -> ");
                print_link(p[i].remote);
                printf("\n");
            }
        }
    }
    tfab_topology_free(t);
    return 0;
}
