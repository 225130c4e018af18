/* rdma_verbs.c - RDMA device enumeration through libibverbs (the only devinfo file that
 * includes verbs). */
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <endian.h>
#include <infiniband/verbs.h>
#include <tfab/devinfo.h>
#include <tfab/log.h>

#define MOD "devinfo"

static tfab_gid_type_t gid_type_from_verbs(uint32_t t)
{
    switch (t) {
    case IBV_GID_TYPE_IB:      return TFAB_GID_IB;
    case IBV_GID_TYPE_ROCE_V1: return TFAB_GID_ROCE_V1;
    case IBV_GID_TYPE_ROCE_V2: return TFAB_GID_ROCE_V2;
    default:                   return TFAB_GID_UNKNOWN;
    }
}

static unsigned mtu_bytes(enum ibv_mtu mtu)
{
    return mtu >= IBV_MTU_256 && mtu <= IBV_MTU_4096 ? 128u << mtu : 0;
}

/* Note in why that device dev was skipped because call failed with err. */
static void append_why(tfab_rdma_list_t *list, const char *dev, const char *call, int err)
{
    size_t used = strlen(list->why);
    if (used + 1 < sizeof(list->why))
        snprintf(list->why + used, sizeof(list->why) - used, "%s: %s failed (%s); ", dev, call,
                 strerror(err));
}

