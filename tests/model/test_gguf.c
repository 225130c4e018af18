/* test_gguf.c - the GGUF reader: every metadata type, arrays, tensors, alignment, typed getters
 * with width conversion, and corrupt/truncated files failing with messages naming what broke. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <tfab/gguf.h>
#include <tfab/log.h>

/* ---- a tiny GGUF builder ------------------------------------------------------------------ */
typedef struct buf {
    uint8_t *p;
    size_t   n, cap;
} buf_t;

static void put(buf_t *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p   = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(buf_t *b, uint32_t v)
{
    put(b, &v, 4);
}
static void put_u64(buf_t *b, uint64_t v)
{
    put(b, &v, 8);
}
static void put_str(buf_t *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_key(buf_t *b, const char *k, uint32_t type)
{
    put_str(b, k);
    put_u32(b, type);
}
static void pad_to(buf_t *b, size_t align)
{
    static const uint8_t z[64];
    while (b->n % align)
        put(b, z, 1);
}

/* Captures the last error line logged. */
static char last_err[1024];
static void sink(tfab_log_level_t level, const char *module, const char *line, void *arg)
{
    if (level == TFAB_LOG_ERROR)
        snprintf(last_err, sizeof(last_err), "%s", line);
}

/* A valid file: 2 tensors, many key types, alignment 64 when align64. Offsets of interesting
 * fields are returned for corruption tests. */
typedef struct sample {
    buf_t  b;
    size_t off_t1_offset; /* the u64 offset field of tensor 1 */
    size_t off_t1_dims;   /* ne[0] of tensor 1 */
    size_t off_t0_type;
    size_t off_version;
} sample_t;

static void build_sample(sample_t *s, uint32_t version, int align64)
{
    memset(s, 0, sizeof(*s));
    buf_t *b = &s->b;
    put(b, "GGUF", 4);
    s->off_version = b->n;
    put_u32(b, version);
    put_u64(b, 2);                 /* tensors */
    put_u64(b, align64 ? 12 : 11); /* kvs */
    put_key(b, "general.architecture", 8);
    put_str(b, "llama");
    put_key(b, "u8", 0);
    put(b, (uint8_t[]){200}, 1);
    put_key(b, "i8", 1);
    put(b, (int8_t[]){-5}, 1);
    put_key(b, "u16", 2);
    put(b, (uint16_t[]){60000}, 2);
    put_key(b, "i16", 3);
    put(b, (int16_t[]){-30000}, 2);
    put_key(b, "ctx", 4);
    put_u32(b, 4096);
    put_key(b, "i32", 5);
    put(b, (int32_t[]){-7}, 4);
    put_key(b, "eps", 6);
    put(b, (float[]){1e-5f}, 4);
    put_key(b, "flag", 7);
    put(b, (uint8_t[]){1}, 1);
    put_key(b, "big", 10);
    put_u64(b, 1ull << 40);
    put_key(b, "tokens", 9);
    put_u32(b, 8);
    put_u64(b, 3);
    put_str(b, "<s>");
    put_str(b, "");
    put_str(b, "hello");
    if (align64) {
        put_key(b, "general.alignment", 4);
        put_u32(b, 64);
    }
    /* tensor 0: f32 [4, 2], tensor 1: q8_0 [64, 1] */
    size_t align = align64 ? 64 : 32;
    put_str(b, "a.weight");
    put_u32(b, 2);
    put_u64(b, 4);
    put_u64(b, 2);
    s->off_t0_type = b->n;
    put_u32(b, 0);
    put_u64(b, 0);
    put_str(b, "blk.3.attn_q.weight");
    put_u32(b, 1);
    s->off_t1_dims = b->n;
    put_u64(b, 64);
    put_u32(b, 8);
    s->off_t1_offset = b->n;
    put_u64(b, align); /* 32 bytes of f32 padded to the alignment */
    pad_to(b, align);
    for (int i = 0; i < 8; i++)
        put(b, (float[]){(float)i}, 4);
    pad_to(b, align);
    for (int i = 0; i < 68; i++)
        put(b, (uint8_t[]){(uint8_t)i}, 1);
}

static tfab_status_t open_buf(const buf_t *b, size_t n, tfab_gguf_t **g)
{
    last_err[0] = '\0';
    return tfab_gguf_open_buffer(b->p, n, "model.gguf", g);
}

static void test_valid(void **state)
{
    for (int align64 = 0; align64 < 2; align64++)
        for (uint32_t version = 2; version <= 3; version++) {
            sample_t s;
            build_sample(&s, version, align64);
            tfab_gguf_t *g = NULL;
            assert_int_equal(open_buf(&s.b, s.b.n, &g), TFAB_OK);
            assert_int_equal(tfab_gguf_version(g), version);
            assert_int_equal(tfab_gguf_alignment(g), align64 ? 64 : 32);
            assert_int_equal(tfab_gguf_n_kv(g), align64 ? 12 : 11);
            assert_string_equal(tfab_gguf_kv_key(g, 0), "general.architecture");
            assert_int_equal(tfab_gguf_kv_type(g, 10), TFAB_GGUF_ARRAY);
            assert_null(tfab_gguf_kv_key(g, 99));
            assert_int_equal(tfab_gguf_find_key(g, "ctx"), 5);
            assert_int_equal(tfab_gguf_find_key(g, "nope"), -1);

            const char *str;
            size_t      len;
            assert_int_equal(tfab_gguf_get_str(g, "general.architecture", &str, &len), TFAB_OK);
            assert_int_equal(len, 5);
            assert_memory_equal(str, "llama", 5);

            uint32_t u32;
            int32_t  i32;
            uint64_t u64;
            int64_t  i64;
            float    f;
            int      bl;
            assert_int_equal(tfab_gguf_get_u32(g, "ctx", &u32), TFAB_OK);
            assert_int_equal(u32, 4096);
            assert_int_equal(tfab_gguf_get_u32(g, "u8", &u32), TFAB_OK);
            assert_int_equal(u32, 200);
            assert_int_equal(tfab_gguf_get_u32(g, "u16", &u32), TFAB_OK);
            assert_int_equal(u32, 60000);
            assert_int_equal(tfab_gguf_get_i32(g, "i8", &i32), TFAB_OK);
            assert_int_equal(i32, -5);
            assert_int_equal(tfab_gguf_get_i32(g, "i16", &i32), TFAB_OK);
            assert_int_equal(i32, -30000);
            assert_int_equal(tfab_gguf_get_i32(g, "ctx", &i32), TFAB_OK);
            assert_int_equal(i32, 4096);
            assert_int_equal(tfab_gguf_get_i64(g, "i32", &i64), TFAB_OK);
            assert_true(i64 == -7);
            assert_int_equal(tfab_gguf_get_u64(g, "big", &u64), TFAB_OK);
            assert_true(u64 == (1ull << 40));
            /* out of range conversions are errors naming the key, output untouched */
            u32 = 77;
            assert_int_equal(tfab_gguf_get_u32(g, "big", &u32), TFAB_ERR_RANGE);
            assert_int_equal(u32, 77);
            assert_string_equal(last_err, "model.gguf: key 'big' = 1099511627776 does not fit u32");
            assert_int_equal(tfab_gguf_get_u32(g, "i32", &u32), TFAB_ERR_RANGE);
            assert_string_equal(last_err, "model.gguf: key 'i32' = -7 does not fit u32");
            assert_int_equal(tfab_gguf_get_u64(g, "i8", &u64), TFAB_ERR_RANGE);
            assert_int_equal(tfab_gguf_get_i32(g, "eps", &i32), TFAB_ERR_INVALID);
            assert_string_equal(last_err, "model.gguf: key 'eps' has type f32, expected i32");
            assert_int_equal(tfab_gguf_get_u32(g, "missing", &u32), TFAB_ERR_NOT_FOUND);
            assert_int_equal(tfab_gguf_get_f32(g, "eps", &f), TFAB_OK);
            assert_true(f == 1e-5f);
            assert_int_equal(tfab_gguf_get_f32(g, "ctx", &f), TFAB_ERR_INVALID);
            assert_int_equal(tfab_gguf_get_bool(g, "flag", &bl), TFAB_OK);
            assert_int_equal(bl, 1);
            assert_int_equal(tfab_gguf_get_str(g, "flag", &str, &len), TFAB_ERR_INVALID);

            tfab_gguf_arr_t arr;
            assert_int_equal(tfab_gguf_get_arr(g, "tokens", &arr), TFAB_OK);
            assert_int_equal(arr.type, TFAB_GGUF_STRING);
            assert_int_equal(arr.n, 3);
            assert_null(arr.data);
            assert_int_equal(tfab_gguf_arr_str(g, &arr, 2, &str, &len), TFAB_OK);
            assert_int_equal(len, 5);
            assert_memory_equal(str, "hello", 5);
            assert_int_equal(tfab_gguf_arr_str(g, &arr, 1, &str, &len), TFAB_OK);
            assert_int_equal(len, 0);
            assert_int_equal(tfab_gguf_arr_str(g, &arr, 0, &str, &len), TFAB_OK);
            assert_memory_equal(str, "<s>", 3);
            assert_int_equal(tfab_gguf_arr_str(g, &arr, 3, &str, &len), TFAB_ERR_RANGE);
            assert_int_equal(tfab_gguf_get_arr(g, "ctx", &arr), TFAB_ERR_INVALID);

            assert_int_equal(tfab_gguf_n_tensors(g), 2);
            const tfab_gguf_tensor_t *t = tfab_gguf_find_tensor(g, "a.weight");
            assert_non_null(t);
            assert_ptr_equal(t, tfab_gguf_tensor(g, 0));
            assert_int_equal(t->n_dims, 2);
            assert_int_equal(t->ne[0], 4);
            assert_int_equal(t->ne[1], 2);
            assert_int_equal(t->ne[2], 1);
            assert_int_equal(t->type, TFAB_DTYPE_F32);
            assert_int_equal(t->size, 32);
            assert_int_equal(tfab_gguf_data_offset(g) % tfab_gguf_alignment(g), 0);
            assert_ptr_equal(t->data, s.b.p + tfab_gguf_data_offset(g));
            float v[8];
            memcpy(v, t->data, sizeof(v));
            assert_true(v[0] == 0.0f && v[7] == 7.0f);
            t = tfab_gguf_find_tensor(g, "blk.3.attn_q.weight");
            assert_non_null(t);
            assert_int_equal(t->type, TFAB_DTYPE_Q8_0);
            assert_int_equal(t->size, 68);
            assert_int_equal(((const uint8_t *)t->data)[67], 67);
            assert_null(tfab_gguf_find_tensor(g, "blk.3.attn_k.weight"));
            assert_null(tfab_gguf_tensor(g, 2));
            tfab_gguf_close(g);
            free(s.b.p);
        }
}

/* Every strict prefix of a valid file is rejected cleanly, with a message naming the file. */
static void test_truncated(void **state)
{
    sample_t s;
    build_sample(&s, 3, 1);
    for (size_t n = 0; n < s.b.n; n++) {
        tfab_gguf_t *g    = NULL;
        uint8_t     *copy = malloc(n ? n : 1); /* exact-size copy so ASan catches overreads */
        memcpy(copy, s.b.p, n);
        last_err[0]      = '\0';
        tfab_status_t st = tfab_gguf_open_buffer(copy, n, "model.gguf", &g);
        assert_int_equal(st, TFAB_ERR_INVALID);
        assert_null(g);
        assert_true(strncmp(last_err, "model.gguf: ", 12) == 0);
        free(copy);
    }
    tfab_gguf_t *g;
    assert_int_equal(open_buf(&s.b, s.b.n - 1, &g), TFAB_ERR_INVALID);
    char want[256];
    snprintf(want, sizeof(want),
             "model.gguf: tensor 'blk.3.attn_q.weight': data [%zu..%zu) beyond end of file "
             "(size %zu)",
             s.b.n - 68, s.b.n, s.b.n - 1);
    assert_string_equal(last_err, want);
    assert_int_equal(open_buf(&s.b, 10, &g), TFAB_ERR_INVALID);
    assert_string_equal(last_err, "model.gguf: truncated: 10 bytes is shorter than the 24-byte "
                                  "GGUF header");
    free(s.b.p);
}

static void expect_bad(sample_t *s, tfab_status_t want_st, const char *want_msg)
{
    tfab_gguf_t *g = NULL;
    assert_int_equal(open_buf(&s->b, s->b.n, &g), want_st);
    assert_null(g);
    assert_string_equal(last_err, want_msg);
}

static void test_corrupt(void **state)
{
    sample_t s;
    uint64_t v64;
    uint32_t v32;

    build_sample(&s, 3, 0);
    s.b.p[0] = 'X';
    expect_bad(&s, TFAB_ERR_INVALID, "model.gguf: not a GGUF file (bad magic)");
    free(s.b.p);

    build_sample(&s, 1, 0);
    expect_bad(&s, TFAB_ERR_UNSUPPORTED,
               "model.gguf: GGUF version 1 is not supported (version 1; "
               "convert it again with a current llama.cpp)");
    free(s.b.p);
    build_sample(&s, 3u << 24, 0);
    expect_bad(&s, TFAB_ERR_UNSUPPORTED,
               "model.gguf: GGUF version 50331648 is not supported (big-endian file)");
    free(s.b.p);

    build_sample(&s, 3, 0);
    v64 = 1ull << 60; /* absurd kv count: rejected before allocating */
    memcpy(s.b.p + 16, &v64, 8);
    {
        char want[128];
        snprintf(want, sizeof(want),
                 "model.gguf: 1152921504606846976 key-value pairs cannot fit in %zu bytes", s.b.n);
        expect_bad(&s, TFAB_ERR_INVALID, want);
    }
    free(s.b.p);

    build_sample(&s, 3, 0);
    v32 = 99;
    memcpy(s.b.p + s.off_t0_type, &v32, 4);
    expect_bad(&s, TFAB_ERR_INVALID, "model.gguf: tensor 'a.weight': unknown type 99");
    free(s.b.p);

    build_sample(&s, 3, 0);
    v64 = 48; /* q8_0 rows must be a multiple of 32 */
    memcpy(s.b.p + s.off_t1_dims, &v64, 8);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: tensor 'blk.3.attn_q.weight': ne[0] = 48 is not a "
               "multiple of the q8_0 block size 32");
    free(s.b.p);

    build_sample(&s, 3, 0);
    v64 = 33;
    memcpy(s.b.p + s.off_t1_offset, &v64, 8);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: tensor 'blk.3.attn_q.weight': data offset 33 is "
               "not a multiple of the alignment 32");
    free(s.b.p);

    build_sample(&s, 3, 0);
    v64 = UINT64_MAX - 31; /* aligned, but start + size overflows */
    memcpy(s.b.p + s.off_t1_offset, &v64, 8);
    {
        tfab_gguf_t *g = NULL;
        assert_int_equal(open_buf(&s.b, s.b.n, &g), TFAB_ERR_INVALID);
        char want[160];
        snprintf(want, sizeof(want),
                 "model.gguf: tensor 'blk.3.attn_q.weight': data offset "
                 "18446744073709551584 + %zu + size 68 overflows (file size %zu)",
                 s.b.n - 68 - 32, s.b.n);
        assert_string_equal(last_err, want);
    }
    free(s.b.p);

    build_sample(&s, 3, 0);
    v64 = 1ull << 61; /* f32 [2^61, 2]: element count fits, byte size overflows */
    memcpy(s.b.p + s.off_t0_type - 16, &v64, 8);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: tensor 'a.weight': byte size of "
               "4611686018427387904 f32 elements overflows");
    free(s.b.p);

    /* duplicate key: rename "u16" to "ctx" */
    build_sample(&s, 3, 0);
    uint8_t *k = memmem(s.b.p, s.b.n, "u16", 3);
    memcpy(k, "ctx", 3);
    expect_bad(&s, TFAB_ERR_INVALID, "model.gguf: duplicate key 'ctx'");
    free(s.b.p);
    /* a key length running past the end of the file */
    build_sample(&s, 3, 0);
    k     = memmem(s.b.p, s.b.n, "tokens", 6);
    k[-1] = 0x01; /* key length becomes 2^56 + 6 */
    {
        char want[160];
        snprintf(want, sizeof(want),
                 "model.gguf: key 10: string of 72057594037927942 bytes at "
                 "offset %zu beyond end of file (size %zu)",
                 (size_t)(k - s.b.p), s.b.n);
        expect_bad(&s, TFAB_ERR_INVALID, want);
    }
    free(s.b.p);

    /* alignment not a power of two */
    build_sample(&s, 3, 1);
    v32 = 48;
    k   = memmem(s.b.p, s.b.n, "general.alignment", 17);
    memcpy(k + 17 + 4, &v32, 4);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: key 'general.alignment' = 48 is not a power of two");
    free(s.b.p);

    /* a bool that is neither 0 nor 1 */
    build_sample(&s, 3, 0);
    k        = memmem(s.b.p, s.b.n, "flag", 4);
    k[4 + 4] = 2;
    expect_bad(&s, TFAB_ERR_INVALID, "model.gguf: key 'flag': bool value 2 is neither 0 nor 1");
    free(s.b.p);

    /* an array of arrays */
    build_sample(&s, 3, 0);
    k   = memmem(s.b.p, s.b.n, "tokens", 6);
    v32 = 9;
    memcpy(k + 6 + 4, &v32, 4);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: key 'tokens': array element type 9 is not supported (nested array)");
    free(s.b.p);

    /* array count beyond the file */
    build_sample(&s, 3, 0);
    k   = memmem(s.b.p, s.b.n, "tokens", 6);
    v32 = 6;
    memcpy(k + 6 + 4, &v32, 4); /* f32 elements */
    v64 = 1000;
    memcpy(k + 6 + 8, &v64, 8);
    {
        tfab_gguf_t *g = NULL;
        assert_int_equal(open_buf(&s.b, s.b.n, &g), TFAB_ERR_INVALID);
        assert_non_null(strstr(last_err, "model.gguf: key 'tokens': array of 1000 f32 at offset"));
    }
    free(s.b.p);

    /* n_dims out of range */
    build_sample(&s, 3, 0);
    v32 = 5;
    memcpy(s.b.p + s.off_t1_dims - 4, &v32, 4);
    expect_bad(&s, TFAB_ERR_INVALID,
               "model.gguf: tensor 'blk.3.attn_q.weight': n_dims 5 not in 1..4");
    free(s.b.p);
}

