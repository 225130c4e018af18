/* tfab/devinfo.h - what fabric hardware and limits this host has: RDMA devices, TCP
 * interfaces, memlock/hugepage limits, CPU features. Setup-path only: allocates, may block. */
#ifndef TFAB_DEVINFO_H
#define TFAB_DEVINFO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TFAB_NAME_MAX 64
#define TFAB_ADDRSTR_MAX 64 /* "ffff:...:ffff/128" fits */

typedef enum tfab_gid_type {
    TFAB_GID_IB = 0,
    TFAB_GID_ROCE_V1,
    TFAB_GID_ROCE_V2,
    TFAB_GID_UNKNOWN
} tfab_gid_type_t;

typedef struct tfab_gid_info {
    unsigned        index;                    /* GID table index, as verbs' sgid_index */
    uint8_t         raw[16];                  /* network byte order */
    char            str[TFAB_ADDRSTR_MAX];    /* "::ffff:10.99.0.1", "fe80::..." */
    tfab_gid_type_t type;
    char            netdev[TFAB_NAME_MAX];    /* "" when the GID sits on no netdev (IB) */
} tfab_gid_info_t;

typedef struct tfab_port_info {
    unsigned         port_num;                /* 1-based, as verbs */
    char             state[16];               /* "ACTIVE", "DOWN", ... */
    int              active;                  /* 1 when state is ACTIVE */
    char             link_layer[16];          /* "Ethernet", "InfiniBand" */
    unsigned         active_mtu;              /* bytes */
    unsigned         max_mtu;                 /* bytes */
    unsigned         lid;                     /* InfiniBand only */
    unsigned         n_gids;
    tfab_gid_info_t *gids;                    /* [n_gids], valid entries only */
} tfab_port_info_t;

typedef struct tfab_rdma_dev_info {
    char              name[TFAB_NAME_MAX];    /* "mlx5_0", "rxe0" */
    char              node_guid[24];          /* "0011:2233:4455:6677" */
    char              fw_ver[TFAB_NAME_MAX];
    uint64_t          max_mr_size;
    unsigned          max_qp, max_cqe, max_mr, max_mw, max_sge;
    unsigned          n_ports;
    tfab_port_info_t *ports;                  /* [n_ports] */
} tfab_rdma_dev_info_t;

typedef struct tfab_rdma_list {
    unsigned              n_devs;
    tfab_rdma_dev_info_t *devs;               /* [n_devs] */
    char                  why[256];           /* with n_devs == 0: why there is none */
} tfab_rdma_list_t;

/* List the RDMA devices of this host. With no device (or a build without verbs) this
 * succeeds with n_devs == 0 and a reason in why: the caller runs on TCP and says so.
 * Errors: TFAB_ERR_NOMEM. A device that fails to open is listed in why and skipped.
 * Free the result with tfab_rdma_list_free(). */
TFAB_API tfab_status_t tfab_rdma_list_query(tfab_rdma_list_t **list_p);
TFAB_API void          tfab_rdma_list_free(tfab_rdma_list_t *list);

TFAB_API const char *tfab_gid_type_str(tfab_gid_type_t type);

/* Choose the GID of port that carries the local address addr (AF_INET or AF_INET6):
 * an IPv4 address matches its IPv4-mapped GID (::ffff:a.b.c.d). Among matches RoCE v2 wins
 * over v1, then the lower index. Returns TFAB_ERR_NOT_FOUND (and leaves *index_p) when no
 * GID carries the address. */
TFAB_API tfab_status_t tfab_gid_select(const tfab_port_info_t *port, const struct sockaddr *addr,
                                       unsigned *index_p);

typedef struct tfab_netif_info {
    char     name[TFAB_NAME_MAX];
    int      up;                              /* IFF_UP and IFF_RUNNING */
    int      loopback;
    unsigned mtu;
    int      speed_mbps;                      /* -1 when the driver does not say */
    int      numa_node;                       /* -1 when unknown */
    char     mac[24];                         /* "" for none */
    unsigned n_addrs;
    char     addrs[8][TFAB_ADDRSTR_MAX];      /* "10.0.0.1/24", "fe80::1/64" */
} tfab_netif_info_t;

/* List network interfaces with their addresses. Free *ifs_p with free(). */
TFAB_API tfab_status_t tfab_netif_list_query(tfab_netif_info_t **ifs_p, unsigned *n_p);

typedef struct tfab_sys_limits {
    uint64_t memlock_soft;                    /* bytes; UINT64_MAX = unlimited */
    uint64_t memlock_hard;
    int      cap_ipc_lock;                    /* CAP_IPC_LOCK: the kernel skips the memlock limit */
    uint64_t hugepage_size;                   /* bytes of the default huge page; 0 if none */
    uint64_t hugepages_total;
    uint64_t hugepages_free;
    char     thp[16];                         /* transparent hugepages: "always", "madvise", "never", "" */
    int      numa_nodes;                      /* nodes with memory; 1 on non-NUMA hosts */
} tfab_sys_limits_t;

TFAB_API tfab_status_t tfab_sys_limits_query(tfab_sys_limits_t *limits);

/* Can pool_bytes be registered under these limits (memlock, unless CAP_IPC_LOCK)? Returns
 * TFAB_OK, or TFAB_ERR_PERM with the exact fix written to fix ("ulimit -l unlimited ..."). */
TFAB_API tfab_status_t tfab_sys_limits_check(const tfab_sys_limits_t *limits, uint64_t pool_bytes,
                                             char *fix, size_t fix_len);

typedef struct tfab_cpu_info {
    char     model[TFAB_NAME_MAX];
    unsigned n_cpus;                          /* online CPUs */
    int      avx2, fma, f16c, avx512f, avx512bw, avx512vnni, avx512bf16;
} tfab_cpu_info_t;

TFAB_API void tfab_cpu_info_query(tfab_cpu_info_t *cpu);

#ifdef __cplusplus
}
#endif
#endif
