# src/model/ - GGUF and safetensors loading, the Llama-family forward pass, its thread pool.
if(NOT TARGET PkgConfig::CJSON)
  pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
endif()
list(APPEND TFAB_CORE_SOURCES model/dtype.c model/gguf.c model/source_gguf.c model/safetensors.c
     model/source_hf.c model/llama.c model/threads.c)
list(APPEND TFAB_CORE_LIBS PkgConfig::CJSON m)
