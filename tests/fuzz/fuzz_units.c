/* fuzz_units.c - libFuzzer target for the size and duration parsers (command-line and config
 * input): no crash, no overflow, and every accepted size prints back to the same value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <tfab/units.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[64];
    if (size >= sizeof(s))
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    uint64_t v = 0, back = 0, ns = 0;
    if (tfab_size_parse(s, &v) == TFAB_OK) {
        char buf[32], human[32];
        if (tfab_size_parse(tfab_size_format(v, buf, sizeof(buf)), &back) != TFAB_OK || back != v)
            abort();
        tfab_size_human(v, human, sizeof(human));
    }
    (void)tfab_duration_parse(s, &ns);
    return 0;
}
