"""Published reference numbers (``*.csv``), shipped inside the installed package as
``benchmark.reference`` and read through ``benchmark.paths.reference_dir``."""
