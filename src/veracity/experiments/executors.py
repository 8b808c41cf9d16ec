"""Where a sweep's cells are evaluated: in this process (`LocalExecutor`, the default) or on Ray actors
(`RayExecutor`, `veracity iti sweep --executor ray`).

The sweep engine (`experiments.sweep.run_grid`) does everything else in both cases: it fits each fold once
(the study's fit, saved where the study keeps it), builds the list of pending (cell, fold) jobs and writes
every result into the run folder's store as it arrives, so it is the store's only writer. An executor only
turns jobs into results: `map(jobs, evaluate, fingerprint, log)` yields `(job, result, seconds)` as each cell
finishes, `evaluate(lm, job) -> {"metrics": ..., ...}` being the study's per-cell callable (picklable for Ray;
`fingerprint`: the driver's model weights, which workers that load the model themselves must match). Ray is
optional: it is imported only when a `RayExecutor` is made.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..constraints import Checked, Count, IgnoredUnless, Interval, Options, Text

RAY_MISSING = "the Ray executor needs Ray: pip install 'veracity[ray]' (or pip install 'ray>=2.9')"


@dataclass
class ExecutorConfig(Checked):
    """`veracity iti sweep`'s executor options: local, or Ray with its cluster address and worker sizes (the
    Ray options mean nothing to the local executor, so they are refused there)."""

    _constraints = {"executor": [Options(("local", "ray"))], "ray_address": [None, Text()],
                    "ray_workers": [None, Count()], "ray_gpus_per_worker": [None, Interval(float, 0, None)],
                    "ray_cpus_per_worker": [Interval(float, 0, None, closed="neither")]}
    _rules = (IgnoredUnless("ray_address", "executor", ("ray",), example="auto"),
              IgnoredUnless("ray_workers", "executor", ("ray",), example=2),
              IgnoredUnless("ray_gpus_per_worker", "executor", ("ray",), example=0.5),
              IgnoredUnless("ray_cpus_per_worker", "executor", ("ray",), example=2.0))
    _commands = ("iti sweep",)

    executor: str = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    ray_gpus_per_worker: float | None = None
    ray_cpus_per_worker: float = 1.0


@dataclass
class Job:
    """One cell of a grid on one fold. `cell`: its parameters ({"alpha": 5.0, "k": 8}); `fit`: what the study
    fitted for it on the fold's training questions (shared by the cells of one fit); `items`: the fold's
    held-out items."""

    cell: dict
    fold: int
    fit: object
    items: list


def run_job(lm, job: Job, evaluate: Callable) -> tuple[dict, float]:
    """(result, seconds) of one job on a loaded model: what every executor runs per cell."""
    t0 = time.time()
    res = evaluate(lm, job)
    return res, time.time() - t0


class LocalExecutor:
    """Each job in turn, in this process, on the already loaded model (the default)."""

    name = "local"

    def __init__(self, lm):
        self.lm = lm

    def map(self, jobs: Iterable[Job], evaluate: Callable, fingerprint: str | None = None,
            log: Callable[[str], None] | None = None) -> Iterator[tuple[Job, dict, float]]:
        """Run the jobs one by one in this process, yielding (job, result, seconds) as each finishes; lazily, so
        the engine fits a fold only when its first job is reached."""
        for job in jobs:
            res, secs = run_job(self.lm, job, evaluate)
            yield job, res, secs


def import_ray():
    """The `ray` module, or a RuntimeError saying how to install it."""
    try:
        import ray
    except ImportError as e:
        raise RuntimeError(RAY_MISSING) from e
    return ray


class SweepWorker:
    """A Ray actor's state: one model, loaded once from its spec, evaluating job after job."""

    def __init__(self, model: str, device: str | None, dtype: str, evaluate: Callable,
                 device_map: str | None = None):
        from ..models import load

        self.lm = load(model, dtype=dtype, device=device, device_map=device_map)
        self.evaluate = evaluate

    def fingerprint(self) -> str:
        """The weights fingerprint of the worker's model, so the driver can check every worker loaded the same model."""
        return self.lm.fingerprint

    def run(self, cell: dict, fold: int, fit, items: list) -> tuple[dict, float]:
        """Evaluate one (cell, fold) job on this worker's model: (result, seconds)."""
        return run_job(self.lm, Job(cell, fold, fit, items), self.evaluate)


