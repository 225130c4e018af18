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

tfab_status_t tfab_size_parse(const char *s, uint64_t *bytes_p)
{
    static const struct {
        const char *suffix;
        unsigned    shift;
    } units[] = {
        {"", 0},     {"B", 0},     {"k", 10},   {"K", 10},    {"KB", 10},  {"KiB", 10},
        {"m", 20},   {"M", 20},    {"MB", 20},  {"MiB", 20},  {"g", 30},   {"G", 30},
        {"GB", 30},  {"GiB", 30},  {"t", 40},   {"T", 40},    {"TB", 40},  {"TiB", 40},
    };
    uint64_t v;
    if (s == NULL)
        return TFAB_ERR_INVALID;
    int n = parse_digits(s, &v);
    if (n < 0)
        return TFAB_ERR_RANGE;
    if (n == 0)
        return TFAB_ERR_INVALID;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + n, units[i].suffix) == 0)
            return scale(v, (uint64_t)1 << units[i].shift, bytes_p);
    }
    return TFAB_ERR_INVALID;
}

tfab_status_t tfab_duration_parse(const char *s, uint64_t *ns_p)
{
    static const struct {
        const char *suffix;
        uint64_t    ns;
    } units[] = {
        {"ns", 1}, {"us", 1000}, {"ms", 1000000}, {"s", 1000000000ull},
        {"m", 60ull * 1000000000ull}, {"h", 3600ull * 1000000000ull},
    };
    uint64_t v;
    if (s == NULL)
        return TFAB_ERR_INVALID;
    int n = parse_digits(s, &v);
    if (n < 0)
        return TFAB_ERR_RANGE;
    if (n == 0)
        return TFAB_ERR_INVALID;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(s + n, units[i].suffix) == 0)
            return scale(v, units[i].ns, ns_p);
    }
    return TFAB_ERR_INVALID;
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
