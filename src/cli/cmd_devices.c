/* cmd_devices.c - `tfab devices`: the fabric hardware of this host at a glance, like
 * `ibv_devinfo` and `ip -br addr` together, plus the limits that decide whether a pool pins. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/tfab.h>
#include "cli.h"

static void print_rdma(const tfab_rdma_list_t *list)
{
    char sz[32];
    if (list->n_devs == 0) {
        printf("RDMA devices: none: %s\n  tfab will use TCP.\n", list->why);
        return;
    }
    printf("RDMA devices: %u\n", list->n_devs);
    for (unsigned d = 0; d < list->n_devs; d++) {
        const tfab_rdma_dev_info_t *dev = &list->devs[d];
        printf("%-8s guid %s  fw %s  max_mr_size %s  max_qp %u  max_mw %u\n", dev->name,
               dev->node_guid, dev->fw_ver[0] ? dev->fw_ver : "-",
               dev->max_mr_size == UINT64_MAX ? "unlimited"
                                              : tfab_size_human(dev->max_mr_size, sz, sizeof(sz)),
               dev->max_qp, dev->max_mw);
        for (unsigned p = 0; p < dev->n_ports; p++) {
            const tfab_port_info_t *port = &dev->ports[p];
            printf("  port %u  %-6s  %-10s  mtu %u (max %u)", port->port_num, port->state,
                   port->link_layer, port->active_mtu, port->max_mtu);
            if (strcmp(port->link_layer, "InfiniBand") == 0)
                printf("  lid %u", port->lid);
            printf("\n");
            for (unsigned g = 0; g < port->n_gids; g++) {
                const tfab_gid_info_t *gid = &port->gids[g];
                printf("    gid %-3u %-40s %-8s %s\n", gid->index, gid->str,
                       tfab_gid_type_str(gid->type), gid->netdev[0] ? gid->netdev : "-");
            }
        }
        if (!(dev->max_mw > 0))
            printf("  note: no memory windows: remote access cannot be bounded per transfer\n");
    }
}

static void print_netifs(const tfab_netif_info_t *ifs, unsigned n)
{
    printf("TCP interfaces: %u\n", n);
    for (unsigned i = 0; i < n; i++) {
        const tfab_netif_info_t *nif = &ifs[i];
        printf("  %-12s %-4s mtu %-6u", nif->name, nif->up ? "UP" : "DOWN", nif->mtu);
        if (nif->speed_mbps > 0)
            printf(" %6d Mb/s", nif->speed_mbps);
        if (nif->numa_node >= 0)
            printf(" numa %d", nif->numa_node);
        for (unsigned a = 0; a < nif->n_addrs; a++)
            printf(" %s", nif->addrs[a]);
        printf("\n");
    }
}

static void print_limits(const tfab_sys_limits_t *lim, uint64_t pool_bytes)
{
    char a[32], b[32], fix[512];
    printf("Limits:\n");
    printf("  memlock   soft %s, hard %s%s\n",
           lim->memlock_soft == UINT64_MAX ? "unlimited" : tfab_size_human(lim->memlock_soft, a, sizeof(a)),
           lim->memlock_hard == UINT64_MAX ? "unlimited" : tfab_size_human(lim->memlock_hard, b, sizeof(b)),
           lim->cap_ipc_lock ? " (CAP_IPC_LOCK: not enforced)" : "");
    if (tfab_sys_limits_check(lim, pool_bytes, fix, sizeof(fix)) == TFAB_OK)
        printf("            ok for a %s pool\n", tfab_size_human(pool_bytes, a, sizeof(a)));
    else
        printf("            TOO LOW: %s\n", fix);
    if (lim->hugepage_size)
        printf("  hugepages %llu of %llu free (%s each)%s\n",
               (unsigned long long)lim->hugepages_free, (unsigned long long)lim->hugepages_total,
               tfab_size_human(lim->hugepage_size, a, sizeof(a)),
               lim->hugepages_free * lim->hugepage_size >= pool_bytes
                   ? ""
                   : "; the pool falls back to transparent hugepages or 4 KiB pages");
    printf("  THP       %s\n", lim->thp[0] ? lim->thp : "unavailable");
    printf("  NUMA      %d node%s\n", lim->numa_nodes, lim->numa_nodes == 1 ? "" : "s");
}

static void print_cpu(void)
{
    tfab_cpu_info_t cpu;
    tfab_cpu_info_query(&cpu);
    printf("CPU: %s, %u online, features:%s%s%s%s%s%s%s\n", cpu.model[0] ? cpu.model : "unknown",
           cpu.n_cpus, cpu.avx2 ? " avx2" : "", cpu.fma ? " fma" : "", cpu.f16c ? " f16c" : "",
           cpu.avx512f ? " avx512f" : "", cpu.avx512bw ? " avx512bw" : "",
           cpu.avx512vnni ? " avx512vnni" : "", cpu.avx512bf16 ? " avx512bf16" : "");
}

int tfab_cli_devices(int argc, char **argv)
{
    uint64_t pool_bytes = 1ull << 30;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tfab devices [--pool-size SIZE]\n"
                   "  Lists RDMA devices (port state, link layer, active MTU, GIDs with type and\n"
                   "  netdev), TCP interfaces with addresses, and whether a pool of SIZE (default\n"
                   "  1GiB) can be pinned under this process's memlock limit. Exit code 0 also when\n"
                   "  there is no RDMA device (tfab then runs on TCP).\n");
            return 0;
        } else if (strcmp(argv[i], "--pool-size") == 0 && i + 1 < argc) {
            if (tfab_size_parse(argv[++i], &pool_bytes) != TFAB_OK || pool_bytes == 0) {
                fprintf(stderr, "tfab devices: --pool-size '%s' is not a size (e.g. 512M, 1G)\n",
                        argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "tfab devices: unknown argument '%s' (see tfab devices --help)\n",
                    argv[i]);
            return 2;
        }
    }

    tfab_rdma_list_t *list;
    tfab_status_t     st = tfab_rdma_list_query(&list);
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab devices: listing RDMA devices failed: %s\n", tfab_status_str(st));
        return 1;
    }
    print_rdma(list);
    tfab_rdma_list_free(list);

    tfab_netif_info_t *ifs;
    unsigned           n_ifs;
    st = tfab_netif_list_query(&ifs, &n_ifs);
    if (st != TFAB_OK) {
        fprintf(stderr, "tfab devices: listing network interfaces failed: %s\n", tfab_status_str(st));
        return 1;
    }
    print_netifs(ifs, n_ifs);
    free(ifs);

    tfab_sys_limits_t lim;
    tfab_sys_limits_query(&lim);
    print_limits(&lim, pool_bytes);
    print_cpu();
    return 0;
}
