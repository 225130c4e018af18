/* gguf.c - GGUF v2/v3 reader: maps the file read-only, validates every field against the file
 * size with overflow-safe arithmetic, and indexes keys and tensors in hash tables. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <tfab/gguf.h>
#include <tfab/log.h>

#define MOD        "gguf"
#define GGUF_MAGIC 0x46554747u /* "GGUF" read little-endian */
#define NAME_SHOW  96          /* longest key or tensor name quoted whole in a message */

typedef struct gguf_kv {
    char    *key;       /* NUL-terminated copy */
    uint32_t type;      /* tfab_gguf_type_t */
    uint64_t val;       /* file offset of the value (for arrays: of the first element) */
    uint32_t elem_type; /* arrays: element type */
    uint64_t n;         /* arrays: element count; strings: length */
    uint64_t str_first; /* string arrays: index of element 0 in str_offs */
} gguf_kv_t;

struct tfab_gguf {
    char               *name;
    const uint8_t      *base;
    uint64_t            size;
    int                 mapped;
    uint32_t            version;
    uint64_t            alignment;
    uint64_t            data_off;
    uint64_t            n_kv;
    gguf_kv_t          *kvs; /* [n_kv] */
    uint64_t            n_tensors;
    tfab_gguf_tensor_t *tensors;  /* [n_tensors] */
    uint64_t           *str_offs; /* file offsets of each string-array element (its length) */
    uint64_t            n_str, cap_str;
    uint64_t           *kv_hash; /* open addressing, index + 1, 0 = empty; [hash_mask + 1] */
    uint64_t           *t_hash;
    uint64_t            kv_mask, t_mask;
};

typedef struct reader {
    tfab_gguf_t *g;
    uint64_t     off;
} reader_t;

static tfab_status_t bad(const tfab_gguf_t *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static tfab_status_t bad(const tfab_gguf_t *g, const char *fmt, ...)
{
    char    msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    TFAB_ERROR(MOD, "%s: %s", g->name, msg);
    return TFAB_ERR_INVALID;
}

static int fits(const reader_t *r, uint64_t n)
{
    return r->off <= r->g->size && n <= r->g->size - r->off;
}

static uint64_t ld_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint32_t ld_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Read a length-prefixed string at r->off: on success *off_p is its first byte, *len_p its
 * length. what names the thing for the message ("key 3", "tensor 5 name"). */
static tfab_status_t read_str(reader_t *r, const char *what, uint64_t *off_p, uint64_t *len_p)
{
    if (!fits(r, 8))
        return bad(r->g, "%s: string length at offset %llu beyond end of file (size %llu)", what,
                   (unsigned long long)r->off, (unsigned long long)r->g->size);
    uint64_t len = ld_u64(r->g->base + r->off);
    r->off += 8;
    if (!fits(r, len))
        return bad(r->g, "%s: string of %llu bytes at offset %llu beyond end of file (size %llu)",
                   what, (unsigned long long)len, (unsigned long long)r->off,
                   (unsigned long long)r->g->size);
    *off_p = r->off;
    *len_p = len;
    r->off += len;
    return TFAB_OK;
}

/* A NUL-terminated copy of a key or tensor name; embedded NULs are rejected. */
static tfab_status_t copy_name(reader_t *r, const char *what, uint64_t off, uint64_t len,
                               char **name_p)
{
    const char *s = (const char *)r->g->base + off;
    if (memchr(s, '\0', len) != NULL)
        return bad(r->g, "%s at offset %llu contains a NUL byte", what, (unsigned long long)off);
    if (len == 0)
        return bad(r->g, "%s at offset %llu is empty", what, (unsigned long long)off);
    char *c = malloc(len + 1);
    if (c == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory for a name of %llu bytes", r->g->name,
                   (unsigned long long)len);
        return TFAB_ERR_NOMEM;
    }
    memcpy(c, s, len);
    c[len]  = '\0';
    *name_p = c;
    return TFAB_OK;
}

