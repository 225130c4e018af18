/* safetensors.c - safetensors reader: maps the file, parses the JSON header with cJSON and checks
 * every tensor's dtype, shape and data_offsets against the file size with overflow-safe math. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tfab/log.h>
#include "safetensors.h"

#define MOD        "safetensors"
#define MAX_HEADER (100u << 20) /* the format's own limit on the JSON header */

struct tfab_st {
    char             *name;
    const uint8_t    *base;
    uint64_t          size;
    int               mapped;
    size_t            n;
    tfab_st_tensor_t *tensors;
};

static const struct {
    const char *name;
    uint32_t    type;
    uint32_t    bytes;
} st_dtypes[] = {
    {"F32", TFAB_DTYPE_F32, 4},
    {"F16", TFAB_DTYPE_F16, 2},
    {"BF16", TFAB_DTYPE_BF16, 2},
    {"F64", TFAB_DTYPE_F64, 8},
    {"I8", TFAB_DTYPE_I8, 1},
    {"I16", TFAB_DTYPE_I16, 2},
    {"I32", TFAB_DTYPE_I32, 4},
    {"I64", TFAB_DTYPE_I64, 8},
    {"U8", TFAB_ST_DTYPE_OTHER, 1},
    {"U16", TFAB_ST_DTYPE_OTHER, 2},
    {"U32", TFAB_ST_DTYPE_OTHER, 4},
    {"U64", TFAB_ST_DTYPE_OTHER, 8},
    {"BOOL", TFAB_ST_DTYPE_OTHER, 1},
    {"F8_E4M3", TFAB_ST_DTYPE_OTHER, 1},
    {"F8_E5M2", TFAB_ST_DTYPE_OTHER, 1},
};

static void free_index(tfab_st_t *st)
{
    for (size_t i = 0; st->tensors && i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    free(st->name);
}

static tfab_status_t bad_tensor(const tfab_st_t *st, const char *tname, const char *what)
{
    TFAB_ERROR(MOD, "%s: tensor '%.96s': %s", st->name, tname, what);
    return TFAB_ERR_INVALID;
}

static tfab_status_t parse_entry(tfab_st_t *st, const cJSON *e, uint64_t data_size,
                                 tfab_st_tensor_t *t)
{
    char        msg[256];
    const char *tn = e->string;
    if (!cJSON_IsObject(e))
        return bad_tensor(st, tn, "entry is not a JSON object");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(of))
        return bad_tensor(st, tn, "needs string 'dtype' and arrays 'shape' and 'data_offsets'");
    uint32_t bytes = 0;
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
        if (strcmp(dt->valuestring, st_dtypes[i].name) == 0) {
            t->type = st_dtypes[i].type;
            bytes   = st_dtypes[i].bytes;
            snprintf(t->dtype, sizeof(t->dtype), "%s", st_dtypes[i].name);
        }
    if (bytes == 0) {
        snprintf(msg, sizeof(msg), "unknown dtype '%.32s'", dt->valuestring);
        return bad_tensor(st, tn, msg);
    }
    int nd = cJSON_GetArraySize(sh);
    if (nd > TFAB_GGUF_MAX_DIMS) {
        snprintf(msg, sizeof(msg), "%d dimensions (at most %d supported)", nd, TFAB_GGUF_MAX_DIMS);
        return bad_tensor(st, tn, msg);
    }
    t->n_dims      = (uint32_t)nd;
    uint64_t count = 1;
    for (int d = 0; d < TFAB_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (int d = 0; d < nd; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        /* doubles hold integers exactly below 2^53; larger cannot be a real tensor dimension */
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
            v->valuedouble != (double)(uint64_t)v->valuedouble)
            return bad_tensor(st, tn, "shape holds something other than a non-negative integer");
        t->ne[nd - 1 - d] = (uint64_t)v->valuedouble;
        if (__builtin_mul_overflow(count, t->ne[nd - 1 - d], &count))
            return bad_tensor(st, tn, "shape overflows");
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(count, (uint64_t)bytes, &nbytes))
        return bad_tensor(st, tn, "byte size overflows");
    if (cJSON_GetArraySize(of) != 2)
        return bad_tensor(st, tn, "data_offsets is not [begin, end]");
    uint64_t off[2];
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(of, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 9007199254740992.0 ||
            v->valuedouble != (double)(uint64_t)v->valuedouble)
            return bad_tensor(st, tn,
                              "data_offsets holds something other than a non-negative "
                              "integer");
        off[i] = (uint64_t)v->valuedouble;
    }
    if (off[1] < off[0] || off[1] > data_size) {
        snprintf(msg, sizeof(msg), "data [%llu..%llu) beyond end of data (%llu bytes)",
                 (unsigned long long)off[0], (unsigned long long)off[1],
                 (unsigned long long)data_size);
        return bad_tensor(st, tn, msg);
    }
    if (off[1] - off[0] != nbytes) {
        snprintf(msg, sizeof(msg), "%s shape needs %llu bytes but data_offsets span %llu", t->dtype,
                 (unsigned long long)nbytes, (unsigned long long)(off[1] - off[0]));
        return bad_tensor(st, tn, msg);
    }
    t->size = nbytes;
    t->data = st->base + st->size - data_size + off[0];
    t->name = strdup(tn);
    if (t->name == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory", st->name);
        return TFAB_ERR_NOMEM;
    }
    return TFAB_OK;
}