class RayExecutor:
    """Jobs spread over Ray actors, each loading `model` (a spec for `veracity.models.load`, not a loaded
    model) once and keeping it. Each fold's fit and items go to the object store once; a worker gets its
    next job as soon as it returns one, and results are yielded in completion order (`ray.wait`).

    address: None joins RAY_ADDRESS or a cluster `ray start` started on this machine, else starts a local
    instance (shut down again at the end); "auto" or "HOST:6379" joins that cluster. An already
    initialised Ray (`ray.init` in this process) is used as it is and left running.
    workers: actors to start (default: as many as the cluster's GPUs, or CPUs, allow; never more than jobs).
    gpus_per_worker: Ray's num_gpus per actor (fractions share a GPU); None: 1 if the cluster has GPUs,
    else 0. A worker with a GPU loads the model on it ("cuda"; Ray sets CUDA_VISIBLE_DEVICES), with more
    than one spreads it over them (device_map="auto"), without one on the CPU, whatever device the
    driver uses.
    """

    name = "ray"

    def __init__(self, model: str, workers: int | None = None, gpus_per_worker: float | None = None,
                 cpus_per_worker: float = 1.0, address: str | None = None, dtype: str = "float32"):
        self.ray = import_ray()
        if workers is not None and workers < 1:
            raise ValueError(f"Ray workers must be >= 1, got {workers}")
        if gpus_per_worker is not None and gpus_per_worker < 0:
            raise ValueError(f"GPUs per Ray worker must be >= 0, got {gpus_per_worker}")
        if cpus_per_worker < 0:
            raise ValueError(f"CPUs per Ray worker must be >= 0, got {cpus_per_worker}")
        local = Path(str(model)).expanduser()
        model = str(local.resolve()) if local.exists() else str(model)  # workers may start in another folder
        self.model, self.workers, self.gpus, self.cpus = model, workers, gpus_per_worker, cpus_per_worker
        self.address, self.dtype = address, dtype

    def _plan(self, n_jobs: int) -> tuple[int, float]:
        res = self.ray.cluster_resources()
        gpus = self.gpus if self.gpus is not None else (1.0 if res.get("GPU", 0) >= 1 else 0.0)
        if self.workers is not None:
            n = self.workers
        elif gpus > 0:
            n = int(res.get("GPU", 0) // gpus)
            if n < 1:
                raise RuntimeError(f"the Ray cluster has {res.get('GPU', 0):g} GPUs, fewer than "
                                   f"{gpus:g} per worker; use --ray-gpus-per-worker 0 to run on CPUs")
        else:
            n = int(res.get("CPU", 1) // self.cpus) if self.cpus > 0 else 1
        return max(1, min(n, n_jobs)), gpus

    def map(self, jobs: Iterable[Job], evaluate: Callable, fingerprint: str | None = None,
            log: Callable[[str], None] | None = None) -> Iterator[tuple[Job, dict, float]]:
        """Run the jobs on Ray workers, each holding the model once, yielding (job, result, seconds) as results
        arrive."""
        ray = self.ray
        queue = deque(jobs)  # fits every fold that has pending jobs, before anything is submitted
        if not queue:
            return
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address)
        actors = []
        try:
            n, gpus = self._plan(len(queue))
            device = "cuda" if gpus > 0 else "cpu"
            (log or print)(f"ray: {len(queue)} configurations on {n} workers ({gpus:g} GPU, {self.cpus:g} CPU "
                           f"each; model {self.model} on {device})")
            Worker = ray.remote(num_gpus=gpus, num_cpus=self.cpus)(SweepWorker)
            evaluate_ref = ray.put(evaluate)
            device_map = "auto" if gpus > 1 else None  # several GPUs per worker: the model spread over them
            actors = [Worker.remote(self.model, device, self.dtype, evaluate_ref, device_map) for _ in range(n)]
            try:
                prints = ray.get([a.fingerprint.remote() for a in actors])
            except Exception as e:  # a worker that cannot load the model: say so, not a Ray traceback
                raise RuntimeError(f"Ray workers could not load {self.model!r}: {e}") from e
            if fingerprint is not None and any(p != fingerprint for p in prints):
                raise RuntimeError(f"Ray workers loaded other weights for {self.model!r} than this process "
                                   f"({sorted(set(prints))} != {fingerprint}); install the same model on every node")
            shared: dict[tuple, tuple] = {}  # (id of fit, id of items) -> their refs: each fit sent once
            pending: dict = {}  # result ref -> (job, actor)

            def submit(actor) -> None:
                job = queue.popleft()
                key = (id(job.fit), id(job.items))  # the queue holds every job, so these ids stay unique
                if key not in shared:
                    shared[key] = (ray.put(job.fit), ray.put(list(job.items)))
                fit_ref, items_ref = shared[key]
                pending[actor.run.remote(job.cell, job.fold, fit_ref, items_ref)] = (job, actor)

            for a in actors:
                if queue:
                    submit(a)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job, actor = pending.pop(ready[0])
                res, secs = ray.get(ready[0])
                if queue:
                    submit(actor)
                yield job, res, secs
        finally:
            for a in actors:
                try:
                    ray.kill(a)
                except Exception:
                    pass
            if started:
                ray.shutdown()

