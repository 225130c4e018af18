# tests/kernels/ - dot kernels of every ISA against a double-precision reference.
tfab_test_exe(test_kernels kernels/test_kernels.c)
target_include_directories(test_kernels PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(test_kernels PRIVATE PkgConfig::CMOCKA m)
add_test(NAME unit_kernels COMMAND test_kernels)
set_tests_properties(unit_kernels PROPERTIES LABELS unit TIMEOUT 60)
