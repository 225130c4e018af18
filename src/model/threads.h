/* threads.h - the model's own fork-join thread pool behind tfab_parallel_for_fn_t, used until
 * the caller supplies a stream's parallel_for (one change to switch). */
#ifndef TFAB_MODEL_THREADS_H
#define TFAB_MODEL_THREADS_H

#include <stddef.h>
#include <tfab/status.h>
#include <tfab/stream.h>

typedef struct tfab_threads tfab_threads_t;

/* n_threads counts the caller: n_threads - 1 workers are started (0 or 1: run inline). */
tfab_status_t tfab_threads_create(unsigned n_threads, tfab_threads_t **threads_p);
void          tfab_threads_destroy(tfab_threads_t *threads);
/* Has type tfab_parallel_for_fn_t; ctx is the tfab_threads_t *. Calls fn(task, arg) for every
 * task in [0, n_tasks) on the workers and the caller, returns when all are done. One caller at
 * a time; not reentrant from inside a task. */
void tfab_threads_parallel_for(void *ctx, size_t n_tasks, tfab_task_fn_t fn, void *arg);

#endif
