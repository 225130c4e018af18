/* test_model_alloc.c - model creation with an injected allocator on the committed tfab-tiny
 * model: failing the Nth allocation, for every N, fails cleanly (TFAB_ERR_NOMEM, one error
 * logged, everything given back); the run that succeeds predicts " there" (id 501) after
 * "Once upon a time", as the PyTorch reference does. Usage: test_model_alloc MODEL */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <tfab/log.h>
#include <tfab/model.h>

static const char *model_path;

typedef struct fail_alloc {
    int    fail_at; /* 1-based call that returns NULL; 0 never */
    int    calls;
    size_t live; /* bytes handed out and not yet freed */
    int    n_live;
} fail_alloc_t;

static void *t_alloc(size_t size, int node, void *arg)
{
    fail_alloc_t *f = arg;
    if (++f->calls == f->fail_at)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, size) != 0)
        return NULL;
    memset(p, 0, size);
    f->live += size;
    f->n_live++;
    return p;
}

static void t_free(void *ptr, size_t size, void *arg)
{
    fail_alloc_t *f = arg;
    f->live -= size;
    f->n_live--;
    free(ptr);
}

static int  n_errors;
static char last_err[1024];
static void sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    if (level == TFAB_LOG_ERROR) {
        n_errors++;
        snprintf(last_err, sizeof(last_err), "%s", line);
    }
}

static void test_fail_nth(void **state)
{
    int n_calls = 0;
    for (int fail_at = 1;; fail_at++) {
        fail_alloc_t            f     = {.fail_at = fail_at};
        tfab_stream_allocator_t alloc = {t_alloc, t_free, &f};
        tfab_model_params_t p = {.field_mask = TFAB_MODEL_PARAM_ALLOCATOR | TFAB_MODEL_PARAM_N_CTX |
                                               TFAB_MODEL_PARAM_N_THREADS,
                                 .path      = model_path,
                                 .n_ctx     = 16,
                                 .n_threads = 2,
                                 .allocator = &alloc};
        tfab_model_t       *m = NULL;
        n_errors              = 0;
        tfab_status_t st      = tfab_model_create(&p, &m);
        if (st == TFAB_OK) {
            assert_true(fail_at > f.calls); /* every allocation before succeeded */
            n_calls        = f.calls;
            int32_t tok[5] = {0, 3289, 1173, 259, 561};
            float  *logits = malloc(5 * 4096 * sizeof(float));
            assert_int_equal(tfab_model_forward(m, tok, 5, 0, logits), TFAB_OK);
            int best = 0;
            for (int i = 1; i < 4096; i++)
                if (logits[4 * 4096 + i] > logits[4 * 4096 + best])
                    best = i;
            assert_int_equal(best, 501);
            assert_int_equal(f.calls, n_calls); /* forward allocates nothing */
            free(logits);
            tfab_model_destroy(m);
            assert_int_equal(f.n_live, 0);
            assert_true(f.live == 0);
            break;
        }
        assert_int_equal(st, TFAB_ERR_NOMEM);
        assert_null(m);
        assert_int_equal(n_errors, 1);
        assert_non_null(strstr(last_err, "cannot allocate"));
        assert_int_equal(f.n_live, 0); /* everything given back */
        assert_true(f.live == 0);
    }
    assert_true(n_calls >= 10); /* the norm copies, the KV cache and the activations */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_model_alloc MODEL\n");
        return 2;
    }
    model_path = argv[1];
    tfab_log_set_sink(sink, NULL);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fail_nth)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
