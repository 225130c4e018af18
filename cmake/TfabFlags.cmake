# Compiler flags shared by every target: warnings, sanitizers, fuzzing. No -march=native:
# hot kernels select AVX2/AVX-512 at run time, so one binary runs on any x86-64.
add_compile_options(-Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
                    -Wno-unused-parameter -fno-strict-aliasing)
if(TFAB_WERROR)
  add_compile_options(-Werror)
endif()

set(_tfab_san "")
if(TFAB_SANITIZE_ADDRESS)
  list(APPEND _tfab_san address)
endif()
if(TFAB_SANITIZE_UNDEFINED)
  list(APPEND _tfab_san undefined)
endif()
if(TFAB_SANITIZE_THREAD)
  if(TFAB_SANITIZE_ADDRESS)
    message(FATAL_ERROR "TFAB_SANITIZE_THREAD cannot be combined with TFAB_SANITIZE_ADDRESS")
  endif()
  list(APPEND _tfab_san thread)
endif()
if(_tfab_san)
  list(JOIN _tfab_san "," _tfab_san_list)
  add_compile_options(-fsanitize=${_tfab_san_list} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_tfab_san_list})
endif()

if(TFAB_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TFAB_FUZZ needs clang: configure with -DCMAKE_C_COMPILER=clang")
  endif()
  # Instrument everything for coverage; only the fuzz targets link libFuzzer's main().
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
