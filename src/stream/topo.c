/* topo.c - NUMA topology from libnuma (nodes with memory, their allowed online CPUs, memory
 * sizes), the flat fallback, CPU list formatting, and the per-CPU worker count that places
 * streams' workers on the least used cores. */
#define _GNU_SOURCE /* CPU_ALLOC, sched_getcpu, pthread_*_np */
#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <tfab/log.h>
#include "stream_int.h"

#define TOPO_MAX_CPUS 8192 /* placement bookkeeping covers CPU numbers below this */

/* libnuma caches node masks without locking: every libnuma call here runs under this lock,
 * which also guards cpu_load. */
static pthread_mutex_t topo_lock = PTHREAD_MUTEX_INITIALIZER;
static uint16_t        cpu_load[TOPO_MAX_CPUS]; /* workers of live streams pinned per CPU */

/* The calling thread's affinity mask (the kernel drops offline CPUs from it). */
static tfab_status_t affinity_get(cpu_set_t **set_p, size_t *size_p, int *max_cpu_p)
{
    for (int n = 1024; n <= (1 << 20); n *= 2) {
        cpu_set_t *set  = CPU_ALLOC((size_t)n);
        size_t     size = CPU_ALLOC_SIZE((size_t)n);
        if (set == NULL) {
            TFAB_ERROR(STREAM_MOD, "CPU_ALLOC(%d) failed", n);
            return TFAB_ERR_NOMEM;
        }
        if (sched_getaffinity(0, size, set) == 0) {
            *set_p     = set;
            *size_p    = size;
            *max_cpu_p = n;
            return TFAB_OK;
        }
        int err = errno;
        CPU_FREE(set);
        if (err != EINVAL) {
            TFAB_ERROR(STREAM_MOD, "sched_getaffinity failed: %s", strerror(err));
            return tfab_status_from_errno(err);
        }
    }
    TFAB_ERROR(STREAM_MOD, "sched_getaffinity: no mask size accepted");
    return TFAB_ERR_IO;
}

static void topo_free_nodes(tfab_numa_topo_t *topo)
{
    for (unsigned i = 0; i < topo->n_nodes; i++)
        free(topo->nodes[i].cpus);
    free(topo->nodes);
}

void tfab_numa_topo_free(tfab_numa_topo_t *topo)
{
    if (topo == NULL)
        return;
    topo_free_nodes(topo);
    free(topo);
}

static tfab_status_t build_flat(tfab_numa_topo_t *topo, const cpu_set_t *aff, size_t aff_size,
                                int max_cpu)
{
    tfab_numa_node_t *node = calloc(1, sizeof(*node));
    int              *cpus = calloc((size_t)CPU_COUNT_S(aff_size, aff), sizeof(int));
    if (node == NULL || cpus == NULL) {
        free(node);
        free(cpus);
        TFAB_ERROR(STREAM_MOD, "out of memory for the topology");
        return TFAB_ERR_NOMEM;
    }
    for (int c = 0; c < max_cpu; c++)
        if (CPU_ISSET_S((size_t)c, aff_size, aff))
            cpus[node->n_cpus++] = c;
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        node->mem_total = (uint64_t)si.totalram * si.mem_unit;
        node->mem_free  = (uint64_t)si.freeram * si.mem_unit;
    }
    node->id      = 0;
    node->cpus    = cpus;
    topo->nodes   = node;
    topo->n_nodes = 1;
    topo->n_cpus  = node->n_cpus;
    topo->numa    = 0;
    return TFAB_OK;
}

/* ---- libnuma as a topology source (under topo_lock) ---- */

static int numa_src_available(void)
{
    return numa_available();
}
static int numa_src_max_node(void)
{
    return numa_max_node();
}
static int numa_src_node_allowed(int node)
{
    return numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned)node);
}
static long long numa_src_node_size(int node, long long *free_p)
{
    return numa_node_size64(node, free_p);
}
static int numa_src_distance(int a, int b)
{
    return numa_distance(a, b);
}

