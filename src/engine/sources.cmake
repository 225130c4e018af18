# src/engine/ - distributed inference: the cluster file, launcher environments, the pipeline
# engine (coordinator and nodes) over the fabric.
list(APPEND TFAB_CORE_SOURCES engine/cluster_file.c engine/wire.c engine/pipeline.c engine/plan.c)
