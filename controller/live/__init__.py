"""The live shell: the control loop on the wall clock (the simulator's twin), the VM and function
fleets it drives, the catalog it plans with, `hybridserve run` (daemon) and `hybridserve loadgen`."""