static tfab_status_t parse(tfab_st_t *st)
{
    if (st->size < 8) {
        TFAB_ERROR(MOD, "%s: truncated: %llu bytes, shorter than the 8-byte header length",
                   st->name, (unsigned long long)st->size);
        return TFAB_ERR_INVALID;
    }
    uint64_t hlen;
    memcpy(&hlen, st->base, 8);
    if (hlen > st->size - 8 || hlen > MAX_HEADER) {
        TFAB_ERROR(MOD, "%s: header of %llu bytes beyond end of file (size %llu)", st->name,
                   (unsigned long long)hlen, (unsigned long long)st->size);
        return TFAB_ERR_INVALID;
    }
    const char *end  = NULL;
    cJSON      *root = cJSON_ParseWithLengthOpts((const char *)st->base + 8, hlen, &end, 0);
    if (root == NULL || !cJSON_IsObject(root)) {
        size_t at = end ? (size_t)(end - (const char *)st->base) : 8;
        TFAB_ERROR(MOD, "%s: header is not a JSON object (error near offset %zu)", st->name, at);
        cJSON_Delete(root);
        return TFAB_ERR_INVALID;
    }
    uint64_t      data_size = st->size - 8 - hlen;
    tfab_status_t rc        = TFAB_OK;
    size_t        n         = (size_t)cJSON_GetArraySize(root);
    st->tensors             = calloc(n ? n : 1, sizeof(*st->tensors));
    if (st->tensors == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory for %zu tensors", st->name, n);
        rc = TFAB_ERR_NOMEM;
        goto out;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0)
            continue;
        for (size_t i = 0; i < st->n; i++)
            if (strcmp(st->tensors[i].name, e->string) == 0) {
                rc = bad_tensor(st, e->string, "appears twice");
                goto out;
            }
        if ((rc = parse_entry(st, e, data_size, &st->tensors[st->n])) != TFAB_OK)
            goto out;
        st->n++;
    }
out:
    cJSON_Delete(root);
    return rc;
}

tfab_status_t tfab_st_open_buffer(const void *data, size_t size, const char *name, tfab_st_t **st_p)
{
    static const uint8_t empty[1];
    tfab_st_t           *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return TFAB_ERR_NOMEM;
    st->base         = data ? data : empty;
    st->size         = size;
    st->name         = strdup(name ? name : "(buffer)");
    tfab_status_t rc = st->name ? parse(st) : TFAB_ERR_NOMEM;
    if (rc != TFAB_OK) {
        free_index(st);
        free(st);
        return rc;
    }
    *st_p = st;
    return TFAB_OK;
}

tfab_status_t tfab_st_open(const char *path, tfab_st_t **st_p)
{
    tfab_status_t rc;
    int           fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        TFAB_ERROR(MOD, "%s: cannot open: %s", path, strerror(errno));
        return TFAB_ERR_IO;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size == 0) {
        TFAB_ERROR(MOD, "%s: not a regular non-empty file", path);
        rc = TFAB_ERR_IO;
        goto err_close;
    }
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        TFAB_ERROR(MOD, "%s: mmap failed: %s", path, strerror(errno));
        rc = TFAB_ERR_IO;
        goto err_close;
    }
    tfab_st_t *st;
    if ((rc = tfab_st_open_buffer(m, (size_t)sb.st_size, path, &st)) != TFAB_OK)
        goto err_unmap;
    st->mapped = 1;
    close(fd);
    *st_p = st;
    return TFAB_OK;

err_unmap:
    munmap(m, (size_t)sb.st_size);
err_close:
    close(fd);
    return rc;
}

void tfab_st_close(tfab_st_t *st)
{
    if (st == NULL)
        return;
    if (st->mapped)
        munmap((void *)st->base, st->size);
    free_index(st);
    free(st);
}

const char *tfab_st_name(const tfab_st_t *st)
{
    return st->name;
}
size_t tfab_st_n_tensors(const tfab_st_t *st)
{
    return st->n;
}

const tfab_st_tensor_t *tfab_st_tensor(const tfab_st_t *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

const tfab_st_tensor_t *tfab_st_find(const tfab_st_t *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->tensors[i].name, name) == 0)
            return &st->tensors[i];
    return NULL;
}
