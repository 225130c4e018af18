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
  tfab_fuzz_test(${f} 100000)
  target_include_directories(fuzz_${f} PRIVATE ${PROJECT_SOURCE_DIR}/src)
endforeach()
set_tests_properties(perf_decode PROPERTIES RUN_SERIAL TRUE) # benchmarks run alone

# peer: llama.cpp built from the npm-bundled source (tools/llama_cpp.sh, ~7 min on 2 cores, then
# cached in $TFAB_LLAMA_CACHE or BUILD/llama-cache) once, as a fixture, for the tests that compare
# against it
add_test(NAME peer_llama_cpp_build
         COMMAND bash -c "exec bash \"$TFAB_SOURCE/tools/llama_cpp.sh\" build \"\${TFAB_LLAMA_CACHE:-$TFAB_BUILD/llama-cache}\"")
set_tests_properties(peer_llama_cpp_build PROPERTIES LABELS peer TIMEOUT 2400
                     FIXTURES_SETUP llama_cpp ENVIRONMENT "${TFAB_TEST_ENV}")
tfab_script_test(peer_llama_greedy peer 300 model/t_model_py.sh t_peer_llama.py)
set_tests_properties(peer_llama_greedy PROPERTIES FIXTURES_REQUIRED llama_cpp)
# batch API, pipeline stages and tensor parallel bit-identical to one whole model
tfab_test_exe(model_split model/model_split.c)
find_package(Threads REQUIRED)
target_link_libraries(model_split PRIVATE Threads::Threads)
tfab_script_test(unit_model_split unit 120 model/t_model_py.sh t_model_split.py)
