/* netif.c - network interfaces with addresses, MTU, speed and NUMA node (for the TCP path). */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <tfab/devinfo.h>

static int read_sysfs_int(const char *ifname, const char *attr, int dflt)
{
    char path[256];
    snprintf(path, sizeof(path), "/sys/class/net/%s/%s", ifname, attr);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return dflt;
    int v;
    if (fscanf(f, "%d", &v) != 1)
        v = dflt;
    fclose(f);
    return v;
}

static unsigned prefix_len(const struct sockaddr *mask)
{
    const uint8_t *b;
    size_t         n;
    if (mask == NULL)
        return 0;
    if (mask->sa_family == AF_INET) {
        b = (const uint8_t *)&((const struct sockaddr_in *)mask)->sin_addr;
        n = 4;
    } else {
        b = (const uint8_t *)&((const struct sockaddr_in6 *)mask)->sin6_addr;
        n = 16;
    }
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += (unsigned)__builtin_popcount(b[i]);
    return bits;
}

static tfab_netif_info_t *find_or_add(tfab_netif_info_t *ifs, unsigned *n, const char *name)
{
    for (unsigned i = 0; i < *n; i++)
        if (strcmp(ifs[i].name, name) == 0)
            return &ifs[i];
    tfab_netif_info_t *nif = &ifs[(*n)++];
    snprintf(nif->name, sizeof(nif->name), "%s", name);
    nif->speed_mbps = -1;
    nif->numa_node  = -1;
    return nif;
}

tfab_status_t tfab_netif_list_query(tfab_netif_info_t **ifs_p, unsigned *n_p)
{
    struct ifaddrs *ifa_list;
    if (getifaddrs(&ifa_list) != 0)
        return tfab_status_from_errno(errno);
    unsigned cap = 0;
    for (struct ifaddrs *ifa = ifa_list; ifa; ifa = ifa->ifa_next)
        cap++;
    tfab_netif_info_t *ifs = calloc(cap ? cap : 1, sizeof(*ifs));
    if (ifs == NULL) {
        freeifaddrs(ifa_list);
        return TFAB_ERR_NOMEM;
    }
    unsigned n = 0;
    for (struct ifaddrs *ifa = ifa_list; ifa; ifa = ifa->ifa_next) {
        tfab_netif_info_t *nif = find_or_add(ifs, &n, ifa->ifa_name);
        nif->up       = (ifa->ifa_flags & IFF_UP) && (ifa->ifa_flags & IFF_RUNNING);
        nif->loopback = (ifa->ifa_flags & IFF_LOOPBACK) != 0;
        if (ifa->ifa_addr == NULL)
            continue;
        int fam = ifa->ifa_addr->sa_family;
        if (fam == AF_PACKET) {
            const struct sockaddr_ll *ll = (const struct sockaddr_ll *)ifa->ifa_addr;
            if (ll->sll_halen == 6 && !nif->loopback)
                snprintf(nif->mac, sizeof(nif->mac), "%02x:%02x:%02x:%02x:%02x:%02x",
                         ll->sll_addr[0], ll->sll_addr[1], ll->sll_addr[2], ll->sll_addr[3],
                         ll->sll_addr[4], ll->sll_addr[5]);
        } else if ((fam == AF_INET || fam == AF_INET6) &&
                   nif->n_addrs < sizeof(nif->addrs) / sizeof(nif->addrs[0])) {
            char        host[INET6_ADDRSTRLEN];
            const void *src = fam == AF_INET
                                  ? (const void *)&((struct sockaddr_in *)ifa->ifa_addr)->sin_addr
                                  : (const void *)&((struct sockaddr_in6 *)ifa->ifa_addr)->sin6_addr;
            if (inet_ntop(fam, src, host, sizeof(host)) == NULL)
                continue;
            snprintf(nif->addrs[nif->n_addrs++], TFAB_ADDRSTR_MAX, "%s/%u", host,
                     prefix_len(ifa->ifa_netmask));
        }
    }
    freeifaddrs(ifa_list);
    for (unsigned i = 0; i < n; i++) {
        ifs[i].mtu        = (unsigned)read_sysfs_int(ifs[i].name, "mtu", 0);
        ifs[i].speed_mbps = ifs[i].loopback ? -1 : read_sysfs_int(ifs[i].name, "speed", -1);
        ifs[i].numa_node  = read_sysfs_int(ifs[i].name, "device/numa_node", -1);
    }
    *ifs_p = ifs;
    *n_p   = n;
    return TFAB_OK;
}
