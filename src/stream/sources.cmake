# src/stream - per-NUMA compute streams: topology, pinned workers, op queues, events.
# libnuma: Debian's libnuma-dev ships numa.pc; fall back to find_library where it does not.
pkg_check_modules(NUMA IMPORTED_TARGET GLOBAL numa) # GLOBAL: tests link tfab_static too
if(NUMA_FOUND)
  list(APPEND TFAB_CORE_LIBS PkgConfig::NUMA)
else()
  find_library(TFAB_NUMA_LIBRARY numa)
  find_path(TFAB_NUMA_INCLUDE numa.h)
  if(NOT TFAB_NUMA_LIBRARY OR NOT TFAB_NUMA_INCLUDE)
    message(FATAL_ERROR "tfab: libnuma not found: install libnuma-dev (Debian) or numactl-devel")
  endif()
  list(APPEND TFAB_CORE_LIBS ${TFAB_NUMA_LIBRARY})
endif()
list(APPEND TFAB_CORE_SOURCES
  stream/spin.c
  stream/team.c
  stream/topo.c
  stream/numa_mem.c
  stream/event.c
  stream/stream.c
)
