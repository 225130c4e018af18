/* status.c - names of tfab_status_t values and the errno boundary conversion. */
#include <errno.h>
#include <tfab/status.h>

const char *tfab_status_str(tfab_status_t status)
{
    switch (status) {
    case TFAB_OK:              return "ok";
    case TFAB_INPROGRESS:      return "in progress";
    case TFAB_ERR_INVALID:     return "invalid argument";
    case TFAB_ERR_NOMEM:       return "out of memory";
    case TFAB_ERR_NODEV:       return "no such device";
    case TFAB_ERR_IO:          return "input/output error";
    case TFAB_ERR_TIMEOUT:     return "timed out";
    case TFAB_ERR_UNSUPPORTED: return "not supported";
    case TFAB_ERR_PROTO:       return "protocol error";
    case TFAB_ERR_RANGE:       return "out of range";
    case TFAB_ERR_PERM:        return "permission or limit";
    case TFAB_ERR_CANCELED:    return "canceled";
    case TFAB_ERR_NOT_FOUND:   return "not found";
    case TFAB_ERR_CONN:        return "connection failed";
    case TFAB_ERR_AUTH:        return "authentication failed";
    case TFAB_ERR_BUSY:        return "busy";
    case TFAB_ERR_LAST:        break;
    }
    return "unknown status";
}

tfab_status_t tfab_status_from_errno(int err)
{
    switch (err) {
    case 0:            return TFAB_OK;
    case EINPROGRESS:
    case EAGAIN:       return TFAB_INPROGRESS;
    case EINVAL:       return TFAB_ERR_INVALID;
    case ENOMEM:
    case ENOBUFS:      return TFAB_ERR_NOMEM;
    case ENODEV:
    case ENXIO:        return TFAB_ERR_NODEV;
    case ETIMEDOUT:    return TFAB_ERR_TIMEOUT;
    case EOPNOTSUPP:
    case ENOSYS:       return TFAB_ERR_UNSUPPORTED;
    case EPROTO:       return TFAB_ERR_PROTO;
    case ERANGE:
    case EOVERFLOW:    return TFAB_ERR_RANGE;
    case EPERM:
    case EACCES:       return TFAB_ERR_PERM;
    case ECANCELED:    return TFAB_ERR_CANCELED;
    case ENOENT:       return TFAB_ERR_NOT_FOUND;
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case EPIPE:
    case ENETUNREACH:
    case EHOSTUNREACH: return TFAB_ERR_CONN;
    case EBUSY:        return TFAB_ERR_BUSY;
    default:           return TFAB_ERR_IO;
    }
}
