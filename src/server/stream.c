/* stream.c - response chunks from one fixed pool (allocated at start, reused, the reuse counted)
 * and the generation stream that carries them from the scheduler to a connection. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include "srv.h"

int srv_pool_init(srv_pool_t *pool, unsigned n)
{
    memset(pool, 0, sizeof(*pool));
    if ((pool->chunks = calloc(n, sizeof(*pool->chunks))) == NULL)
        return -1;
    pthread_mutex_init(&pool->lock, NULL);
    pool->n = pool->n_free = n;
    for (unsigned i = n; i-- > 0;) {
        pool->chunks[i].next = pool->free;
        pool->free           = &pool->chunks[i];
    }
    return 0;
}

void srv_pool_cleanup(srv_pool_t *pool)
{
    pthread_mutex_destroy(&pool->lock);
    free(pool->chunks);
    pool->chunks = NULL;
}

srv_chunk_t *srv_pool_get(srv_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    srv_chunk_t *c = pool->free;
    if (c) {
        pool->free = c->next;
        pool->n_free--;
        pool->allocs++;
        if (c->reused)
            pool->reuses++;
        c->reused = 1;
        c->next   = NULL;
        c->len    = 0;
    } else {
        pool->exhausted++;
    }
    pthread_mutex_unlock(&pool->lock);
    return c;
}

unsigned srv_pool_n_free(srv_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    unsigned n = pool->n_free;
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void srv_pool_put_list(srv_pool_t *pool, srv_chunk_t *list)
{
    if (list == NULL)
        return;
    srv_chunk_t *last = list;
    unsigned     n    = 1;
    while (last->next) {
        last = last->next;
        n++;
    }
    pthread_mutex_lock(&pool->lock);
    last->next = pool->free;
    pool->free = list;
    pool->n_free += n;
    pthread_mutex_unlock(&pool->lock);
}

srv_stream_t *srv_stream_create(srv_t *srv)
{
    srv_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if ((s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    atomic_init(&s->refs, 1);
    atomic_init(&s->cancel, SRV_CANCEL_NONE);
    s->srv         = srv;
    s->slot        = -1;
    s->id          = atomic_fetch_add(&srv->next_id, 1) + 1;
    s->t_arrive_ns = srv_now_ns();
    return s;
}

void srv_stream_put(srv_stream_t *s)
{
    if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    srv_pool_put_list(&s->srv->pool, s->head);
    srv_request_free(&s->req);
    tfab_sampler_destroy(s->sampler);
    free(s->prompt);
    free(s->text);
    close(s->efd);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

srv_chunk_t *srv_stream_take(srv_stream_t *s, int *done_p)
{
    uint64_t v;
    if (read(s->efd, &v, sizeof(v)) < 0) { /* clear the wakeup; EAGAIN when none */
    }
    pthread_mutex_lock(&s->lock);
    srv_chunk_t *list = s->head;
    s->head = s->tail = NULL;
    s->queued         = 0; /* acknowledged: the connection has them now */
    *done_p           = s->done && list == NULL;
    pthread_mutex_unlock(&s->lock);
    return list;
}