static void test_file(void **state)
{
    sample_t s;
    build_sample(&s, 3, 0);
    char path[] = "/tmp/test_gguf_XXXXXX";
    int  fd     = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s.b.p, s.b.n), (ssize_t)s.b.n);
    close(fd);
    tfab_gguf_t *g = NULL;
    assert_int_equal(tfab_gguf_open(path, &g), TFAB_OK);
    assert_string_equal(tfab_gguf_name(g), path);
    assert_int_equal(tfab_gguf_file_size(g), s.b.n);
    const tfab_gguf_tensor_t *t = tfab_gguf_find_tensor(g, "a.weight");
    float                     v;
    memcpy(&v, (const float *)t->data + 5, 4);
    assert_true(v == 5.0f);
    tfab_gguf_close(g);
    assert_int_equal(truncate(path, 0), 0);
    last_err[0] = '\0';
    assert_int_equal(tfab_gguf_open(path, &g), TFAB_ERR_INVALID);
    char want[128];
    snprintf(want, sizeof(want), "%s: empty file (0 bytes), not a GGUF model", path);
    assert_string_equal(last_err, want);
    unlink(path);
    assert_int_equal(tfab_gguf_open("/nonexistent/x.gguf", &g), TFAB_ERR_IO);
    assert_string_equal(last_err, "/nonexistent/x.gguf: cannot open: No such file or directory");
    free(s.b.p);
}