static uint32_t scalar_size(uint32_t type)
{
    switch (type) {
    case TFAB_GGUF_U8:
    case TFAB_GGUF_I8:
    case TFAB_GGUF_BOOL:
        return 1;
    case TFAB_GGUF_U16:
    case TFAB_GGUF_I16:
        return 2;
    case TFAB_GGUF_U32:
    case TFAB_GGUF_I32:
    case TFAB_GGUF_F32:
        return 4;
    case TFAB_GGUF_U64:
    case TFAB_GGUF_I64:
    case TFAB_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

static tfab_status_t push_str_off(tfab_gguf_t *g, uint64_t off)
{
    if (g->n_str == g->cap_str) {
        uint64_t  cap = g->cap_str ? 2 * g->cap_str : 256;
        uint64_t *p   = realloc(g->str_offs, cap * sizeof(*p));
        if (p == NULL) {
            TFAB_ERROR(MOD, "%s: out of memory indexing string arrays", g->name);
            return TFAB_ERR_NOMEM;
        }
        g->str_offs = p;
        g->cap_str  = cap;
    }
    g->str_offs[g->n_str++] = off;
    return TFAB_OK;
}

static tfab_status_t read_kv(reader_t *r, uint64_t i)
{
    tfab_gguf_t  *g  = r->g;
    gguf_kv_t    *kv = &g->kvs[i];
    char          what[64];
    uint64_t      off, len;
    tfab_status_t st;
    snprintf(what, sizeof(what), "key %llu", (unsigned long long)i);
    if ((st = read_str(r, what, &off, &len)) != TFAB_OK)
        return st;
    if ((st = copy_name(r, what, off, len, &kv->key)) != TFAB_OK)
        return st;
    if (!fits(r, 4))
        return bad(g, "key '%.*s': value type at offset %llu beyond end of file (size %llu)",
                   NAME_SHOW, kv->key, (unsigned long long)r->off, (unsigned long long)g->size);
    kv->type = ld_u32(g->base + r->off);
    r->off += 4;
    if (kv->type == TFAB_GGUF_STRING) {
        if ((st = read_str(r, kv->key, &kv->val, &kv->n)) != TFAB_OK)
            return st;
        return TFAB_OK;
    }
    if (kv->type == TFAB_GGUF_ARRAY) {
        if (!fits(r, 12))
            return bad(g, "key '%.*s': array header at offset %llu beyond end of file (size %llu)",
                       NAME_SHOW, kv->key, (unsigned long long)r->off, (unsigned long long)g->size);
        kv->elem_type = ld_u32(g->base + r->off);
        kv->n         = ld_u64(g->base + r->off + 4);
        r->off += 12;
        kv->val = r->off;
        if (kv->elem_type == TFAB_GGUF_STRING) {
            kv->str_first = g->n_str;
            for (uint64_t e = 0; e < kv->n; e++) {
                char ewhat[NAME_SHOW + 48];
                snprintf(ewhat, sizeof(ewhat), "key '%.*s' element %llu", NAME_SHOW, kv->key,
                         (unsigned long long)e);
                if (!fits(r, 8))
                    return bad(g,
                               "key '%.*s': array of %llu strings: element %llu at offset %llu "
                               "beyond end of file (size %llu)",
                               NAME_SHOW, kv->key, (unsigned long long)kv->n, (unsigned long long)e,
                               (unsigned long long)r->off, (unsigned long long)g->size);
                if ((st = push_str_off(g, r->off)) != TFAB_OK)
                    return st;
                uint64_t soff, slen;
                if ((st = read_str(r, ewhat, &soff, &slen)) != TFAB_OK)
                    return st;
            }
            return TFAB_OK;
        }
        uint32_t es = scalar_size(kv->elem_type);
        if (es == 0)
            return bad(g, "key '%.*s': array element type %u is not supported%s", NAME_SHOW,
                       kv->key, kv->elem_type,
                       kv->elem_type == TFAB_GGUF_ARRAY ? " (nested array)" : "");
        if (kv->n > (g->size - r->off) / es)
            return bad(
                g, "key '%.*s': array of %llu %s at offset %llu beyond end of file (size %llu)",
                NAME_SHOW, kv->key, (unsigned long long)kv->n, tfab_gguf_type_name(kv->elem_type),
                (unsigned long long)r->off, (unsigned long long)g->size);
        r->off += kv->n * es;
        return TFAB_OK;
    }
    uint32_t sz = scalar_size(kv->type);
    if (sz == 0)
        return bad(g, "key '%.*s': unknown value type %u", NAME_SHOW, kv->key, kv->type);
    if (!fits(r, sz))
        return bad(g, "key '%.*s': %s value at offset %llu beyond end of file (size %llu)",
                   NAME_SHOW, kv->key, tfab_gguf_type_name(kv->type), (unsigned long long)r->off,
                   (unsigned long long)g->size);
    kv->val = r->off;
    if (kv->type == TFAB_GGUF_BOOL && g->base[r->off] > 1)
        return bad(g, "key '%.*s': bool value %u is neither 0 nor 1", NAME_SHOW, kv->key,
                   g->base[r->off]);
    r->off += sz;
    return TFAB_OK;
}

static tfab_status_t read_tensor_info(reader_t *r, uint64_t i)
{
    tfab_gguf_t        *g = r->g;
    tfab_gguf_tensor_t *t = &g->tensors[i];
    char                what[64];
    uint64_t            off, len;
    tfab_status_t       st;
    snprintf(what, sizeof(what), "tensor %llu name", (unsigned long long)i);
    if ((st = read_str(r, what, &off, &len)) != TFAB_OK)
        return st;
    char *name;
    if ((st = copy_name(r, what, off, len, &name)) != TFAB_OK)
        return st;
    t->name = name;
    if (!fits(r, 4))
        return bad(g, "tensor '%.*s': n_dims at offset %llu beyond end of file (size %llu)",
                   NAME_SHOW, name, (unsigned long long)r->off, (unsigned long long)g->size);
    t->n_dims = ld_u32(g->base + r->off);
    r->off += 4;
    if (t->n_dims == 0 || t->n_dims > TFAB_GGUF_MAX_DIMS)
        return bad(g, "tensor '%.*s': n_dims %u not in 1..%d", NAME_SHOW, name, t->n_dims,
                   TFAB_GGUF_MAX_DIMS);
    if (!fits(r, 8ull * t->n_dims + 12))
        return bad(g, "tensor '%.*s': dims at offset %llu beyond end of file (size %llu)",
                   NAME_SHOW, name, (unsigned long long)r->off, (unsigned long long)g->size);
    uint64_t n = 1;
    for (uint32_t d = 0; d < TFAB_GGUF_MAX_DIMS; d++) {
        t->ne[d] = d < t->n_dims ? ld_u64(g->base + r->off + 8 * d) : 1;
        if (t->ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(n, t->ne[d], &n) ||
            n > (uint64_t)INT64_MAX)
            return bad(g, "tensor '%.*s': dims overflow (ne[%u] = %llu)", NAME_SHOW, name, d,
                       (unsigned long long)t->ne[d]);
    }
    r->off += 8ull * t->n_dims;
    uint32_t type = ld_u32(g->base + r->off);
    t->offset     = ld_u64(g->base + r->off + 4);
    r->off += 12;
    if (tfab_dtype_block_size(type) == 0)
        return bad(g, "tensor '%.*s': unknown type %u", NAME_SHOW, name, type);
    t->type = (tfab_dtype_t)type;
    if (t->ne[0] % tfab_dtype_block_size(type) != 0)
        return bad(g, "tensor '%.*s': ne[0] = %llu is not a multiple of the %s block size %u",
                   NAME_SHOW, name, (unsigned long long)t->ne[0], tfab_dtype_name(type),
                   tfab_dtype_block_size(type));
    if (tfab_dtype_bytes(type, n, &t->size) != TFAB_OK)
        return bad(g, "tensor '%.*s': byte size of %llu %s elements overflows", NAME_SHOW, name,
                   (unsigned long long)n, tfab_dtype_name(type));
    if (t->offset % g->alignment != 0)
        return bad(g, "tensor '%.*s': data offset %llu is not a multiple of the alignment %llu",
                   NAME_SHOW, name, (unsigned long long)t->offset,
                   (unsigned long long)g->alignment);
    return TFAB_OK;
}

static tfab_status_t build_hash(tfab_gguf_t *g, uint64_t n, uint64_t **table_p, uint64_t *mask_p,
                                int tensors)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint64_t *t = calloc(cap, sizeof(*t));
    if (t == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory for the index of %llu entries", g->name,
                   (unsigned long long)n);
        return TFAB_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        const char *s = tensors ? g->tensors[i].name : g->kvs[i].key;
        uint64_t    h = hash_str(s) & (cap - 1);
        for (; t[h] != 0; h = (h + 1) & (cap - 1)) {
            const char *o = tensors ? g->tensors[t[h] - 1].name : g->kvs[t[h] - 1].key;
            if (strcmp(o, s) == 0) {
                free(t);
                return bad(g, "duplicate %s '%.*s'", tensors ? "tensor" : "key", NAME_SHOW, s);
            }
        }
        t[h] = i + 1;
    }
    *table_p = t;
    *mask_p  = cap - 1;
    return TFAB_OK;
}

