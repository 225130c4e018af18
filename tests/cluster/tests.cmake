# tests/cluster/ - distributed inference: cluster files, launcher environments, the pipeline
# engine across namespaced hosts (TCP), faults.
tfab_test_exe(test_cluster_file cluster/test_cluster_file.c)
target_link_libraries(test_cluster_file PRIVATE PkgConfig::CMOCKA)
add_test(NAME unit_cluster_file COMMAND test_cluster_file)
set_tests_properties(unit_cluster_file PROPERTIES LABELS unit TIMEOUT 60)

tfab_script_test(net_cluster_pipeline net 300 cluster/t_pipeline_netns.sh)
tfab_script_test(net_cluster_faults net 300 cluster/t_faults_netns.sh)
tfab_script_test(net_cluster_tensor net 300 cluster/t_tensor_netns.sh)
set_tests_properties(net_cluster_pipeline net_cluster_faults net_cluster_tensor
                     PROPERTIES RESOURCE_LOCK netns)

tfab_fuzz_test(cluster 200000)
tfab_script_test(unit_cluster_plan unit 60 cluster/t_plan.sh)

if(TFAB_HAVE_VERBS)
  tfab_script_test(softroce_cluster_pipeline softroce 600 cluster/t_pipeline_softroce.sh)
  set_tests_properties(softroce_cluster_pipeline PROPERTIES FIXTURES_REQUIRED softroce_cache
                       RESOURCE_LOCK softroce_vms)
endif()
tfab_script_test(unit_cluster_start_errors unit 120 cluster/t_start_errors.sh)
