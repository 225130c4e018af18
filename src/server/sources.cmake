# src/server/ - `tfab serve`: HTTP (libmicrohttpd) on TCP and a Unix socket, OpenAI and Ollama
# APIs (cJSON), continuous-batching scheduler, stream registry, metrics, model cache, YAML config.
# A library of its own (tfab_server): only the CLI and the tests link it, libtfab does not.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
if(NOT TARGET PkgConfig::CJSON)
  pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)
endif()
add_library(tfab_server STATIC server/api.c server/config.c server/stream.c server/engine.c
            server/cache.c server/metrics.c server/server.c server/http.c server/dashboard.c
            server/utf8.c)
target_include_directories(tfab_server PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(tfab_server PUBLIC tfab_static PkgConfig::MHD PkgConfig::CJSON PkgConfig::YAML
                      Threads::Threads)
