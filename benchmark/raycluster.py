"""Ray for grids and searches: start a local instance sized to the machine, or join
an existing cluster (``--address``), and clamp each trial's request to what the
cluster has (a request larger than the cluster waits forever).

The environment below is set before Ray is imported: trials run in the working
directory (relative paths keep their meaning), no usage statistics, token auth.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError

log = logging.getLogger(__name__)

ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
       "RAY_AIR_NEW_OUTPUT": "0"}  # the new output engine prints its tables even at verbose=0
OBJECT_STORE_BYTES = 512 * 1024**2  # trials pass configs and metrics only, never tensors


@dataclass
class Session:
    started: bool  # we started a local instance (and shut it down after)
    cpus: float
    gpus: float
    where: str

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()


def check_address(address: str) -> None:
    """A dead ``host:port`` makes ray.init hang for minutes: fail in seconds instead."""
    if address == "auto":
        return  # Ray finds the local head itself; connect() turns "none running" into one line
    scheme, _, hostport = address.rpartition("://")
    if scheme and scheme != "ray":
        raise UserError(f"--address {address!r}: expected HOST:PORT, auto or ray://HOST:PORT")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address {address!r}: expected HOST:PORT of a Ray head (e.g. 10.0.0.5:6379), auto or ray://...")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster answers at {address} ({exc}); start one with `ray start --head` or drop --address") from None


def connect(address: str | None = None, num_cpus: int | None = None) -> Session:
    """Join ``address`` or start a local Ray instance with ``num_cpus`` (default: all cores)."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    if address:
        check_address(address)
    if ray.is_initialized():
        started, where = False, "the running Ray session"
    elif address:
        try:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        except ConnectionError as exc:  # --address auto with no head on this machine
            raise UserError(f"no Ray cluster found for --address {address} ({str(exc).split('.')[0]}); "
                            "start one with `ray start --head` or drop --address") from None
        except ValueError as exc:
            if "ray[client]" not in str(exc):
                raise
            raise UserError(f"--address {address}: Ray Client needs `pip install 'ray[client]'`; "
                            "or give the head's HOST:PORT from a cluster node") from None
        started, where = True, f"Ray cluster {address}"
    else:
        cpus = num_cpus or os.cpu_count() or 1
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES,
                 logging_level=logging.WARNING, log_to_driver=False)
        started, where = True, "local Ray"
    res = ray.cluster_resources()
    return Session(started, float(res.get("CPU", 0)), float(res.get("GPU", 0)), where)


def trial_resources(session: Session, cpus: float | None, gpus: float | None) -> dict[str, float]:
    """One GPU per trial when the cluster has GPUs (unless told otherwise), clamped to the cluster."""
    want_cpu = 1.0 if cpus is None else float(cpus)
    want_gpu = (1.0 if session.gpus else 0.0) if gpus is None else float(gpus)
    if want_cpu <= 0 or want_gpu < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    cpu = min(want_cpu, max(session.cpus, 1.0))
    gpu = min(want_gpu, session.gpus)
    if (cpu, gpu) != (want_cpu, want_gpu):
        log.warning("clamped each trial to %g CPU and %g GPU (the cluster has %g CPU, %g GPU)", cpu, gpu, session.cpus, session.gpus)
    return {"cpu": cpu, "gpu": gpu}


def storage_dir(kind: str) -> Path:
    """Absolute folder for Tune's experiment state, beside the results store."""
    from benchmark.paths import store_path

    path = (store_path().parent / kind).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path
