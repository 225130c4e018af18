/* pool.c - the memory-region pool: one mapping, bound and pre-faulted at creation, carved by a
 * buddy allocator whose bookkeeping lives outside the region (the region stays untouched by
 * the allocator, so it can be registered and NUMA-placed as a whole). */
#include <errno.h>
#include <numaif.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <tfab/devinfo.h>
#include <tfab/log.h>
#include <tfab/pool.h>
#include <tfab/units.h>

#define MOD      "pool"
#define NO_ORDER 0xffu
#define NIL      UINT32_MAX
#define POOL_ALIGN ((size_t)2 << 20) /* region alignment: the 2 MiB huge page */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

struct tfab_pool {
    uint8_t         *base;
    size_t           size;
    size_t           min_block;
    unsigned         min_shift;
    unsigned         max_order;   /* the whole region is one block of this order */
    uint32_t         n_blocks;    /* size / min_block */
    pthread_mutex_t  lock;
    /* bookkeeping, indexed by min-block number */
    uint8_t         *alloc_order; /* order of the allocated block starting here, or NO_ORDER */
    uint8_t         *free_order;  /* order of the free block starting here, or NO_ORDER */
    uint32_t        *next, *prev; /* free-list links */
    size_t          *requested;   /* bytes asked for by the allocation starting here */
    uint32_t         head[64];    /* free list per order */
    tfab_allocator_t allocator;
    /* stats */
    size_t           used, requested_total;
    uint64_t         n_allocs, n_frees, n_failed, registrations;
    int              hugetlb, thp, numa_node;
};

static void *default_alloc(size_t size, void *arg) { return malloc(size); }
static void  default_free(void *ptr, void *arg) { free(ptr); }

static void list_push(tfab_pool_t *p, unsigned order, uint32_t idx)
{
    p->free_order[idx] = (uint8_t)order;
    p->prev[idx]       = NIL;
    p->next[idx]       = p->head[order];
    if (p->head[order] != NIL)
        p->prev[p->head[order]] = idx;
    p->head[order] = idx;
}

static void list_remove(tfab_pool_t *p, unsigned order, uint32_t idx)
{
    if (p->prev[idx] != NIL)
        p->next[p->prev[idx]] = p->next[idx];
    else
        p->head[order] = p->next[idx];
    if (p->next[idx] != NIL)
        p->prev[p->next[idx]] = p->prev[idx];
    p->free_order[idx] = NO_ORDER;
}

static unsigned log2_ceil(size_t v)
{
    unsigned s = 0;
    while (((size_t)1 << s) < v)
        s++;
    return s;
}

/* Map the region: MAP_HUGETLB when asked or when enough hugepages are free, else normal pages
 * with a THP hint. */
