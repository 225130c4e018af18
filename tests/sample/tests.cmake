# tests/sample/ - sampler unit tests (exact picks, seeded distributions, reproducibility).
tfab_test_exe(test_sample sample/test_sample.c)
target_link_libraries(test_sample PRIVATE PkgConfig::CMOCKA m)
add_test(NAME unit_sample COMMAND test_sample)
set_tests_properties(unit_sample PROPERTIES LABELS unit TIMEOUT 60)
