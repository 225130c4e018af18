/* units.c - sizes and durations as people write them on command lines and in config files. */
#include <stdio.h>
#include <string.h>
#include <tfab/units.h>

/* Parse the leading decimal digits of s. Returns the number of digits, 0 on none, -1 on
 * overflow. */
static int parse_digits(const char *s, uint64_t *v_p)
{
    uint64_t v = 0;
    int      n = 0;
    for (; s[n] >= '0' && s[n] <= '9'; n++) {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *v_p = v;
    return n;
}

static tfab_status_t scale(uint64_t v, uint64_t mul, uint64_t *out_p)
{
    if (mul != 0 && v > UINT64_MAX / mul)
        return TFAB_ERR_RANGE;
    *out_p = v * mul;
    return TFAB_OK;
}

typedef struct unit {
    const char *suffix;
    uint64_t    scale;
} unit_t;

/* digits followed by exactly one of the table's suffixes, times its scale */
static tfab_status_t parse_with_units(const char *s, const unit_t *units, size_t n_units,
                                      uint64_t *out_p)
{
    uint64_t v;
    if (s == NULL)
        return TFAB_ERR_INVALID;
    int n = parse_digits(s, &v);
    if (n < 0)
        return TFAB_ERR_RANGE;
    if (n == 0)
        return TFAB_ERR_INVALID;
    for (size_t i = 0; i < n_units; i++)
        if (strcmp(s + n, units[i].suffix) == 0)
            return scale(v, units[i].scale, out_p);
    return TFAB_ERR_INVALID;
}

#define KIB (1ull << 10)
#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define TIB (1ull << 40)

tfab_status_t tfab_size_parse(const char *s, uint64_t *bytes_p)
{
    static const unit_t units[] = {
        {"", 1},      {"B", 1},     {"k", KIB},   {"K", KIB},   {"KB", KIB},  {"KiB", KIB},
        {"m", MIB},   {"M", MIB},   {"MB", MIB},  {"MiB", MIB}, {"g", GIB},   {"G", GIB},
        {"GB", GIB},  {"GiB", GIB}, {"t", TIB},   {"T", TIB},   {"TB", TIB},  {"TiB", TIB},
    };
    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), bytes_p);
}

tfab_status_t tfab_duration_parse(const char *s, uint64_t *ns_p)
{
    static const unit_t units[] = {
        {"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000ull},
        {"m", 60ull * 1000000000ull}, {"h", 3600ull * 1000000000ull},
    };
    return parse_with_units(s, units, sizeof(units) / sizeof(units[0]), ns_p);
}

char *tfab_size_format(uint64_t bytes, char *buf, size_t len)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned u = 0;
    while (u < 4 && bytes != 0 && (bytes & 1023) == 0) {
        bytes >>= 10;
        u++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)bytes, names[u]);
    return buf;
}

char *tfab_size_human(uint64_t bytes, char *buf, size_t len)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double   v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u < 6) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, len, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, names[u]);
    return buf;
}
