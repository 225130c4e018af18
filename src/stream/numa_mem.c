/* numa_mem.c - the default scratch allocator: anonymous mmap, bound to one node with
 * mbind(MPOL_BIND) before the first touch, then pre-faulted so the data path never faults. */
#define _GNU_SOURCE /* CPU_ALLOC, sched_getcpu, pthread_*_np */
#include <errno.h>
#include <numaif.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <tfab/log.h>
#include "stream_int.h"

static void *numa_mem_alloc(size_t size, int node, void *arg)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        TFAB_ERROR(STREAM_MOD, "mmap(%zu bytes) for stream scratch failed: %s", size,
                   strerror(errno));
        return NULL;
    }
    if (node >= 0) {
        enum { BITS = 8 * sizeof(unsigned long) };
        unsigned long mask[(1024 + BITS - 1) / BITS] = {0};
        if ((unsigned)node >= 1024) {
            TFAB_ERROR(STREAM_MOD, "NUMA node %d out of range for mbind", node);
            goto err_unmap;
        }
        mask[node / BITS] |= 1ul << (node % BITS);
        /* maxnode counts one past the bits the kernel reads */
        if (mbind(p, size, MPOL_BIND, mask, (unsigned long)node + 2, 0) != 0) {
            TFAB_ERROR(STREAM_MOD, "mbind(%zu bytes, node %d) failed: %s", size, node,
                       strerror(errno));
            goto err_unmap;
        }
    }
    if (size >= (2u << 20))
        (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: fewer TLB misses when granted */
    long page = sysconf(_SC_PAGESIZE);
    for (size_t off = 0; off < size; off += (size_t)page)
        ((volatile char *)p)[off] = 0; /* fault in now, on the bound node */
    return p;

err_unmap:
    munmap(p, size);
    return NULL;
}

static void numa_mem_free(void *ptr, size_t size, void *arg)
{
    munmap(ptr, size);
}

const tfab_stream_allocator_t numa_mem_default_allocator = {
    .alloc = numa_mem_alloc,
    .free  = numa_mem_free,
    .arg   = NULL,
};