static int numa_src_node_cpus(int node, int *cpus, int max)
{
    if (!numa_bitmask_isbitset(numa_nodes_ptr, (unsigned)node))
        return -1; /* a hole in the node numbers */
    struct bitmask *mask = numa_allocate_cpumask();
    if (mask == NULL)
        return -1;
    int n = 0;
    if (numa_node_to_cpus(node, mask) < 0) {
        n = -1;
    } else {
        for (int c = 0; c < max && (unsigned)c < mask->size; c++)
            if (numa_bitmask_isbitset(mask, (unsigned)c))
                cpus[n++] = c;
    }
    numa_free_cpumask(mask);
    return n;
}

static const topo_source_t numa_source = {
    .available    = numa_src_available,
    .max_node     = numa_src_max_node,
    .node_allowed = numa_src_node_allowed,
    .node_size    = numa_src_node_size,
    .node_cpus    = numa_src_node_cpus,
    .distance     = numa_src_distance,
};

/* Nodes with memory that we may allocate on; CPUs of memoryless (or not allowed) nodes go to
 * the nearest such node. TFAB_ERR_NOT_FOUND: no such node (the caller goes flat). */
static tfab_status_t build_numa(const topo_source_t *src, tfab_numa_topo_t *topo, const cpu_set_t *aff,
                                size_t aff_size, int max_cpu)
{
    tfab_status_t st;
    int           max_node = src->max_node();
    int          *owner    = NULL; /* owner[os node] = index in topo->nodes, or -1 */
    int          *cpus     = NULL; /* one node's CPUs, scratch */
    if (max_node < 0) {
        TFAB_ERROR(STREAM_MOD, "libnuma: no node numbers (max node %d)", max_node);
        return TFAB_ERR_NOT_FOUND;
    }
    owner       = malloc(sizeof(int) * (size_t)(max_node + 1));
    cpus        = malloc(sizeof(int) * (size_t)max_cpu);
    topo->nodes = calloc((size_t)max_node + 1, sizeof(tfab_numa_node_t));
    if (owner == NULL || cpus == NULL || topo->nodes == NULL) {
        st = TFAB_ERR_NOMEM;
        TFAB_ERROR(STREAM_MOD, "out of memory for the topology");
        goto err_free_nodes;
    }
    for (int n = 0; n <= max_node; n++) {
        owner[n] = -1;
        if (!src->node_allowed(n))
            continue;
        long long free_b = 0, total = src->node_size(n, &free_b);
        if (total <= 0)
            continue;
        tfab_numa_node_t *node = &topo->nodes[topo->n_nodes];
        node->id               = n;
        node->mem_total        = (uint64_t)total;
        node->mem_free         = free_b > 0 ? (uint64_t)free_b : 0;
        node->cpus             = calloc((size_t)max_cpu, sizeof(int));
        if (node->cpus == NULL) {
            st = TFAB_ERR_NOMEM;
            TFAB_ERROR(STREAM_MOD, "out of memory for the topology");
            goto err_free_nodes;
        }
        owner[n] = (int)topo->n_nodes++;
    }
    if (topo->n_nodes == 0) {
        st = TFAB_ERR_NOT_FOUND;
        goto err_free_nodes;
    }
    for (int n = 0; n <= max_node; n++) {
        int n_cpus = src->node_cpus(n, cpus, max_cpu);
        if (n_cpus <= 0)
            continue; /* no such node, or no CPU */
        int dst = owner[n];
        if (dst < 0) { /* memoryless (or not allowed): nearest node with memory */
            int best = -1;
            for (unsigned i = 0; i < topo->n_nodes; i++) {
                int d = src->distance(n, topo->nodes[i].id);
                if (d > 0 && (best < 0 || d < best)) {
                    best = d;
                    dst  = (int)i;
                }
            }
            if (dst < 0)
                dst = 0;
        }
        tfab_numa_node_t *node = &topo->nodes[dst];
        for (int i = 0; i < n_cpus; i++)
            if (cpus[i] >= 0 && cpus[i] < max_cpu && CPU_ISSET_S((size_t)cpus[i], aff_size, aff))
                node->cpus[node->n_cpus++] = cpus[i];
    }
    for (unsigned i = 0; i < topo->n_nodes; i++) {
        tfab_numa_node_t *node = &topo->nodes[i];
        /* merged memoryless CPUs may interleave: keep the list ascending */
        for (unsigned a = 1; a < node->n_cpus; a++)
            for (unsigned b = a; b > 0 && node->cpus[b - 1] > node->cpus[b]; b--) {
                int t             = node->cpus[b];
                node->cpus[b]     = node->cpus[b - 1];
                node->cpus[b - 1] = t;
            }
        topo->n_cpus += node->n_cpus;
    }
    topo->numa = 1;
    free(cpus);
    free(owner);
    return TFAB_OK;

err_free_nodes:
    topo_free_nodes(topo);
    topo->nodes   = NULL;
    topo->n_nodes = 0;
    free(cpus);
    free(owner);
    return st;
}

