"""The YAML configs (methods, tasks, profiles, sweeps, experiments), shipped inside the
installed package as ``benchmark.configs`` and read through ``benchmark.paths.config_dir``."""
