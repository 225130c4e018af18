# tests/model/ - GGUF/safetensors readers, the forward pass against a PyTorch reference, tfab logits.
foreach(t gguf)
  tfab_test_exe(test_${t} model/test_${t}.c)
  target_link_libraries(test_${t} PRIVATE PkgConfig::CMOCKA)
  add_test(NAME unit_${t} COMMAND test_${t})
  set_tests_properties(unit_${t} PROPERTIES LABELS unit TIMEOUT 60)
endforeach()
tfab_test_exe(test_threads model/test_threads.c)
target_include_directories(test_threads PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(test_threads PRIVATE PkgConfig::CMOCKA)
add_test(NAME unit_model_threads COMMAND test_threads)
set_tests_properties(unit_model_threads PROPERTIES LABELS unit TIMEOUT 60)

tfab_test_exe(test_model_alloc model/test_model_alloc.c)
target_link_libraries(test_model_alloc PRIVATE PkgConfig::CMOCKA)
add_test(NAME unit_model_alloc COMMAND test_model_alloc ${PROJECT_SOURCE_DIR}/models/tfab-tiny-f16.gguf)
set_tests_properties(unit_model_alloc PROPERTIES LABELS unit TIMEOUT 60)

tfab_test_exe(model_decode model/model_decode.c)
target_link_libraries(model_decode PRIVATE m)
tfab_script_test(unit_model_ref unit 300 model/t_model_py.sh t_model_ref.py --hf)
tfab_script_test(unit_model_tiny unit 120 model/t_model_py.sh t_model_tiny.py)

tfab_test_exe(bench_decode model/bench_decode.c)
tfab_script_test(perf_decode perf 300 model/t_bench_decode.sh)

# fuzz targets of the model-file parsers, registered as tests/CMakeLists.txt registers fuzz_units
foreach(f gguf safetensors)
  if(TFAB_FUZZ)
    tfab_test_exe(fuzz_${f} fuzz/fuzz_${f}.c)
    target_link_options(fuzz_${f} PRIVATE -fsanitize=fuzzer)
    set(_args -max_total_time=15 -timeout=10)
  else()
    tfab_test_exe(fuzz_${f} fuzz/fuzz_${f}.c fuzz/standalone.c)
    set(_args -runs=100000)
  endif()
  target_include_directories(fuzz_${f} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  add_test(NAME fuzz_${f} COMMAND fuzz_${f} ${_args} ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/${f})
  set_tests_properties(fuzz_${f} PROPERTIES LABELS fuzz TIMEOUT 120)
endforeach()
set_tests_properties(perf_decode PROPERTIES RUN_SERIAL TRUE) # benchmarks run alone

# batch API, pipeline stages and tensor parallel bit-identical to one whole model
tfab_test_exe(model_split model/model_split.c)
find_package(Threads REQUIRED)
target_link_libraries(model_split PRIVATE Threads::Threads)
tfab_script_test(unit_model_split unit 120 model/t_model_py.sh t_model_split.py)
