# src/sample/ - token sampling (greedy, temperature, top-k, top-p, min-p, repetition penalty).
list(APPEND TFAB_CORE_SOURCES sample/sample.c)
list(APPEND TFAB_CORE_LIBS m)
