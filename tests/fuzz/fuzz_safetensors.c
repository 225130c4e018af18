/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (model files are outside
 * input): any bytes either fail cleanly or give tensors whose data lies inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/log.h>
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void quiet(tfab_log_level_t level, const char *module, const char *line, void *arg) {}

static volatile uint8_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tfab_log_set_sink(quiet, NULL);
    uint8_t *copy = malloc(size ? size : 1); /* exact size: overreads are caught */
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    tfab_st_t *st;
    if (tfab_st_open_buffer(copy, size, "fuzz.safetensors", &st) == TFAB_OK) {
        for (size_t i = 0; i < tfab_st_n_tensors(st); i++) {
            const tfab_st_tensor_t *t = tfab_st_tensor(st, i);
            if (tfab_st_find(st, t->name) != t)
                abort();
            const uint8_t *p = t->data;
            if (p < copy || p + t->size > copy + size)
                abort();
            if (t->size)
                sink ^= p[0] ^ p[t->size - 1];
        }
        tfab_st_close(st);
    }
    free(copy);
    return 0;
}