static tfab_status_t map_region(tfab_pool_t *p, tfab_pool_huge_t huge)
{
    tfab_sys_limits_t lim;
    char              sz[32];
    tfab_sys_limits_query(&lim);
    int try_huge = huge != TFAB_POOL_HUGE_NONE && lim.hugepage_size != 0 &&
                   p->size % lim.hugepage_size == 0 &&
                   lim.hugepages_free * lim.hugepage_size >= p->size;
    if (try_huge) {
        void *m = mmap(NULL, p->size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (m != MAP_FAILED) {
            p->base    = m;
            p->hugetlb = 1;
            return TFAB_OK;
        }
        TFAB_INFO(MOD, "mmap(MAP_HUGETLB, %s) failed: %s; using normal pages",
                  tfab_size_human(p->size, sz, sizeof(sz)), strerror(errno));
    }
    if (huge == TFAB_POOL_HUGE_REQUIRE) {
        TFAB_ERROR(MOD, "hugepages required for a %s pool, but %llu of %llu free (%s each): "
                   "reserve them with `echo %llu > /proc/sys/vm/nr_hugepages`",
                   tfab_size_human(p->size, sz, sizeof(sz)),
                   (unsigned long long)lim.hugepages_free, (unsigned long long)lim.hugepages_total,
                   lim.hugepage_size ? "2 MiB" : "none",
                   (unsigned long long)(lim.hugepage_size ? p->size / lim.hugepage_size : 0));
        return TFAB_ERR_UNSUPPORTED;
    }
    /* over-map by the alignment and trim, so blocks are aligned to min(block, 2 MiB) in
     * absolute addresses (and THP can back the region from its first byte) */
    size_t align = p->size < POOL_ALIGN ? p->size : POOL_ALIGN;
    uint8_t *m   = mmap(NULL, p->size + align, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        TFAB_ERROR(MOD, "mmap(%s) for the pool failed: %s; lower the pool size",
                   tfab_size_human(p->size, sz, sizeof(sz)), strerror(errno));
        return TFAB_ERR_NOMEM;
    }
    uint8_t *start = (uint8_t *)(((uintptr_t)m + align - 1) & ~(uintptr_t)(align - 1));
    if (start > m)
        munmap(m, (size_t)(start - m));
    if (start + p->size < m + p->size + align)
        munmap(start + p->size, (size_t)(m + p->size + align - (start + p->size)));
    p->base = start;
    if (huge != TFAB_POOL_HUGE_NONE)
        p->thp = madvise(m, p->size, MADV_HUGEPAGE) == 0;
    return TFAB_OK;
}

/* Bind the (still untouched) region to a node, then fault every page in. */
static tfab_status_t place_region(tfab_pool_t *p)
{
    if (p->numa_node >= 0) {
        unsigned long mask[16] = {0};
        if ((size_t)p->numa_node >= sizeof(mask) * 8) {
            TFAB_ERROR(MOD, "NUMA node %d out of range", p->numa_node);
            return TFAB_ERR_INVALID;
        }
        mask[p->numa_node / (8 * sizeof(long))] |= 1ul << (p->numa_node % (8 * sizeof(long)));
        if (mbind(p->base, p->size, MPOL_BIND, mask, sizeof(mask) * 8, MPOL_MF_STRICT) != 0) {
            TFAB_ERROR(MOD, "binding the pool to NUMA node %d failed: %s", p->numa_node,
                       strerror(errno));
            return tfab_status_from_errno(errno);
        }
    }
    if (madvise(p->base, p->size, MADV_POPULATE_WRITE) != 0) {
        /* kernels before 5.14: touch one byte per page */
        long page = sysconf(_SC_PAGESIZE);
        for (size_t off = 0; off < p->size; off += (size_t)page)
            ((volatile uint8_t *)p->base)[off] = 0;
    }
    return TFAB_OK;
}

static tfab_status_t alloc_bookkeeping(tfab_pool_t *p)
{
    tfab_allocator_t *a = &p->allocator;
    size_t            n = p->n_blocks;
    if ((p->alloc_order = a->alloc(n, a->arg)) == NULL)
        goto err;
    if ((p->free_order = a->alloc(n, a->arg)) == NULL)
        goto err_free_alloc_order;
    if ((p->next = a->alloc(n * sizeof(uint32_t), a->arg)) == NULL)
        goto err_free_free_order;
    if ((p->prev = a->alloc(n * sizeof(uint32_t), a->arg)) == NULL)
        goto err_free_next;
    if ((p->requested = a->alloc(n * sizeof(size_t), a->arg)) == NULL)
        goto err_free_prev;
    memset(p->alloc_order, NO_ORDER, n);
    memset(p->free_order, NO_ORDER, n);
    for (unsigned o = 0; o < 64; o++)
        p->head[o] = NIL;
    list_push(p, p->max_order, 0);
    return TFAB_OK;

err_free_prev:
    a->free(p->prev, a->arg);
err_free_next:
    a->free(p->next, a->arg);
err_free_free_order:
    a->free(p->free_order, a->arg);
err_free_alloc_order:
    a->free(p->alloc_order, a->arg);
err:
    TFAB_ERROR(MOD, "out of memory for the bookkeeping of %u blocks", p->n_blocks);
    return TFAB_ERR_NOMEM;
}

static void free_bookkeeping(tfab_pool_t *p)
{
    tfab_allocator_t *a = &p->allocator;
    a->free(p->requested, a->arg);
    a->free(p->prev, a->arg);
    a->free(p->next, a->arg);
    a->free(p->free_order, a->arg);
    a->free(p->alloc_order, a->arg);
}

tfab_status_t tfab_pool_create(const tfab_pool_params_t *params, tfab_pool_t **pool_p)
{
    uint64_t         mask      = params ? params->field_mask : 0;
    size_t           size      = (mask & TFAB_POOL_PARAM_SIZE) ? params->size : (size_t)1 << 30;
    size_t           min_block = (mask & TFAB_POOL_PARAM_MIN_BLOCK) ? params->min_block : 4096;
    tfab_pool_huge_t huge      = (mask & TFAB_POOL_PARAM_HUGE) ? params->huge : TFAB_POOL_HUGE_AUTO;
    tfab_allocator_t allocator = {default_alloc, default_free, NULL};
    if ((mask & TFAB_POOL_PARAM_ALLOCATOR) && params->allocator && params->allocator->alloc &&
        params->allocator->free)
        allocator = *params->allocator;

    if (min_block < 64 || (min_block & (min_block - 1)) != 0) {
        TFAB_ERROR(MOD, "min_block %zu is not a power of two >= 64", min_block);
        return TFAB_ERR_INVALID;
    }
    if (size < min_block || size > ((size_t)1 << 46)) {
        TFAB_ERROR(MOD, "pool size %zu out of range [min_block, 64 TiB]", size);
        return TFAB_ERR_INVALID;
    }
    unsigned shift = log2_ceil(size);
    if ((((size_t)1 << shift) >> log2_ceil(min_block)) > UINT32_MAX) {
        TFAB_ERROR(MOD, "pool of 2^%u bytes has too many %zu-byte blocks; raise min_block", shift,
                   min_block);
        return TFAB_ERR_INVALID;
    }

    tfab_pool_t *p = allocator.alloc(sizeof(*p), allocator.arg);
    if (p == NULL)
        return TFAB_ERR_NOMEM;
    memset(p, 0, sizeof(*p));
    p->allocator = allocator;
    p->size      = (size_t)1 << shift;
    p->min_block = min_block;
    p->min_shift = log2_ceil(min_block);
    p->max_order = shift - p->min_shift;
    p->n_blocks  = (uint32_t)(p->size >> p->min_shift);
    p->numa_node = (mask & TFAB_POOL_PARAM_NUMA_NODE) ? params->numa_node : -1;

    tfab_status_t st;
    if ((st = alloc_bookkeeping(p)) != TFAB_OK)
        goto err_free_pool;
    if ((st = map_region(p, huge)) != TFAB_OK)
        goto err_free_bookkeeping;
    if ((st = place_region(p)) != TFAB_OK)
        goto err_unmap;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        st = TFAB_ERR_NOMEM;
        goto err_unmap;
    }
    char sz[32];
    TFAB_INFO(MOD, "pool of %s at %p (%s, numa node %d)", tfab_size_human(p->size, sz, sizeof(sz)),
              (void *)p->base, p->hugetlb ? "hugetlb" : p->thp ? "THP" : "4 KiB pages",
              p->numa_node);
    *pool_p = p;
    return TFAB_OK;

err_unmap:
    munmap(p->base, p->size);
err_free_bookkeeping:
    free_bookkeeping(p);
err_free_pool:
    allocator.free(p, allocator.arg);
    return st;
}