static int64_t hash_find(const tfab_gguf_t *g, const char *s, int tensors)
{
    const uint64_t *t    = tensors ? g->t_hash : g->kv_hash;
    uint64_t        mask = tensors ? g->t_mask : g->kv_mask;
    if (t == NULL || s == NULL)
        return -1;
    for (uint64_t h = hash_str(s) & mask; t[h] != 0; h = (h + 1) & mask) {
        const char *o = tensors ? g->tensors[t[h] - 1].name : g->kvs[t[h] - 1].key;
        if (strcmp(o, s) == 0)
            return (int64_t)(t[h] - 1);
    }
    return -1;
}

static tfab_status_t parse(tfab_gguf_t *g)
{
    reader_t      r = {g, 0};
    tfab_status_t st;
    if (g->size < 24) {
        if (g->size >= 4 && ld_u32(g->base) != GGUF_MAGIC)
            return bad(g, "not a GGUF file (bad magic)");
        return bad(g, "truncated: %llu bytes is shorter than the 24-byte GGUF header",
                   (unsigned long long)g->size);
    }
    if (ld_u32(g->base) != GGUF_MAGIC)
        return bad(g, "not a GGUF file (bad magic)");
    g->version = ld_u32(g->base + 4);
    if (g->version == 1 || (g->version & 0xffff) == 0) {
        TFAB_ERROR(MOD, "%s: GGUF version %u is not supported (%s)", g->name, g->version,
                   g->version == 1 ? "version 1; convert it again with a current llama.cpp"
                                   : "big-endian file");
        return TFAB_ERR_UNSUPPORTED;
    }
    if (g->version != 2 && g->version != 3) {
        TFAB_ERROR(MOD, "%s: GGUF version %u is not supported (2 and 3 are)", g->name, g->version);
        return TFAB_ERR_UNSUPPORTED;
    }
    g->n_tensors = ld_u64(g->base + 8);
    g->n_kv      = ld_u64(g->base + 16);
    r.off        = 24;
    /* bound the allocations by what the file can hold: a key-value pair takes at least 13 bytes
     * (length, one byte of key, type), a tensor info at least 33 */
    if (g->n_kv > (g->size - r.off) / 13)
        return bad(g, "%llu key-value pairs cannot fit in %llu bytes", (unsigned long long)g->n_kv,
                   (unsigned long long)g->size);
    if (g->n_tensors > (g->size - r.off) / 33)
        return bad(g, "%llu tensors cannot fit in %llu bytes", (unsigned long long)g->n_tensors,
                   (unsigned long long)g->size);
    g->kvs     = calloc(g->n_kv ? g->n_kv : 1, sizeof(*g->kvs));
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof(*g->tensors));
    if (g->kvs == NULL || g->tensors == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory for the index", g->name);
        return TFAB_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((st = read_kv(&r, i)) != TFAB_OK)
            return st;
    if ((st = build_hash(g, g->n_kv, &g->kv_hash, &g->kv_mask, 0)) != TFAB_OK)
        return st;

    g->alignment = TFAB_GGUF_DEFAULT_ALIGNMENT;
    int64_t ai   = hash_find(g, "general.alignment", 0);
    if (ai >= 0) {
        const gguf_kv_t *kv = &g->kvs[ai];
        if (kv->type != TFAB_GGUF_U32)
            return bad(g, "key 'general.alignment' has type %s, not u32",
                       tfab_gguf_type_name(kv->type));
        uint32_t a = ld_u32(g->base + kv->val);
        if (a == 0 || (a & (a - 1)) != 0)
            return bad(g, "key 'general.alignment' = %u is not a power of two", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((st = read_tensor_info(&r, i)) != TFAB_OK)
            return st;
    if ((st = build_hash(g, g->n_tensors, &g->t_hash, &g->t_mask, 1)) != TFAB_OK)
        return st;

    /* the data section starts at the next multiple of the alignment */
    uint64_t pad = (g->alignment - r.off % g->alignment) % g->alignment;
    g->data_off  = r.off + pad;
    if (g->n_tensors > 0 && g->data_off > g->size)
        return bad(g, "data section at offset %llu beyond end of file (size %llu)",
                   (unsigned long long)g->data_off, (unsigned long long)g->size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        tfab_gguf_tensor_t *t = &g->tensors[i];
        uint64_t            start, end;
        if (__builtin_add_overflow(g->data_off, t->offset, &start) ||
            __builtin_add_overflow(start, t->size, &end))
            return bad(g,
                       "tensor '%.*s': data offset %llu + %llu + size %llu overflows (file size "
                       "%llu)",
                       NAME_SHOW, t->name, (unsigned long long)t->offset,
                       (unsigned long long)g->data_off, (unsigned long long)t->size,
                       (unsigned long long)g->size);
        if (end > g->size)
            return bad(g, "tensor '%.*s': data [%llu..%llu) beyond end of file (size %llu)",
                       NAME_SHOW, t->name, (unsigned long long)(g->data_off + t->offset),
                       (unsigned long long)(g->data_off + t->offset + t->size),
                       (unsigned long long)g->size);
        t->data = g->base + start;
    }
    return TFAB_OK;
}

static void free_index(tfab_gguf_t *g)
{
    if (g->kvs)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kvs[i].key);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free((char *)g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->str_offs);
    free(g->kv_hash);
    free(g->t_hash);
    free(g->name);
}

static tfab_status_t open_common(tfab_gguf_t *g, const char *name, tfab_gguf_t **gguf_p)
{
    tfab_status_t st;
    g->name = strdup(name ? name : "(buffer)");
    if (g->name == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory", name ? name : "(buffer)");
        st = TFAB_ERR_NOMEM;
        goto err_free_index;
    }
    if ((st = parse(g)) != TFAB_OK)
        goto err_free_index;
    *gguf_p = g;
    return TFAB_OK;

err_free_index:
    free_index(g);
    return st;
}

tfab_status_t tfab_gguf_open_buffer(const void *data, size_t size, const char *name,
                                    tfab_gguf_t **gguf_p)
{
    if (data == NULL && size != 0)
        return TFAB_ERR_INVALID;
    tfab_gguf_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory", name ? name : "(buffer)");
        return TFAB_ERR_NOMEM;
    }
    static const uint8_t empty[1];
    g->base          = data ? data : empty;
    g->size          = size;
    tfab_status_t st = open_common(g, name, gguf_p);
    if (st != TFAB_OK)
        free(g);
    return st;
}

