/* tfab/pool.h - the memory-region pool: one large region, mapped once at start-up (hugepages
 * when available, bound to a NUMA node), registered once per device by the transport, from
 * which every tensor and buffer that may cross the wire is carved by a buddy allocator. */
#ifndef TFAB_POOL_H
#define TFAB_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An allocator for the pool's own bookkeeping (never for the region itself), so tests can
 * fail the Nth allocation. NULL fields mean malloc/free. */
typedef struct tfab_allocator {
    void *(*alloc)(size_t size, void *arg);
    void (*free)(void *ptr, void *arg);
    void *arg;
} tfab_allocator_t;

typedef enum tfab_pool_huge {
    TFAB_POOL_HUGE_AUTO = 0, /* MAP_HUGETLB when enough free hugepages, else THP madvise */
    TFAB_POOL_HUGE_REQUIRE,  /* MAP_HUGETLB or fail with the fix in the log */
    TFAB_POOL_HUGE_NONE      /* plain pages (THP left to the system's default) */
} tfab_pool_huge_t;

enum {
    TFAB_POOL_PARAM_SIZE      = 1u << 0,
    TFAB_POOL_PARAM_NUMA_NODE = 1u << 1,
    TFAB_POOL_PARAM_HUGE      = 1u << 2,
    TFAB_POOL_PARAM_MIN_BLOCK = 1u << 3,
    TFAB_POOL_PARAM_ALLOCATOR = 1u << 4,
};

typedef struct tfab_pool_params {
    uint64_t                field_mask; /* TFAB_POOL_PARAM_* bits of the fields set */
    size_t                  size;       /* bytes; default 1 GiB; rounded up to a power of 2 */
    int                     numa_node;  /* bind the region to this node; default -1: no binding */
    tfab_pool_huge_t        huge;       /* default TFAB_POOL_HUGE_AUTO */
    size_t                  min_block;  /* smallest block, power of 2 >= 64; default 4 KiB */
    const tfab_allocator_t *allocator;  /* bookkeeping allocator; default malloc/free */
} tfab_pool_params_t;

typedef struct tfab_pool_stats {
    size_t   size;           /* bytes in the region */
    size_t   used;           /* bytes in allocated blocks (block sizes, not requests) */
    size_t   requested;      /* bytes asked for by live allocations */
    size_t   largest_free;   /* biggest block an allocation can get now */
    double   fragmentation;  /* 1 - largest_free / free; 0 when free is one block */
    uint64_t n_allocs;       /* successful allocations so far */
    uint64_t n_frees;
    uint64_t n_failed;       /* allocations refused: exhausted or too large */
    uint64_t registrations;  /* memory registrations made of this pool (one per device) */
    int      hugetlb;        /* 1: backed by MAP_HUGETLB pages */
    int      thp;            /* 1: MADV_HUGEPAGE asked for */
    int      numa_node;      /* node bound to, -1 for none */
} tfab_pool_stats_t;

typedef struct tfab_pool tfab_pool_t;

/* Map the region (and pre-fault it, so registration and first use do not fault), bind it, and
 * set up the allocator. Setup path: allocates and may take a while for large pools.
 * Errors: TFAB_ERR_INVALID (bad params), TFAB_ERR_NOMEM (mapping failed; logged with the
 * size and the fix), TFAB_ERR_UNSUPPORTED (HUGE_REQUIRE without hugepages). */
TFAB_API tfab_status_t tfab_pool_create(const tfab_pool_params_t *params, tfab_pool_t **pool_p);

/* Unmap the region. Every registration of it must have been undone first. */
TFAB_API void tfab_pool_destroy(tfab_pool_t *pool);

/* Carve a block of at least size bytes, aligned to min(block size, 2 MiB) and to at least 64.
 * Thread-safe, never maps or registers memory. Errors: TFAB_ERR_NOMEM when no block is free
 * (exhaustion is reported, never worked around), TFAB_ERR_INVALID for 0 or size > pool. */
TFAB_API tfab_status_t tfab_pool_alloc(tfab_pool_t *pool, size_t size, void **ptr_p);

/* Return a block. ptr must come from tfab_pool_alloc of this pool and not be freed twice
 * (checked: a bad pointer is logged and ignored). Thread-safe. */
TFAB_API void tfab_pool_free(tfab_pool_t *pool, void *ptr);

/* Is [ptr, ptr + len) inside the region? (Bounds for zero-copy and for peers' requests.) */
TFAB_API int tfab_pool_contains(const tfab_pool_t *pool, const void *ptr, size_t len);

TFAB_API void  *tfab_pool_base(const tfab_pool_t *pool);
TFAB_API size_t tfab_pool_size(const tfab_pool_t *pool);

/* Count one memory registration of the region (called by the transport's backends). */
TFAB_API void tfab_pool_note_registration(tfab_pool_t *pool);

TFAB_API void tfab_pool_get_stats(tfab_pool_t *pool, tfab_pool_stats_t *stats);

#ifdef __cplusplus
}
#endif
#endif
