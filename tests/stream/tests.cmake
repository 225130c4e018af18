# tests/stream - compute streams: unit tests on this host, under taskset, and in a soft-RoCE
# guest with two emulated NUMA nodes; a parallel_for overhead benchmark.
foreach(t test_stream test_stream_numa test_topo_fake)
  tfab_test_exe(${t} stream/${t}.c)
  target_link_libraries(${t} PRIVATE PkgConfig::CMOCKA Threads::Threads)
  if(TARGET PkgConfig::NUMA)
    target_link_libraries(${t} PRIVATE PkgConfig::NUMA)
  else()
    target_link_libraries(${t} PRIVATE ${TFAB_NUMA_LIBRARY})
  endif()
endforeach()
add_test(NAME unit_stream COMMAND test_stream)
add_test(NAME unit_stream_numa COMMAND test_stream_numa)
add_test(NAME unit_stream_topo_fake COMMAND test_topo_fake)
target_include_directories(test_topo_fake PRIVATE ${PROJECT_SOURCE_DIR}/src/stream) # topo_build
# the affinity mask is respected: only CPU 0 may be used
add_test(NAME unit_stream_taskset COMMAND taskset -c 0 $<TARGET_FILE:test_stream_numa> --cpus 0)
set_tests_properties(unit_stream unit_stream_numa unit_stream_topo_fake unit_stream_taskset PROPERTIES
                     LABELS unit TIMEOUT 120)

tfab_test_exe(bench_stream stream/bench_stream.c)
add_test(NAME perf_stream_parallel_for COMMAND bench_stream --quick)
set_tests_properties(perf_stream_parallel_for PROPERTIES LABELS perf TIMEOUT 120)

if(TFAB_HAVE_VERBS)
  tfab_script_test(softroce_stream_numa softroce 300 stream/t_stream_numa_guest.sh)
  set_tests_properties(softroce_stream_numa PROPERTIES
                       FIXTURES_REQUIRED softroce_cache RESOURCE_LOCK softroce_vms)
endif()
set_tests_properties(perf_stream_parallel_for PROPERTIES RUN_SERIAL TRUE) # benchmarks run alone