tfab_status_t tfab_gguf_open(const char *path, tfab_gguf_t **gguf_p)
{
    tfab_status_t st;
    if (path == NULL)
        return TFAB_ERR_INVALID;
    tfab_gguf_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        TFAB_ERROR(MOD, "%s: out of memory", path);
        return TFAB_ERR_NOMEM;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        TFAB_ERROR(MOD, "%s: cannot open: %s", path, strerror(errno));
        st = TFAB_ERR_IO;
        goto err_free;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        TFAB_ERROR(MOD, "%s: not a regular file", path);
        st = TFAB_ERR_IO;
        goto err_close;
    }
    g->size = (uint64_t)sb.st_size;
    if (g->size == 0) {
        TFAB_ERROR(MOD, "%s: empty file (0 bytes), not a GGUF model", path);
        st = TFAB_ERR_INVALID;
        goto err_close;
    }
    void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        TFAB_ERROR(MOD, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)g->size,
                   strerror(errno));
        st = TFAB_ERR_IO;
        goto err_close;
    }
    g->base   = m;
    g->mapped = 1;
    if ((st = open_common(g, path, gguf_p)) != TFAB_OK)
        goto err_unmap;
    close(fd);
    return TFAB_OK;

err_unmap:
    munmap(m, g->size);
err_close:
    close(fd);
