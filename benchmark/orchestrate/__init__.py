"""Orchestration: trials run as Ray jobs, locally or on a cluster.

- ``grid``: expand a grid or an experiment file into trials and run the missing ones
  (``expand``, ``run_plan``, ``summary_lines``).
- ``tune``: a method's search space sampled by Optuna through Ray Tune, with ASHA
  (``run_search``, ``search_lines``).
- ``raytune``: the Ray Tune glue both share: worker set-up, the result callback, the
  pre-training phase (``pretrain_encoders``).

The Ray connection (``benchmark.raycluster``: start or join a Ray instance, size each
trial's request) sits below, beside the DDP launcher (``benchmark.ddp``) that the
pre-training loop uses, so that nothing below this package imports it.

Nothing is imported here: import the module you need (``from benchmark.orchestrate.grid
import expand``), so that importing one loads no other.
"""
