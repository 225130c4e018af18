/* rdma_none.c - device enumeration for builds without libibverbs: there is no device. */
#include <stdio.h>
#include <stdlib.h>
#include <tfab/devinfo.h>

tfab_status_t tfab_rdma_list_query(tfab_rdma_list_t **list_p)
{
    tfab_rdma_list_t *list = calloc(1, sizeof(*list));
    if (list == NULL)
        return TFAB_ERR_NOMEM;
    snprintf(list->why, sizeof(list->why),
             "tfab was built without libibverbs/librdmacm (install libibverbs-dev librdmacm-dev "
             "and rebuild)");
    *list_p = list;
    return TFAB_OK;
}