err_free:
    free(g);
    return st;
}

void tfab_gguf_close(tfab_gguf_t *g)
{
    if (g == NULL)
        return;
    if (g->mapped)
        munmap((void *)g->base, g->size);
    free_index(g);
    free(g);
}

const char *tfab_gguf_name(const tfab_gguf_t *g)
{
    return g->name;
}
uint32_t tfab_gguf_version(const tfab_gguf_t *g)
{
    return g->version;
}
uint64_t tfab_gguf_alignment(const tfab_gguf_t *g)
{
    return g->alignment;
}
uint64_t tfab_gguf_file_size(const tfab_gguf_t *g)
{
    return g->size;
}
uint64_t tfab_gguf_data_offset(const tfab_gguf_t *g)
{
    return g->data_off;
}
uint64_t tfab_gguf_n_kv(const tfab_gguf_t *g)
{
    return g->n_kv;
}
uint64_t tfab_gguf_n_tensors(const tfab_gguf_t *g)
{
    return g->n_tensors;
}

const char *tfab_gguf_kv_key(const tfab_gguf_t *g, uint64_t i)
{
    return i < g->n_kv ? g->kvs[i].key : NULL;
}

tfab_gguf_type_t tfab_gguf_kv_type(const tfab_gguf_t *g, uint64_t i)
{
    return i < g->n_kv ? (tfab_gguf_type_t)g->kvs[i].type : TFAB_GGUF_TYPE_COUNT;
}

