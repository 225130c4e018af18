/* limits.c - the host limits that decide whether a pool can be pinned: memlock, hugepages,
 * transparent hugepages, NUMA nodes; and the exact fix when they are too low. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <tfab/devinfo.h>
#include <tfab/units.h>

static uint64_t rlim_bytes(rlim_t v) { return v == RLIM_INFINITY ? UINT64_MAX : (uint64_t)v; }

static void read_meminfo(tfab_sys_limits_t *lim)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL)
        return;
    char               line[256];
    unsigned long long v;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "HugePages_Total: %llu", &v) == 1)
            lim->hugepages_total = v;
        else if (sscanf(line, "HugePages_Free: %llu", &v) == 1)
            lim->hugepages_free = v;
        else if (sscanf(line, "Hugepagesize: %llu kB", &v) == 1)
            lim->hugepage_size = v * 1024;
    }
    fclose(f);
}

static void read_thp(tfab_sys_limits_t *lim)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f == NULL)
        return;
    char line[128];
    if (fgets(line, sizeof(line), f)) {
        char *l = strchr(line, '['), *r = l ? strchr(l, ']') : NULL;
        if (l && r && (size_t)(r - l - 1) < sizeof(lim->thp)) {
            memcpy(lim->thp, l + 1, (size_t)(r - l - 1));
            lim->thp[r - l - 1] = '\0';
        }
    }
    fclose(f);
}

static int have_cap_ipc_lock(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return 0;
    char               line[256];
    unsigned long long caps = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "CapEff: %llx", &caps) == 1)
            break;
    fclose(f);
    return (caps >> 14) & 1; /* CAP_IPC_LOCK == 14 */
}

static int count_numa_nodes(void)
{
    DIR *d = opendir("/sys/devices/system/node");
    if (d == NULL)
        return 1;
    int            n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "node", 4) == 0 && e->d_name[4] >= '0' && e->d_name[4] <= '9';
    closedir(d);
    return n > 0 ? n : 1;
}

tfab_status_t tfab_sys_limits_query(tfab_sys_limits_t *lim)
{
    memset(lim, 0, sizeof(*lim));
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        lim->memlock_soft = rlim_bytes(rl.rlim_cur);
        lim->memlock_hard = rlim_bytes(rl.rlim_max);
    }
    lim->cap_ipc_lock = have_cap_ipc_lock();
    read_meminfo(lim);
    read_thp(lim);
    lim->numa_nodes = count_numa_nodes();
    return TFAB_OK;
}

tfab_status_t tfab_sys_limits_check(const tfab_sys_limits_t *lim, uint64_t pool_bytes, char *fix,
                                    size_t fix_len)
{
    char have[32], need[32];
    if (lim->memlock_soft >= pool_bytes || lim->cap_ipc_lock)
        return TFAB_OK;
    tfab_size_human(lim->memlock_soft, have, sizeof(have));
    tfab_size_human(pool_bytes, need, sizeof(need));
    if (lim->memlock_hard >= pool_bytes)
        snprintf(fix, fix_len,
                 "memlock limit %s is below the pool's %s: run `ulimit -l unlimited` in this shell "
                 "(the hard limit allows it)", have, need);
    else
        snprintf(fix, fix_len,
                 "memlock limit %s (hard limit too) is below the pool's %s: add "
                 "`* - memlock unlimited` to /etc/security/limits.d/tfab.conf and log in again; "
                 "under systemd set LimitMEMLOCK=infinity; in docker pass --ulimit memlock=-1",
                 have, need);
    return TFAB_ERR_PERM;
}
