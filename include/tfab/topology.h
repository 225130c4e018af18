/* tfab/topology.h - the topology priority file: the hosts, the links each has (an RDMA
 * device/port/GID, or a TCP address), and per pair of hosts the links ranked best first. A link
 * name names a network: link "ib0" of host A reaches link "ib0" of host B. Setup path only. */
#ifndef TFAB_TOPOLOGY_H
#define TFAB_TOPOLOGY_H

#include <stddef.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tfab_link_kind { TFAB_LINK_VERBS = 0, TFAB_LINK_TCP = 1 } tfab_link_kind_t;

typedef struct tfab_topology_link {
    char             name[32];
    tfab_link_kind_t kind;
    char             device[64];   /* verbs: "mlx5_0", "rxe0" */
    int              port;         /* verbs: port number (default 1) */
    int              gid_index;    /* verbs: -1 = choose the GID carrying address */
    char             address[80];  /* tcp: "ip:port"; verbs: the IP the GID carries */
    int              line;         /* where it was defined */
} tfab_topology_link_t;

typedef struct tfab_topology_host {
    char              name[64];
    tfab_topology_link_t *links;
    unsigned          n_links;
    int               line;
} tfab_topology_host_t;

/* One usable way from a host to a peer: our end and theirs, of the same network. */
typedef struct tfab_topology_path {
    const tfab_topology_link_t *local;
    const tfab_topology_link_t *remote;
} tfab_topology_path_t;

typedef struct tfab_topology tfab_topology_t;

/* Parse a topology document (YAML). name is used in messages ("topology.yaml"). On error
 * writes "NAME:LINE: what is wrong" to err and returns TFAB_ERR_INVALID (or TFAB_ERR_NOMEM);
 * every reference is checked (hosts, link names, kinds) before success. */
TFAB_API tfab_status_t tfab_topology_parse(const char *text, size_t len, const char *name,
                                       tfab_topology_t **topo_p, char *err, size_t err_len);
/* Read and parse a file; errors as above, or TFAB_ERR_IO naming the file. */
TFAB_API tfab_status_t tfab_topology_load(const char *path, tfab_topology_t **topo_p, char *err,
                                      size_t err_len);
TFAB_API void          tfab_topology_free(tfab_topology_t *topo);

TFAB_API unsigned                tfab_topology_n_hosts(const tfab_topology_t *topo);
TFAB_API const tfab_topology_host_t *tfab_topology_host(const tfab_topology_t *topo, unsigned i);
TFAB_API const tfab_topology_host_t *tfab_topology_find_host(const tfab_topology_t *topo, const char *name);

/* The paths from host from to host to, best first, into out (at most max); returns how many
 * exist. A route in the file gives the order; without one, every network both hosts are on
 * counts, verbs before tcp, then in the order of from's links. */
TFAB_API unsigned tfab_topology_rank(const tfab_topology_t *topo, const char *from, const char *to,
                                 tfab_topology_path_t *out, unsigned max);

/* The fabric's ranked links (tfab_fabric_params_t.links) for host talking to peer: host's end
 * of each path from tfab_topology_rank, best first, as "tcp ip:port, verbs ip:PORT" (verbs
 * links carry only an IP: verbs_port completes it). Both peers derive theirs from the same
 * file, so their rankings agree. Errors: TFAB_ERR_INVALID (no common link), TFAB_ERR_RANGE
 * (out too small). */
TFAB_API tfab_status_t tfab_topology_links(const tfab_topology_t *topo, const char *host,
                                           const char *peer, int verbs_port, char *out,
                                           size_t len);

TFAB_API const char *tfab_link_kind_str(tfab_link_kind_t kind);

#ifdef __cplusplus
}
#endif
#endif