static tfab_status_t query_ports(struct ibv_context *ctx, tfab_rdma_dev_info_t *dev)
{
    dev->ports = calloc(dev->n_ports, sizeof(*dev->ports));
    if (dev->ports == NULL)
        return TFAB_ERR_NOMEM;

    size_t total_gids = 0;
    for (unsigned p = 0; p < dev->n_ports; p++) {
        struct ibv_port_attr pa;
        tfab_port_info_t    *port = &dev->ports[p];
        port->port_num            = p + 1;
        if (ibv_query_port(ctx, (uint8_t)(p + 1), &pa) != 0) {
            snprintf(port->state, sizeof(port->state), "UNKNOWN");
            continue;
        }
        /* "PORT_ACTIVE" or "active" depending on the rdma-core version: print "ACTIVE" */
        const char *st = ibv_port_state_str(pa.state);
        if (strncasecmp(st, "PORT_", 5) == 0)
            st += 5;
        size_t k = 0;
        for (; st[k] && k + 1 < sizeof(port->state); k++)
            port->state[k] = (char)toupper((unsigned char)st[k]);
        port->state[k] = '\0';
        port->active = pa.state == IBV_PORT_ACTIVE;
        snprintf(port->link_layer, sizeof(port->link_layer), "%s",
                 pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand");
        port->active_mtu = mtu_bytes(pa.active_mtu);
        port->max_mtu    = mtu_bytes(pa.max_mtu);
        port->lid        = pa.lid;
        total_gids += (size_t)pa.gid_tbl_len;
    }
    if (total_gids == 0)
        return TFAB_OK;

    struct ibv_gid_entry *entries = calloc(total_gids, sizeof(*entries));
    if (entries == NULL)
        return TFAB_ERR_NOMEM;
    ssize_t n = ibv_query_gid_table(ctx, entries, total_gids, 0);
    if (n < 0) {
        TFAB_WARN(MOD, "ibv_query_gid_table(%s) failed: %s", dev->name, strerror((int)-n));
        n = 0;
    }
    for (unsigned p = 0; p < dev->n_ports; p++) {
        tfab_port_info_t *port = &dev->ports[p];
        unsigned          cnt  = 0;
        for (ssize_t i = 0; i < n; i++)
            cnt += entries[i].port_num == port->port_num;
        if (cnt == 0)
            continue;
        port->gids = calloc(cnt, sizeof(*port->gids));
        if (port->gids == NULL) {
            free(entries);
            return TFAB_ERR_NOMEM;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (entries[i].port_num != port->port_num)
                continue;
            tfab_gid_info_t *g = &port->gids[port->n_gids++];
            g->index           = entries[i].gid_index;
            memcpy(g->raw, entries[i].gid.raw, sizeof(g->raw));
            inet_ntop(AF_INET6, g->raw, g->str, sizeof(g->str));
            g->type = gid_type_from_verbs(entries[i].gid_type);
            if (entries[i].ndev_ifindex == 0 || if_indextoname(entries[i].ndev_ifindex, g->netdev) == NULL)
                g->netdev[0] = '\0';
        }
    }
    free(entries);
    return TFAB_OK;
}

static tfab_status_t query_device(struct ibv_device *ibdev, tfab_rdma_dev_info_t *dev,
                                  tfab_rdma_list_t *list)
{
    snprintf(dev->name, sizeof(dev->name), "%s", ibv_get_device_name(ibdev));
    struct ibv_context *ctx = ibv_open_device(ibdev);
    if (ctx == NULL) {
        append_why(list, dev->name, "ibv_open_device", errno);
        return TFAB_ERR_NODEV;
    }
    struct ibv_device_attr attr;
    if (ibv_query_device(ctx, &attr) != 0) {
        append_why(list, dev->name, "ibv_query_device", errno);
        ibv_close_device(ctx);
        return TFAB_ERR_NODEV;
    }
    uint64_t guid = be64toh(ibv_get_device_guid(ibdev));
    snprintf(dev->node_guid, sizeof(dev->node_guid), "%04x:%04x:%04x:%04x",
             (unsigned)(guid >> 48) & 0xffff, (unsigned)(guid >> 32) & 0xffff,
             (unsigned)(guid >> 16) & 0xffff, (unsigned)guid & 0xffff);
    snprintf(dev->fw_ver, sizeof(dev->fw_ver), "%s", attr.fw_ver);
    dev->max_mr_size = attr.max_mr_size;
    dev->max_qp      = (unsigned)attr.max_qp;
    dev->max_cqe     = (unsigned)attr.max_cqe;
    dev->max_mr      = (unsigned)attr.max_mr;
    dev->max_mw      = (unsigned)attr.max_mw;
    dev->max_sge     = (unsigned)attr.max_sge;
    dev->n_ports     = attr.phys_port_cnt;
    tfab_status_t st = query_ports(ctx, dev);
    ibv_close_device(ctx);
    return st;
}

tfab_status_t tfab_rdma_list_query(tfab_rdma_list_t **list_p)
{
    tfab_rdma_list_t *list = calloc(1, sizeof(*list));
    if (list == NULL)
        return TFAB_ERR_NOMEM;

    int                 num   = 0;
    struct ibv_device **ibdevs = ibv_get_device_list(&num);
    if (ibdevs == NULL) {
        snprintf(list->why, sizeof(list->why),
                 "ibv_get_device_list failed: %s (kernel without RDMA support?)", strerror(errno));
        *list_p = list;
        return TFAB_OK;
    }
    if (num == 0) {
        snprintf(list->why, sizeof(list->why),
                 "no RDMA device found (no driver bound; for soft-RoCE: "
                 "`rdma link add rxe0 type rxe netdev IFACE`)");
    } else {
        list->devs = calloc((size_t)num, sizeof(*list->devs));
        if (list->devs == NULL) {
            ibv_free_device_list(ibdevs);
            free(list);
            return TFAB_ERR_NOMEM;
        }
    }
    tfab_status_t st = TFAB_OK;
    for (int i = 0; i < num; i++) {
        tfab_rdma_dev_info_t *dev = &list->devs[list->n_devs];
        st                        = query_device(ibdevs[i], dev, list);
        if (st == TFAB_OK) {
            list->n_devs++;
            continue;
        }
        /* a device that cannot be opened is reported in why and skipped */
        for (unsigned p = 0; p < dev->n_ports && dev->ports; p++)
            free(dev->ports[p].gids);
        free(dev->ports);
        memset(dev, 0, sizeof(*dev));
        if (st == TFAB_ERR_NOMEM)
            break;
        st = TFAB_OK;
    }
    ibv_free_device_list(ibdevs);
    if (st != TFAB_OK) {
        tfab_rdma_list_free(list);
        return st;
    }
    *list_p = list;
    return TFAB_OK;
}
