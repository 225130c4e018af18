/* fuzz_gguf.c - libFuzzer target for the GGUF reader (model files are outside input): any
 * bytes either fail cleanly or yield an index whose every key, string and tensor is in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/gguf.h>
#include <tfab/log.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(tfab_log_level_t level, const char *module, const char *line, void *arg) {}

static volatile uint8_t sink;

static void touch(const void *p, size_t n)
{
    if (n) /* first and last byte: ASan flags anything outside the input buffer */
        sink ^= ((const uint8_t *)p)[0] ^ ((const uint8_t *)p)[n - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tfab_log_set_sink(quiet, NULL);
    /* an exact-size copy, so reading one byte past the end is caught */
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    tfab_gguf_t *g = NULL;
    if (tfab_gguf_open_buffer(copy, size, "fuzz.gguf", &g) == TFAB_OK) {
        for (uint64_t i = 0; i < tfab_gguf_n_kv(g); i++) {
            const char *key = tfab_gguf_kv_key(g, i);
            if (tfab_gguf_find_key(g, key) != (int64_t)i)
                abort();
            uint32_t        u32;
            int32_t         i32;
            uint64_t        u64;
            int64_t         i64;
            float           f;
            int             b;
            const char     *s;
            size_t          len;
            tfab_gguf_arr_t arr;
            (void)tfab_gguf_get_u32(g, key, &u32);
            (void)tfab_gguf_get_i32(g, key, &i32);
            (void)tfab_gguf_get_u64(g, key, &u64);
            (void)tfab_gguf_get_i64(g, key, &i64);
            (void)tfab_gguf_get_f32(g, key, &f);
            (void)tfab_gguf_get_bool(g, key, &b);
            if (tfab_gguf_get_str(g, key, &s, &len) == TFAB_OK)
                touch(s, len);
            if (tfab_gguf_get_arr(g, key, &arr) == TFAB_OK) {
                if (arr.type == TFAB_GGUF_STRING) {
                    for (uint64_t e = 0; e < arr.n; e++)
                        if (tfab_gguf_arr_str(g, &arr, e, &s, &len) != TFAB_OK)
                            abort();
                        else
                            touch(s, len);
                } else if (arr.n > 0 && arr.type == TFAB_GGUF_F32) {
                    float    last = tfab_gguf_arr_f32(&arr, arr.n - 1);
                    uint32_t bits;
                    memcpy(&bits, &last, 4);
                    sink ^= (uint8_t)bits;
                }
            }
        }
        for (uint64_t i = 0; i < tfab_gguf_n_tensors(g); i++) {
            const tfab_gguf_tensor_t *t = tfab_gguf_tensor(g, i);
            if (tfab_gguf_find_tensor(g, t->name) != t)
                abort();
            touch(t->data, t->size);
        }
        tfab_gguf_close(g);
    }
    free(copy);
    return 0;
}
