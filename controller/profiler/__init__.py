"""The measuring executor behind `hybridserve profile`: it runs model variants on this machine
under emulated function sizes and writes profile files the catalog reads.

Also here, because measuring is not the data plane's job: cop/ (per-operator profiles and the
latency predicted from them, INFless's COP), predicted_rows.py (those predictions as catalog rows
for models never measured) and partition_graph.py (a model's block sequence for the partition
planner, `configs/catalog/model_graphs/`).

It only measures; choosing (memory sizes, instance types) is the pure analyzer in
controller/tuning, as AWS Lambda Power Tuning keeps its executor apart from its analyzer.

    grid = ProfileGrid.parse(models="squeezenet", runtimes="mxnet", batches="1,2", cpu_shares="1")
    summary = run_profile(grid, "configs/catalog/local")   # resumable; appends per cell
"""
from controller.profiler.catalog_files import write_catalog_files
from controller.profiler.executor import ProfileSummary, run_profile
from controller.profiler.grid import Cell, ProfileGrid, memory_mb_of_share

__all__ = ["ProfileGrid", "Cell", "memory_mb_of_share", "run_profile", "ProfileSummary", "write_catalog_files"]
