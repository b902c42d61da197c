"""The Ray cluster a batch runs on: started (or joined) with a bound, and the share of it each
stage actor asks for.

Resources are sized from the cluster (:func:`plan_resources`): all ``5 × concurrency``
actors must fit on the nodes at once (a pool that cannot start would stall the streaming
executor for ever), so each actor asks for a share of a CPU (and of a GPU for the model
stages) that packs onto the nodes there are. Ray's start-up is bounded (:func:`start_ray`).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from emoflow.errors import ConfigError

INIT_TIMEOUT_S = 180.0  # ray.init on a busy machine takes seconds; minutes means it is stuck
N_STAGES, N_MODEL_STAGES = 5, 3  # decode, transcribe, text, audio, write; the middle three hold models


@dataclass(frozen=True)
class ActorShare:
    """What each stage actor asks Ray for."""

    cpus: float  # CPUs per actor (a fraction where the cluster has fewer CPUs than actors)
    gpus: float  # GPUs per model-stage actor; 0 without GPUs

    @property
    def threads(self) -> int:
        """torch threads per actor: its CPU share, at least one."""
        return max(1, int(self.cpus))


def _fits(nodes: Sequence[Mapping[str, float]], demands: Sequence[tuple[float, float]]) -> bool:
    """Whether every (cpu, gpu) demand can be placed on the nodes at once (greedy, biggest
    first, each on the node with the most room left: good enough for identical demands)."""
    free = [[float(n.get("CPU", 0.0)), float(n.get("GPU", 0.0))] for n in nodes]
    eps = 1e-6
    for cpu, gpu in sorted(demands, reverse=True, key=lambda d: (d[1], d[0])):
        room = [f for f in free if f[0] + eps >= cpu and f[1] + eps >= gpu]
        if not room:
            return False
        best = max(room, key=lambda f: (f[1] if gpu else 0.0, f[0]))
        best[0] -= cpu
        best[1] -= gpu
    return True


def plan_resources(
    nodes: Sequence[Mapping[str, float]],
    concurrency: int,
    *,
    stages: int = N_STAGES,
    model_stages: int = N_MODEL_STAGES,
) -> ActorShare:
    """CPU (and GPU) shares such that all ``stages × concurrency`` actors fit on ``nodes``
    (each a mapping of resources, as ``ray.nodes()[i]["Resources"]``) at the same time.

    A whole CPU per actor while it fits; less when it does not (5 actors on a 2-CPU machine
    get 0.38 CPU each); :class:`ConfigError` when even a hundredth of a CPU each does not fit.
    """
    if concurrency < 1:
        raise ConfigError(f"--concurrency {concurrency}: give at least 1 actor per stage")
    n = stages * concurrency
    total_cpu = sum(float(x.get("CPU", 0.0)) for x in nodes)
    total_gpu = sum(float(x.get("GPU", 0.0)) for x in nodes)
    n_gpu = model_stages * concurrency if total_gpu > 0 else 0
    cpu = min(1.0, 0.95 * total_cpu / n)  # a little room for Ray's own helpers
    gpu = min(1.0, total_gpu / n_gpu) if n_gpu else 0.0
    while True:
        c = math.floor(cpu * 100) / 100
        g = math.floor(gpu * 10_000) / 10_000
        if c < 0.01 or (n_gpu and g < 0.0001):
            break
        if _fits(nodes, [(c, g)] * n_gpu + [(c, 0.0)] * (n - n_gpu)):
            return ActorShare(c, g)
        cpu, gpu = cpu * 0.9, gpu * 0.9
    raise ConfigError(
        f"the Ray cluster ({total_cpu:g} CPUs, {total_gpu:g} GPUs on {len(nodes)} node(s)) cannot hold "
        f"{n} stage actors ({stages} stages x --concurrency {concurrency}); lower --concurrency or add nodes"
    )


def _check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """Fail at once on a cluster address nothing answers at (ray.init would retry for minutes)."""
    import socket

    if not address or address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({e}); start one with `ray start --head` "
            "or leave out --ray-address to run locally"
        ) from e


class _Quiet(logging.Filter):
    """Drops Ray's note that ray.init in a helper thread leaves SIGTERM alone: that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler" not in record.getMessage()


def start_ray(address: str | None, timeout_s: float = INIT_TIMEOUT_S) -> Callable[[], None]:
    """``ray.init`` with a bound: :class:`ConfigError` when Ray has not started in ``timeout_s``.
    Returns the function that shuts Ray down again.

    Ray starts in a helper thread, so it installs no signal handler (signals belong to the
    entry point). The thread lives until the shutdown: the processes of a local Ray die with
    the thread that started them (Linux's parent-death signal is per thread). A start that
    finishes after we gave up is shut down at once."""
    import ray

    _check_reachable(address)
    started, stop = threading.Event(), threading.Event()
    box: dict[str, BaseException] = {}

    def keeper() -> None:
        try:
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
                logging_level=logging.WARNING,
            )
        except BaseException as e:
            box["error"] = e
            return
        finally:
            started.set()
        stop.wait()
        ray.shutdown()

    thread = threading.Thread(target=keeper, name="emoflow-ray", daemon=True)
    quiet, worker_log = _Quiet(), logging.getLogger("ray._private.worker")
    worker_log.addFilter(quiet)
    try:
        thread.start()
        if not started.wait(timeout_s):
            stop.set()
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ConfigError(
                f"could not start {where} within {timeout_s:g} s; check `ray status` and the logs "
                "under /tmp/ray, or run with --engine local"
            )
    finally:
        worker_log.removeFilter(quiet)
    err = box.get("error")
    if isinstance(err, ConnectionError):
        raise ConfigError(
            f"could not join the Ray cluster at {address}: {err}; check the address, and for "
            "clusters with token auth use the cluster's token (RAY_AUTH_MODE=token, "
            "~/.ray/auth_token)"
        ) from err
    if err is not None:
        raise err

    def shutdown() -> None:
        stop.set()
        thread.join(timeout=120)

    return shutdown
