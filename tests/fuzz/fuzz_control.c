/* fuzz_control.c - libFuzzer target for the control-message decoder (frames from peers
 * before authentication): no crash, no leak, and an accepted message without unknown fields
 * re-encodes and decodes to the same kind. (Unknown fields are tolerated for forward
 * compatibility and never forwarded; protobuf-c re-emits malformed ones verbatim, so they are
 * left out of the round trip.) */
#include <stdint.h>
#include <stdlib.h>
#include "core/control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Tfab__Control *m;
    char           err[256];
    if (tfab_ctl_decode(data, size, &m, err, sizeof(err)) != TFAB_OK)
        return 0;
    const ProtobufCMessage *sub = m->hello ? &m->hello->base : NULL; /* any oneof member */
    if (m->base.n_unknown_fields || (sub && sub->n_unknown_fields)) {
        tfab__control__free_unpacked(m, NULL);
        return 0;
    }
    uint8_t buf[8192];
    size_t  n = tfab__control__get_packed_size(m);
    if (n > sizeof(buf))
        abort();
    tfab__control__pack(m, buf);
    Tfab__Control *again;
    if (tfab_ctl_decode(buf, n, &again, err, sizeof(err)) != TFAB_OK || again->msg_case != m->msg_case)
        abort();
    tfab__control__free_unpacked(again, NULL);
    tfab__control__free_unpacked(m, NULL);
    return 0;
}
