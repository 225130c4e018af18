/* spin.c - spin-then-futex waiting on a 32-bit word: the low-latency wake-up under the stream
 * team (parallel_for) that still lets idle workers sleep. */
#define _GNU_SOURCE /* CPU_ALLOC, sched_getcpu, pthread_*_np */
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "stream_int.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

uint64_t spin_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t old)
{
    /* EAGAIN (changed already) and EINTR both mean "look again" */
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

void spin_wait_change(_Atomic uint32_t *word, uint32_t old, _Atomic uint32_t *sleepers,
                      uint64_t spin_ns)
{
    if (atomic_load_explicit(word, memory_order_acquire) != old)
        return;
    if (spin_ns > 0) {
        uint64_t start = spin_now_ns();
        for (unsigned i = 1;; i++) {
            cpu_relax();
            if (atomic_load_explicit(word, memory_order_acquire) != old)
                return;
            if ((i & 255) == 0 && spin_now_ns() - start > spin_ns)
                break;
        }
    }
    /* Dekker with spin_store_wake: we announce ourselves then re-check the word; the waker
     * stores the word then checks for sleepers (all seq_cst), so one of us sees the other. */
    atomic_fetch_add(sleepers, 1);
    while (atomic_load(word) == old)
        futex_wait(word, old);
    atomic_fetch_sub(sleepers, 1);
}

void spin_store_wake(_Atomic uint32_t *word, uint32_t val, _Atomic uint32_t *sleepers)
{
    atomic_store(word, val);
    if (atomic_load(sleepers) != 0)
        futex_wake(word);
}