int64_t tfab_gguf_find_key(const tfab_gguf_t *g, const char *key)
{
    return hash_find(g, key, 0);
}

const tfab_gguf_tensor_t *tfab_gguf_tensor(const tfab_gguf_t *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const tfab_gguf_tensor_t *tfab_gguf_find_tensor(const tfab_gguf_t *g, const char *name)
{
    int64_t i = hash_find(g, name, 1);
    return i < 0 ? NULL : &g->tensors[i];
}

const char *tfab_gguf_type_name(uint32_t type)
{
    static const char *names[TFAB_GGUF_TYPE_COUNT] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                                      "i32", "f32", "bool", "string", "array",
                                                      "u64", "i64", "f64"};
    return type < TFAB_GGUF_TYPE_COUNT ? names[type] : "?";
}

/* ---- typed getters ------------------------------------------------------------------------ */

static const gguf_kv_t *lookup(const tfab_gguf_t *g, const char *key)
{
    int64_t i = hash_find(g, key, 0);
    return i < 0 ? NULL : &g->kvs[i];
}

static tfab_status_t wrong_type(const tfab_gguf_t *g, const gguf_kv_t *kv, const char *want)
{
    TFAB_ERROR(MOD, "%s: key '%.*s' has type %s, expected %s", g->name, NAME_SHOW, kv->key,
               tfab_gguf_type_name(kv->type), want);
    return TFAB_ERR_INVALID;
}

/* Read an integer kv as a signed or unsigned 64-bit value; *neg says which one holds. */
static tfab_status_t get_int(const tfab_gguf_t *g, const char *key, const char *want, uint64_t *u,
                             int64_t *s, int *is_signed)
{
    const gguf_kv_t *kv = lookup(g, key);
    if (kv == NULL)
        return TFAB_ERR_NOT_FOUND;
    const uint8_t *p = g->base + kv->val;
    *is_signed       = 0;
    switch (kv->type) {
    case TFAB_GGUF_U8:
        *u = p[0];
        return TFAB_OK;
    case TFAB_GGUF_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *u = v;
        return TFAB_OK;
    }
    case TFAB_GGUF_U32:
        *u = ld_u32(p);
        return TFAB_OK;
    case TFAB_GGUF_U64:
        *u = ld_u64(p);
        return TFAB_OK;
    case TFAB_GGUF_I8:
        *s = (int8_t)p[0];
        break;
    case TFAB_GGUF_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        *s = v;
        break;
    }
    case TFAB_GGUF_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        *s = v;
        break;
    }
    case TFAB_GGUF_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        *s = v;
        break;
    }
    default:
        return wrong_type(g, kv, want);
    }
    *is_signed = 1;
    return TFAB_OK;
}

static tfab_status_t out_of_range(const tfab_gguf_t *g, const char *key, const char *want,
                                  uint64_t u, int64_t s, int is_signed)
{
    if (is_signed)
        TFAB_ERROR(MOD, "%s: key '%.*s' = %lld does not fit %s", g->name, NAME_SHOW, key,
                   (long long)s, want);
    else
        TFAB_ERROR(MOD, "%s: key '%.*s' = %llu does not fit %s", g->name, NAME_SHOW, key,
                   (unsigned long long)u, want);
    return TFAB_ERR_RANGE;
}

