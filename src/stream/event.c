/* event.c - stream events: a record captures a point in one stream's queue; waits and
 * synchronize block until it has run. Reference-counted so an event may be destroyed while
 * records and waits on it are still queued. */
#include <stdlib.h>
#include <tfab/log.h>
#include "stream_int.h"

tfab_status_t tfab_event_create(const tfab_event_params_t *params, tfab_event_t **event_p)
{
    if (event_p == NULL || (params != NULL && params->field_mask != 0)) {
        TFAB_ERROR(STREAM_MOD, "tfab_event_create: invalid arguments");
        return TFAB_ERR_INVALID;
    }
    tfab_event_t *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        TFAB_ERROR(STREAM_MOD, "out of memory for an event");
        return TFAB_ERR_NOMEM;
    }
    pthread_mutex_init(&ev->lock, NULL);
    pthread_cond_init(&ev->cv, NULL);
    ev->status = TFAB_OK;
    atomic_init(&ev->refs, 1);
    *event_p = ev;
    return TFAB_OK;
}

void event_ref(struct tfab_event *ev)
{
    atomic_fetch_add_explicit(&ev->refs, 1, memory_order_relaxed);
}

void event_unref(struct tfab_event *ev)
{
    if (atomic_fetch_sub_explicit(&ev->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_cond_destroy(&ev->cv);
    pthread_mutex_destroy(&ev->lock);
    free(ev);
}

void tfab_event_destroy(tfab_event_t *event)
{
    if (event)
        event_unref(event);
}

tfab_status_t event_prepare_record(struct tfab_event *ev, struct tfab_stream *stream,
                                   uint64_t *seq_p)
{
    pthread_mutex_lock(&ev->lock);
    if (ev->completed != ev->issued && ev->pending != stream) {
        /* completions must stay in order, and two streams do not order theirs */
        pthread_mutex_unlock(&ev->lock);
        return TFAB_ERR_BUSY;
    }
    ev->pending = stream;
    *seq_p      = ++ev->issued;
    pthread_mutex_unlock(&ev->lock);
    event_ref(ev);
    return TFAB_OK;
}

uint64_t event_latest(struct tfab_event *ev)
{
    pthread_mutex_lock(&ev->lock);
    uint64_t seq = ev->issued;
    pthread_mutex_unlock(&ev->lock);
    return seq;
}

void event_complete(struct tfab_event *ev, uint64_t seq, tfab_status_t status)
{
    pthread_mutex_lock(&ev->lock);
    if (seq > ev->completed) {
        ev->completed = seq;
        ev->status    = status;
    }
    if (ev->completed == ev->issued)
        ev->pending = NULL;
    if (ev->n_waiters)
        pthread_cond_broadcast(&ev->cv);
    pthread_mutex_unlock(&ev->lock);
}

tfab_status_t event_wait_seq(struct tfab_event *ev, uint64_t seq)
{
    pthread_mutex_lock(&ev->lock);
    ev->n_waiters++;
    while (ev->completed < seq)
        pthread_cond_wait(&ev->cv, &ev->lock);
    ev->n_waiters--;
    tfab_status_t st = ev->status;
    pthread_mutex_unlock(&ev->lock);
    return st;
}

tfab_status_t tfab_event_synchronize(tfab_event_t *event)
{
    if (event == NULL) {
        TFAB_ERROR(STREAM_MOD, "tfab_event_synchronize: event is NULL");
        return TFAB_ERR_INVALID;
    }
    return event_wait_seq(event, event_latest(event));
}

tfab_status_t tfab_event_query(tfab_event_t *event)
{
    if (event == NULL) {
        TFAB_ERROR(STREAM_MOD, "tfab_event_query: event is NULL");
        return TFAB_ERR_INVALID;
    }
    pthread_mutex_lock(&event->lock);
    tfab_status_t st = event->completed < event->issued ? TFAB_INPROGRESS : event->status;
    pthread_mutex_unlock(&event->lock);
    return st;
}