tfab_status_t topo_build(const topo_source_t *src, unsigned flags, const cpu_set_t *aff,
                         size_t aff_size, int max_cpu, tfab_numa_topo_t **topo_p)
{
    tfab_status_t st;
    tfab_numa_topo_t  *topo = calloc(1, sizeof(*topo));
    if (topo == NULL) {
        TFAB_ERROR(STREAM_MOD, "out of memory for the topology");
        return TFAB_ERR_NOMEM;
    }
    if (CPU_COUNT_S(aff_size, aff) == 0) {
        TFAB_ERROR(STREAM_MOD, "the process's CPU affinity mask is empty");
        st = TFAB_ERR_NODEV;
        goto err_free_topo;
    }
    if (flags & TFAB_NUMA_TOPO_FLAT) {
        snprintf(topo->why, sizeof(topo->why), "flat topology requested");
        st = build_flat(topo, aff, aff_size, max_cpu);
    } else if (src->available() < 0) {
        snprintf(topo->why, sizeof(topo->why), "libnuma: NUMA not available on this host");
        st = build_flat(topo, aff, aff_size, max_cpu);
    } else {
        st = build_numa(src, topo, aff, aff_size, max_cpu);
        if (st == TFAB_ERR_NOT_FOUND) {
            snprintf(topo->why, sizeof(topo->why), "libnuma: no node with memory is allowed");
            st = build_flat(topo, aff, aff_size, max_cpu);
        } else if (st == TFAB_OK && topo->n_cpus == 0) {
            /* CPUs we may use that no node claims: trust the affinity mask over sysfs */
            topo_free_nodes(topo);
            topo->nodes   = NULL;
            topo->n_nodes = 0;
            topo->n_cpus  = 0;
            snprintf(topo->why, sizeof(topo->why), "libnuma: no node holds an allowed CPU");
            st = build_flat(topo, aff, aff_size, max_cpu);
        }
    }
    if (st != TFAB_OK)
        goto err_free_topo;
    if (topo->why[0])
        TFAB_DEBUG(STREAM_MOD, "one flat node: %s", topo->why);
    *topo_p = topo;
    return TFAB_OK;

err_free_topo:
    free(topo);
    return st;
}