void tfab_pool_destroy(tfab_pool_t *pool)
{
    if (pool == NULL)
        return;
    if (pool->n_allocs != pool->n_frees)
        TFAB_WARN(MOD, "pool destroyed with %llu blocks still allocated",
                  (unsigned long long)(pool->n_allocs - pool->n_frees));
    pthread_mutex_destroy(&pool->lock);
    munmap(pool->base, pool->size);
    free_bookkeeping(pool);
    tfab_allocator_t a = pool->allocator;
    a.free(pool, a.arg);
}

tfab_status_t tfab_pool_alloc(tfab_pool_t *p, size_t size, void **ptr_p)
{
    if (size == 0 || size > p->size)
        return TFAB_ERR_INVALID;
    unsigned order = log2_ceil((size + p->min_block - 1) >> p->min_shift);
    pthread_mutex_lock(&p->lock);
    unsigned k = order;
    while (k <= p->max_order && p->head[k] == NIL)
        k++;
    if (k > p->max_order) {
        p->n_failed++;
        pthread_mutex_unlock(&p->lock);
        return TFAB_ERR_NOMEM;
    }
    uint32_t idx = p->head[k];
    list_remove(p, k, idx);
    while (k > order) { /* split: keep the lower half, free the upper */
        k--;
        list_push(p, k, idx + ((uint32_t)1 << k));
    }
    p->alloc_order[idx] = (uint8_t)order;
    p->requested[idx]   = size;
    p->used += p->min_block << order;
    p->requested_total += size;
    p->n_allocs++;
    pthread_mutex_unlock(&p->lock);
    *ptr_p = p->base + ((size_t)idx << p->min_shift);
    return TFAB_OK;
}