#define INT_GETTER(fn, ctype, want, lo, hi)                                                        \
    tfab_status_t fn(const tfab_gguf_t *g, const char *key, ctype *v_p)                            \
    {                                                                                              \
        uint64_t      u = 0;                                                                       \
        int64_t       s = 0;                                                                       \
        int           sg;                                                                          \
        tfab_status_t st = get_int(g, key, want, &u, &s, &sg);                                     \
        if (st != TFAB_OK)                                                                         \
            return st;                                                                             \
        if (sg ? (s < (int64_t)(lo) || (s > 0 && (uint64_t)s > (uint64_t)(hi)))                    \
               : u > (uint64_t)(hi))                                                               \
            return out_of_range(g, key, want, u, s, sg);                                           \
        *v_p = sg ? (ctype)s : (ctype)u;                                                           \
        return TFAB_OK;                                                                            \
    }

INT_GETTER(tfab_gguf_get_u32, uint32_t, "u32", 0, UINT32_MAX)
INT_GETTER(tfab_gguf_get_i32, int32_t, "i32", INT32_MIN, INT32_MAX)
INT_GETTER(tfab_gguf_get_u64, uint64_t, "u64", 0, UINT64_MAX)
INT_GETTER(tfab_gguf_get_i64, int64_t, "i64", INT64_MIN, INT64_MAX)

tfab_status_t tfab_gguf_get_f32(const tfab_gguf_t *g, const char *key, float *v_p)
{
    const gguf_kv_t *kv = lookup(g, key);
    if (kv == NULL)
        return TFAB_ERR_NOT_FOUND;
    if (kv->type == TFAB_GGUF_F32) {
        memcpy(v_p, g->base + kv->val, 4);
        return TFAB_OK;
    }
    if (kv->type == TFAB_GGUF_F64) {
        double d;
        memcpy(&d, g->base + kv->val, 8);
        *v_p = (float)d;
        return TFAB_OK;
    }
    return wrong_type(g, kv, "f32");
}

tfab_status_t tfab_gguf_get_bool(const tfab_gguf_t *g, const char *key, int *v_p)
{
    const gguf_kv_t *kv = lookup(g, key);
    if (kv == NULL)
        return TFAB_ERR_NOT_FOUND;
    if (kv->type != TFAB_GGUF_BOOL)
        return wrong_type(g, kv, "bool");
    *v_p = g->base[kv->val] != 0;
    return TFAB_OK;
}

tfab_status_t tfab_gguf_get_str(const tfab_gguf_t *g, const char *key, const char **s_p,
                                size_t *len_p)
{
    const gguf_kv_t *kv = lookup(g, key);
    if (kv == NULL)
        return TFAB_ERR_NOT_FOUND;
    if (kv->type != TFAB_GGUF_STRING)
        return wrong_type(g, kv, "string");
    *s_p   = (const char *)g->base + kv->val;
    *len_p = (size_t)kv->n;
    return TFAB_OK;
}

tfab_status_t tfab_gguf_get_arr(const tfab_gguf_t *g, const char *key, tfab_gguf_arr_t *arr_p)
{
    int64_t i = hash_find(g, key, 0);
    if (i < 0)
        return TFAB_ERR_NOT_FOUND;
    const gguf_kv_t *kv = &g->kvs[i];
    if (kv->type != TFAB_GGUF_ARRAY)
        return wrong_type(g, kv, "array");
    arr_p->type = (tfab_gguf_type_t)kv->elem_type;
    arr_p->n    = kv->n;
    arr_p->data = kv->elem_type == TFAB_GGUF_STRING ? NULL : g->base + kv->val;
    arr_p->kv   = (uint64_t)i;
    return TFAB_OK;
}

tfab_status_t tfab_gguf_arr_str(const tfab_gguf_t *g, const tfab_gguf_arr_t *arr, uint64_t i,
                                const char **s_p, size_t *len_p)
{
    if (arr == NULL || arr->kv >= g->n_kv || arr->type != TFAB_GGUF_STRING)
        return TFAB_ERR_INVALID;
    const gguf_kv_t *kv = &g->kvs[arr->kv];
    if (kv->type != TFAB_GGUF_ARRAY || kv->elem_type != TFAB_GGUF_STRING)
        return TFAB_ERR_INVALID;
    if (i >= kv->n)
        return TFAB_ERR_RANGE;
    uint64_t off = g->str_offs[kv->str_first + i];
    *len_p       = (size_t)ld_u64(g->base + off);
    *s_p         = (const char *)g->base + off + 8;
    return TFAB_OK;
}
