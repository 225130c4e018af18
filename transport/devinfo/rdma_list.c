/* rdma_list.c - backend-independent parts of RDMA device info: freeing, names, GID choice. */
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <tfab/devinfo.h>

void tfab_rdma_list_free(tfab_rdma_list_t *list)
{
    if (list == NULL)
        return;
    for (unsigned d = 0; d < list->n_devs; d++) {
        for (unsigned p = 0; p < list->devs[d].n_ports; p++)
            free(list->devs[d].ports[p].gids);
        free(list->devs[d].ports);
    }
    free(list->devs);
    free(list);
}

const char *tfab_gid_type_str(tfab_gid_type_t type)
{
    switch (type) {
    case TFAB_GID_IB:      return "IB";
    case TFAB_GID_ROCE_V1: return "RoCE v1";
    case TFAB_GID_ROCE_V2: return "RoCE v2";
    default:               return "unknown";
    }
}

/* Preference among GIDs carrying the same address: v2 routes over IP, so it wins. */
static int type_rank(tfab_gid_type_t t)
{
    return t == TFAB_GID_ROCE_V2 ? 3 : t == TFAB_GID_ROCE_V1 ? 2 : t == TFAB_GID_IB ? 1 : 0;
}

tfab_status_t tfab_gid_select(const tfab_port_info_t *port, const struct sockaddr *addr,
                              unsigned *index_p)
{
    uint8_t want[16];
    if (port == NULL || addr == NULL || index_p == NULL)
        return TFAB_ERR_INVALID;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        memset(want, 0, 10);
        want[10] = want[11] = 0xff;
        memcpy(want + 12, &in->sin_addr, 4);
    } else if (addr->sa_family == AF_INET6) {
        memcpy(want, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
    } else {
        return TFAB_ERR_INVALID;
    }
    const tfab_gid_info_t *best = NULL;
    for (unsigned i = 0; i < port->n_gids; i++) {
        const tfab_gid_info_t *g = &port->gids[i];
        if (memcmp(g->raw, want, 16) != 0)
            continue;
        if (best == NULL || type_rank(g->type) > type_rank(best->type) ||
            (type_rank(g->type) == type_rank(best->type) && g->index < best->index))
            best = g;
    }
    if (best == NULL)
        return TFAB_ERR_NOT_FOUND;
    *index_p = best->index;
    return TFAB_OK;
}