void tfab_pool_free(tfab_pool_t *p, void *ptr)
{
    if (ptr == NULL)
        return;
    uintptr_t off = (uintptr_t)ptr - (uintptr_t)p->base;
    if ((uintptr_t)ptr < (uintptr_t)p->base || off >= p->size || (off & (p->min_block - 1))) {
        TFAB_ERROR(MOD, "free of %p, which is not a block of this pool: ignored", ptr);
        return;
    }
    uint32_t idx = (uint32_t)(off >> p->min_shift);
    pthread_mutex_lock(&p->lock);
    unsigned order = p->alloc_order[idx];
    if (order == NO_ORDER) {
        pthread_mutex_unlock(&p->lock);
        TFAB_ERROR(MOD, "free of %p, which is not allocated (double free?): ignored", ptr);
        return;
    }
    p->alloc_order[idx] = NO_ORDER;
    p->used -= p->min_block << order;
    p->requested_total -= p->requested[idx];
    p->n_frees++;
    while (order < p->max_order) { /* coalesce with the buddy while it is free and whole */
        uint32_t buddy = idx ^ ((uint32_t)1 << order);
        if (p->free_order[buddy] != order)
            break;
        list_remove(p, order, buddy);
        idx &= ~((uint32_t)1 << order);
        order++;
    }
    list_push(p, order, idx);
    pthread_mutex_unlock(&p->lock);
}

int tfab_pool_contains(const tfab_pool_t *p, const void *ptr, size_t len)
{
    uintptr_t b = (uintptr_t)p->base, a = (uintptr_t)ptr;
    return a >= b && a - b <= p->size && len <= p->size - (a - b);
}

void  *tfab_pool_base(const tfab_pool_t *p) { return p->base; }
size_t tfab_pool_size(const tfab_pool_t *p) { return p->size; }

void tfab_pool_note_registration(tfab_pool_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->registrations++;
    pthread_mutex_unlock(&p->lock);
}

void tfab_pool_get_stats(tfab_pool_t *p, tfab_pool_stats_t *s)
{
    pthread_mutex_lock(&p->lock);
    memset(s, 0, sizeof(*s));
    s->size      = p->size;
    s->used      = p->used;
    s->requested = p->requested_total;
    for (int o = (int)p->max_order; o >= 0; o--) {
        if (p->head[o] != NIL) {
            s->largest_free = p->min_block << o;
            break;
        }
    }
    size_t free_bytes = p->size - p->used;
    s->fragmentation  = free_bytes ? 1.0 - (double)s->largest_free / (double)free_bytes : 0.0;
    s->n_allocs       = p->n_allocs;
    s->n_frees        = p->n_frees;
    s->n_failed       = p->n_failed;
    s->registrations  = p->registrations;
    s->hugetlb        = p->hugetlb;
    s->thp            = p->thp;
    s->numa_node      = p->numa_node;
    pthread_mutex_unlock(&p->lock);
}
