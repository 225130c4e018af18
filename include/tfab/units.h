/* tfab/units.h - parsing and printing of sizes ("1G", "64KiB") and durations ("5s", "250ms"). */
#ifndef TFAB_UNITS_H
#define TFAB_UNITS_H

#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse a byte count: a decimal integer with an optional binary suffix k/K/KiB, m/M/MiB,
 * g/G/GiB, t/T/TiB (powers of 1024; "KB", "MB"... are also read as powers of 1024 and "B"
 * alone means bytes). Whitespace is not allowed. On success writes *bytes_p.
 * Errors: TFAB_ERR_INVALID (syntax), TFAB_ERR_RANGE (overflows uint64_t). */
TFAB_API tfab_status_t tfab_size_parse(const char *s, uint64_t *bytes_p);

/* Parse a duration into nanoseconds: an integer with a required unit ns, us, ms, s, m, h.
 * Errors as for tfab_size_parse. */
TFAB_API tfab_status_t tfab_duration_parse(const char *s, uint64_t *ns_p);

/* Print bytes exactly in the largest binary unit that divides them ("1GiB", "1536KiB",
 * "7B") into buf of len bytes. Returns buf. The output parses back to the same value. */
TFAB_API char *tfab_size_format(uint64_t bytes, char *buf, size_t len);

/* Print bytes for humans, rounded to 3 significant digits ("1.50 GiB"). Returns buf. */
TFAB_API char *tfab_size_human(uint64_t bytes, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
