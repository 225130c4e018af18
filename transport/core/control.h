/* control.h - framing and validation of protobuf-c control messages (transport-internal). */
#ifndef TFAB_CONTROL_H
#define TFAB_CONTROL_H
#include <stddef.h>
#include <stdint.h>
#include <tfab/status.h>
#include "tfab.pb-c.h"

#define CTL_MAX_FRAME  4096u
#define CTL_NONCE_LEN  32u
#define CTL_PROTO_MAJOR 2u /* 2: cumulative credit counts, sequence numbers and ACKs */
#define CTL_PROTO_MINOR 0u
#define CTL_MAX_LINKS   8u  /* ranked links per peer */
#define CTL_SESSION_LEN 16u

/* Decode and validate one Control message body (without the length prefix): known oneof
 * case, nonce/proof sizes, bounded strings and lists. On error writes a reason naming the
 * field to err and returns TFAB_ERR_PROTO. Free *msg_p with tfab__control__free_unpacked. */
tfab_status_t tfab_ctl_decode(const uint8_t *buf, size_t len, Tfab__Control **msg_p, char *err,
                              size_t err_len);

/* Blocking framed I/O on a socket, each bounded by the absolute deadline (CLOCK_MONOTONIC
 * ns). recv validates with tfab_ctl_decode. */
tfab_status_t tfab_ctl_send(int fd, const Tfab__Control *msg, uint64_t deadline_ns);
tfab_status_t tfab_ctl_recv(int fd, uint64_t deadline_ns, Tfab__Control **msg_p, char *err,
                            size_t err_len);
#endif
