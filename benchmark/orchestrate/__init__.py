"""Orchestration: trials run as Ray jobs, locally or on a cluster.

- ``grid``: expand a grid or an experiment file into trials and run the missing ones
  (``expand``, ``run_plan``, ``summary_lines``).
- ``tune``: a method's search space sampled by Optuna through Ray Tune, with ASHA
  (``run_search``, ``search_lines``).
- ``raytune``: the Ray Tune glue both share: worker set-up, the result callback, the
  pre-training phase (``pretrain_encoders``).
- ``raycluster``: start or join a Ray instance, size each trial's request.
- ``ddp``: a pre-training loop run in N processes through Ray Train.

Nothing is imported here: import the module you need (``from benchmark.orchestrate.grid
import expand``), so that importing one (``ddp`` from ``pretrain``) loads no other.
"""
