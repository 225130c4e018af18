/* wire.h - the data-path frame header shared by every backend: eager messages, rendezvous
 * (RTS/CTS/DATA), credit returns and, on endpoints with ranked links, acknowledgements.
 * Little-endian on the wire (x86-64 and arm64 both). */
#ifndef TFAB_WIRE_H
#define TFAB_WIRE_H

#include <stdint.h>

enum wire_op {
    WIRE_EAGER  = 1, /* id = sender's transfer, tag, len, aux = sequence number; payload
                        follows (len <= eager_max) */
    WIRE_RTS    = 2, /* id = sender's transfer, tag, len, aux = sequence number: "I have len
                        bytes for tag" */
    WIRE_CTS    = 3, /* id = sender's transfer, aux = receiver's grant id (low 32 bits) and
                        the grant's remote key (high 32 bits), len = granted bytes,
                        tag = the granted buffer's address (for RDMA writes);
                        flags WIRE_F_REFUSED: the receive was too small, drop it */
    WIRE_DATA   = 4, /* id = receiver's grant, len, aux = the granted address, tag = the
                        grant's remote key. TCP: the payload
                        follows the header. Verbs: the payload was RDMA-written to aux before
                        this header (sent after it on the same RC queue pair), nothing follows */
    WIRE_CREDIT = 5, /* only returns credits (also the heartbeat, and the first frame on a
                        link after a failover, flag WIRE_F_SWITCH) */
    WIRE_ACK    = 6, /* ranked links: id = sender's transfer, aux = its sequence number: the
                        message is wholly in the receiver's memory; the sender may complete */
    WIRE_OP_MAX = 7
};

enum {
    WIRE_F_REFUSED = 1, /* CTS: the receive was too small */
    WIRE_F_RESENT  = 2, /* EAGER/RTS re-issued after a failover: uses no new credit */
    WIRE_F_SWITCH  = 4, /* CREDIT: the sender moved to this link */
};

typedef struct wire_hdr {
    uint8_t  op;
    uint8_t  flags;
    uint16_t credits; /* eager/RTS slots the sender of this frame has freed for its peer, in
                         all (a count modulo 2^16): frames lost with a link lose no credit */
    uint32_t id;
    uint64_t tag;
    uint64_t len;
    uint64_t aux;
} wire_hdr_t;

_Static_assert(sizeof(wire_hdr_t) == 32, "wire header is 32 bytes on the wire");

#endif