static void test_dtype(void **state)
{
    assert_string_equal(tfab_dtype_name(TFAB_DTYPE_BF16), "bf16");
    assert_string_equal(tfab_dtype_name(4), "?");
    assert_int_equal(tfab_dtype_block_size(TFAB_DTYPE_Q4_0), 32);
    assert_int_equal(tfab_dtype_type_size(TFAB_DTYPE_Q4_0), 18);
    assert_int_equal(tfab_dtype_type_size(TFAB_DTYPE_Q8_0), 34);
    assert_int_equal(tfab_dtype_type_size(TFAB_DTYPE_Q6_K), 210);
    assert_int_equal(tfab_dtype_block_size(1000), 0);
    uint64_t b;
    assert_int_equal(tfab_dtype_bytes(TFAB_DTYPE_Q8_0, 4096, &b), TFAB_OK);
    assert_int_equal(b, 128 * 34);
    assert_int_equal(tfab_dtype_bytes(TFAB_DTYPE_Q8_0, 4095, &b), TFAB_ERR_INVALID);
    assert_int_equal(tfab_dtype_bytes(TFAB_DTYPE_F32, UINT64_MAX / 2, &b), TFAB_ERR_RANGE);
}

int main(void)
{
    tfab_log_set_sink(sink, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),   cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_corrupt), cmocka_unit_test(test_file),
        cmocka_unit_test(test_dtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