tfab_status_t tfab_numa_topo_query(const tfab_numa_topo_params_t *params, tfab_numa_topo_t **topo_p)
{
    unsigned flags = 0;
    if (params && (params->field_mask & TFAB_NUMA_TOPO_PARAM_FLAGS))
        flags = params->flags;
    if (topo_p == NULL || (flags & ~(unsigned)TFAB_NUMA_TOPO_FLAT)) {
        TFAB_ERROR(STREAM_MOD, "tfab_numa_topo_query: invalid arguments");
        return TFAB_ERR_INVALID;
    }
    tfab_status_t st;
    cpu_set_t    *aff      = NULL;
    size_t        aff_size = 0;
    int           max_cpu  = 0;
    if ((st = affinity_get(&aff, &aff_size, &max_cpu)) != TFAB_OK)
        return st;
    pthread_mutex_lock(&topo_lock);
    st = topo_build(&numa_source, flags, aff, aff_size, max_cpu, topo_p);
    pthread_mutex_unlock(&topo_lock);
    CPU_FREE(aff);
    return st;
}

const tfab_numa_node_t *tfab_numa_topo_node(const tfab_numa_topo_t *topo, int id)
{
    for (unsigned i = 0; topo && i < topo->n_nodes; i++)
        if (topo->nodes[i].id == id)
            return &topo->nodes[i];
    return NULL;
}

size_t tfab_cpulist_format(const int *cpus, unsigned n_cpus, char *buf, size_t len)
{
    size_t need = 0;
    if (len > 0)
        buf[0] = '\0';
    for (unsigned i = 0; i < n_cpus;) {
        unsigned j = i;
        while (j + 1 < n_cpus && cpus[j + 1] == cpus[j] + 1)
            j++;
        char part[32];
        int  w = j == i ? snprintf(part, sizeof(part), "%s%d", i ? "," : "", cpus[i])
                        : snprintf(part, sizeof(part), "%s%d-%d", i ? "," : "", cpus[i], cpus[j]);
        if (need + (size_t)w < len)
            memcpy(buf + need, part, (size_t)w + 1);
        else if (len > 0)
            buf[need < len ? need : len - 1] = '\0';
        need += (size_t)w;
        i = j + 1;
    }
    return need;
}

const tfab_numa_node_t *topo_current_node(const tfab_numa_topo_t *topo)
{
    int cpu = sched_getcpu();
    for (unsigned i = 0; cpu >= 0 && i < topo->n_nodes; i++)
        for (unsigned c = 0; c < topo->nodes[i].n_cpus; c++)
            if (topo->nodes[i].cpus[c] == cpu)
                return &topo->nodes[i];
    return NULL;
}

void topo_cpus_reserve(const tfab_numa_node_t *node, unsigned n, int *cpus)
{
    pthread_mutex_lock(&topo_lock);
    for (unsigned w = 0; w < n; w++) {
        unsigned best = 0, best_load = UINT32_MAX;
        for (unsigned c = 0; c < node->n_cpus; c++) {
            int      cpu  = node->cpus[c];
            unsigned load = cpu < TOPO_MAX_CPUS ? cpu_load[cpu] : 0;
            if (load < best_load) {
                best      = c;
                best_load = load;
            }
        }
        cpus[w] = node->cpus[best];
        if (cpus[w] < TOPO_MAX_CPUS && cpu_load[cpus[w]] < UINT16_MAX)
            cpu_load[cpus[w]]++;
    }
    pthread_mutex_unlock(&topo_lock);
}

void topo_cpus_add(const int *cpus, unsigned n)
{
    pthread_mutex_lock(&topo_lock);
    for (unsigned w = 0; w < n; w++)
        if (cpus[w] >= 0 && cpus[w] < TOPO_MAX_CPUS && cpu_load[cpus[w]] < UINT16_MAX)
            cpu_load[cpus[w]]++;
    pthread_mutex_unlock(&topo_lock);
}

void topo_cpus_release(const int *cpus, unsigned n)
{
    pthread_mutex_lock(&topo_lock);
    for (unsigned w = 0; w < n; w++)
        if (cpus[w] >= 0 && cpus[w] < TOPO_MAX_CPUS && cpu_load[cpus[w]] > 0)
            cpu_load[cpus[w]]--;
    pthread_mutex_unlock(&topo_lock);
}
