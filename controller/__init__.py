"""hybridserve controller: config, catalog, pure control core, simulator and daemon shells, CLI."""
