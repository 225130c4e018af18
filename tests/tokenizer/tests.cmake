# tests/tokenizer/ - tokenizer unit tests, llama.cpp's vocab test vectors, the tokenizer fuzz
# target. Included from tests/CMakeLists.txt.
tfab_test_exe(test_tokenizer tokenizer/test_tokenizer.c)
target_link_libraries(test_tokenizer PRIVATE PkgConfig::CMOCKA Threads::Threads)
add_test(NAME unit_tokenizer COMMAND test_tokenizer)
set_tests_properties(unit_tokenizer PROPERTIES LABELS unit TIMEOUT 120)

tfab_test_exe(vocab_vectors tokenizer/vocab_vectors.c)
# Fetches llama.cpp's tree through tools/llama_src.sh (cached in the build dir); no network
# means a FAILED test with the script's message, never a skip.
tfab_script_test(unit_tokenizer_vocab_vectors unit 600 tokenizer/t_vocab_vectors.sh)

# fuzz: libFuzzer under TFAB_FUZZ (clang), else the standalone replay+mutation driver
if(TFAB_FUZZ)
  tfab_test_exe(fuzz_tokenizer fuzz/fuzz_tokenizer.c)
  target_link_options(fuzz_tokenizer PRIVATE -fsanitize=fuzzer)
  set(_tok_fuzz_args -max_total_time=20 -timeout=10 -rss_limit_mb=2048)
else()
  tfab_test_exe(fuzz_tokenizer fuzz/fuzz_tokenizer.c fuzz/standalone.c)
  set(_tok_fuzz_args -runs=1000000)
endif()
# New inputs go to the first directory (in the build tree), never into the checked-in seeds.
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz-corpus/tokenizer)
add_test(NAME fuzz_tokenizer COMMAND fuzz_tokenizer ${_tok_fuzz_args}
         ${PROJECT_BINARY_DIR}/fuzz-corpus/tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/corpus/tokenizer)
set_tests_properties(fuzz_tokenizer PROPERTIES LABELS fuzz TIMEOUT 180)

tfab_script_test(unit_cli_tokenize unit 60 tokenizer/t_cli_tokenize.sh)
