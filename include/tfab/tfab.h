/* tfab/tfab.h - umbrella header of libtfab. */
#ifndef TFAB_TFAB_H
#define TFAB_TFAB_H
#include <tfab/version.h>
#include <tfab/status.h>
#include <tfab/log.h>
#include <tfab/units.h>
#include <tfab/devinfo.h>
#include <tfab/pool.h>
#include <tfab/transport.h>
#include <tfab/topology.h>
#include <tfab/stream.h>
#endif
