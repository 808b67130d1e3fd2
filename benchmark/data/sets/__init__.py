"""The shipped data sets, one module each; every module registers its
:class:`benchmark.data.dataset.DataSet` in ``benchmark.registry.DATASETS``.
``benchmark.data.catalog`` imports them all; nothing else names a data set."""
