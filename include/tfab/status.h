/* tfab/status.h - the one status enum of libtfab, and the export macro. */
#ifndef TFAB_STATUS_H
#define TFAB_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TFAB_API __attribute__((visibility("default")))
#else
#define TFAB_API
#endif

/* 0 is success, 1 is "in progress" (completion comes later), negatives are errors.
 * errno and verbs errors are converted to these once, where they are detected. */
typedef enum tfab_status {
    TFAB_OK              = 0,
    TFAB_INPROGRESS      = 1,
    TFAB_ERR_INVALID     = -1,  /* bad argument or malformed input */
    TFAB_ERR_NOMEM       = -2,  /* allocation or pinning failed */
    TFAB_ERR_NODEV       = -3,  /* no such device, or none at all */
    TFAB_ERR_IO          = -4,  /* system call or device operation failed */
    TFAB_ERR_TIMEOUT     = -5,  /* deadline passed */
    TFAB_ERR_UNSUPPORTED = -6,  /* not possible on this device or build */
    TFAB_ERR_PROTO       = -7,  /* peer broke the protocol */
    TFAB_ERR_RANGE       = -8,  /* value or access out of bounds */
    TFAB_ERR_PERM        = -9,  /* permission or limit (memlock, CAP_*) */
    TFAB_ERR_CANCELED    = -10, /* canceled by the caller or by shutdown */
    TFAB_ERR_NOT_FOUND   = -11, /* named thing does not exist */
    TFAB_ERR_CONN        = -12, /* connection refused, reset or closed by the peer */
    TFAB_ERR_AUTH        = -13, /* authentication failed */
    TFAB_ERR_BUSY        = -14, /* resource temporarily exhausted; retry later */
    TFAB_ERR_LAST        = -15
} tfab_status_t;

/* A short constant string for a status ("ok", "timed out", ...). Never NULL. Thread-safe. */
TFAB_API const char *tfab_status_str(tfab_status_t status);

/* Map an errno value to a status. */
TFAB_API tfab_status_t tfab_status_from_errno(int err);

#ifdef __cplusplus
}
#endif
#endif
