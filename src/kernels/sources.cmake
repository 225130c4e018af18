# src/kernels/ - dot-product kernels with run-time AVX2/AVX-512 dispatch, q8_0 quantization.
list(APPEND TFAB_CORE_SOURCES kernels/dispatch.c kernels/convert.c kernels/dot_scalar.c
     kernels/dot_avx2.c kernels/dot_avx512.c kernels/gemm_avx512.c)
