"""Training jobs: one score network per job, checkpointed under the run's output folder.

A :class:`TrainJob` is plain, picklable data (network and training settings, the training
data as an array or an exact ensemble sampled fresh every batch, the class labels of a
class-conditional network, the seed and the checkpoint folder), so the same job runs in
this process, in a local worker process or on a SLURM node (:mod:`validation.sweep`).
:func:`train_job` trains it with :func:`physdiff.nn.train`, which writes its checkpoint
atomically and resumes from it; :func:`load_trained` calls the same function again, which
finds the finished checkpoint and returns at once, so a rerun of an experiment reuses every
finished training.

The checkpoint folder's name ends with a hash of everything that determines the training
(network, settings, seed, data and a conditional network's labels), so a changed config
never resumes a stale checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from physdiff.errors import InputError

__all__ = [
    "NetSpec",
    "TrainSpec",
    "TrainJob",
    "TrainSummary",
    "make_job",
    "train_job",
    "load_trained",
    "load_network",
    "build_denoiser",
    "in_process",
    "job_key",
    "legacy_job_key",
    "canonical",
    "canonical_json",
    "data_payload",
    "settings_key",
    "checkpoint_path",
    "run_training",
    "train_jobs",
    "PlannedTrainings",
    "stop_before_training",
    "ensemble_jobs",
    "summarize",
    "torch_threads",
    "blas_threads",
    "limited_threads",
]


@dataclass(frozen=True)
class NetSpec:
    """A score network behind a :class:`physdiff.nn.Denoiser`: a
    :class:`physdiff.nn.ScoreMLP` (``kind="mlp"``, on ``dim``-dimensional data) or a
    :class:`physdiff.nn.ScoreUNet` (``kind="unet"``, on images of ``image_shape`` flattened
    to ``dim``), class-conditional on ``n_classes`` classes (plus a null label) when
    ``n_classes > 0``."""

    dim: int
    hidden: int = 256
    depth: int = 4
    embed_dim: int = 64
    parametrisation: str = "edm"
    sigma_data: float = 1.0
    kind: str = "mlp"
    n_classes: int = 0
    base_channels: int = 32  # U-Net only
    image_shape: tuple[int, int, int] = (1, 8, 8)  # U-Net only

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "unet"):
            raise InputError(f"network kind must be 'mlp' or 'unet'; got {self.kind!r}")
        if self.n_classes < 0:
            raise InputError(f"n_classes must be >= 0; got {self.n_classes!r}")

    @property
    def conditional(self) -> bool:
        """Whether the network takes class labels."""
        return self.n_classes > 0

    def key_fields(self) -> dict[str, Any]:
        """The fields a checkpoint's hash covers (:func:`settings_key`), in the layouts of
        the two spec types this one replaced, so finished checkpoints are still found: an
        unconditional MLP's ``(dim, hidden, depth, embed_dim, parametrisation,
        sigma_data)``; any other network's ``(kind, dim, n_classes, hidden, depth,
        embed_dim, base_channels, image_shape, sigma_data)``, plus ``parametrisation``
        when it is not ``"edm"``."""
        d = asdict(self)
        if self.kind == "mlp" and not self.conditional:
            names = ("dim", "hidden", "depth", "embed_dim", "parametrisation", "sigma_data")
        else:
            names = ("kind", "dim", "n_classes", "hidden", "depth", "embed_dim",
                     "base_channels", "image_shape", "sigma_data")  # fmt: skip
            if self.parametrisation != "edm":
                names += ("parametrisation",)
        return {n: d[n] for n in names}

    def build(self, seed: int | None = None):
        """The untrained denoiser (:func:`build_denoiser`)."""
        return build_denoiser(self, seed)

    @classmethod
    def of(cls, config: Any, dim: int, **overrides: Any) -> NetSpec:
        """The network an experiment's ``config`` asks for on ``dim``-dimensional data: its
        ``net.hidden``, ``net.depth`` and ``net.embed_dim`` (a nested
        :class:`validation.config.NetConfig`; ``config`` may also be a ``NetConfig`` itself,
        or a flat config with the same fields); ``overrides`` replace any field."""
        c = getattr(config, "net", config)
        kw = {"hidden": c.hidden, "depth": c.depth, "embed_dim": c.embed_dim}
        return cls(dim=dim, **{**kw, **overrides})


@dataclass(frozen=True)
class TrainSpec:
    """The fields of :class:`physdiff.nn.TrainConfig` an experiment sets (the rest default)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    ema_decay: float = 0.999
    process: str = "edm"
    checkpoint_every: int = 500
    amp: bool = True

    @classmethod
    def of(cls, config: Any, *, steps: int | None = None, batch_size: int | None = None):
        """The spec an experiment's ``config`` asks for: its ``training.steps``,
        ``training.batch_size``, ``training.lr``, ``training.ema_decay`` and, where it has
        one, ``training.train_process`` (else the default) (a nested
        :class:`validation.config.TrainingConfig`, or the same fields on ``config``
        itself); ``steps``/``batch_size`` override (a second network of the same
        experiment, say). A checkpoint every 1000 steps, or once for shorter runs."""
        c = getattr(config, "training", config)
        n = int(c.steps if steps is None else steps)
        process = getattr(c, "train_process", None)
        kw = {"process": process} if process is not None else {}
        return cls(
            steps=n,
            batch_size=int(c.batch_size if batch_size is None else batch_size),
            lr=c.lr,
            ema_decay=c.ema_decay,
            checkpoint_every=max(1, min(1000, n)),
            **kw,
        )


@dataclass(frozen=True, eq=False)
class TrainJob:
    """One training: ``data`` is an ``(n, d)`` array or a physdiff ensemble; for a
    class-conditional network, ``labels`` are the array's class labels (``None`` for an
    ensemble with ``sample_with_labels``)."""

    name: str
    net: NetSpec
    train: TrainSpec
    data: Any
    seed: int
    device: str
    checkpoint_dir: str
    threads: int = 0  # torch CPU threads in the job (0: torch's default)
    progress: bool = False
    labels: Any = None


@dataclass(frozen=True)
class TrainSummary:
    """What a finished job reports back (small and picklable)."""

    name: str
    checkpoint_dir: str
    steps: int
    seconds: float
    samples_per_second: float
    final_loss: float

    def brief(self, rate: bool = False) -> dict[str, Any]:
        """What a result row reports of the training: steps, seconds (0.01 s), the samples
        per second (0.1) where ``rate``, and the final loss."""
        out: dict[str, Any] = {"steps": self.steps, "seconds": round(self.seconds, 2)}
        if rate:
            out["samples_per_second"] = round(self.samples_per_second, 1)
        out["final_loss"] = self.final_loss
        return out


def data_payload(data: Any) -> Any:
    """What of the training ``data`` the legacy hash covered (:func:`legacy_job_key`): an
    array's float64 bytes and shape, else the pickled object (an ensemble)."""
    if isinstance(data, np.ndarray):
        return (np.ascontiguousarray(data, dtype=np.float64).tobytes(), data.shape)
    return pickle.dumps(data, protocol=4)


def canonical(obj: Any) -> Any:
    """``obj`` as canonical JSON values, the same for equal parameters whatever their types
    and whatever the numpy version: numpy scalars become Python ``int``/``float`` (written
    by ``repr``, the shortest round-trip form), non-finite floats the strings ``"nan"``,
    ``"inf"``, ``"-inf"``, tuples lists, mappings dicts with string keys; an array is
    ``{"array": sha256 of its little-endian float64 (or int64) bytes, "shape": ...}``; a
    dataclass is its fields, any other object (an ensemble) its class and its instance
    state (``vars``, without ``functools.cached_property`` caches)."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        x = float(obj)
        return x if math.isfinite(x) else repr(x)
    if isinstance(obj, np.ndarray):
        kind = "<i8" if obj.dtype.kind in "biu" else "<f8"
        arr = np.ascontiguousarray(obj, dtype=kind)
        return {"array": hashlib.sha256(arr.tobytes()).hexdigest(), "dtype": kind,
                "shape": list(arr.shape)}  # fmt: skip
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    if isinstance(obj, bytes):
        return {"bytes": hashlib.sha256(obj).hexdigest()}
    if is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in fields(obj)}
    cls = type(obj)
    state = {
        k: v
        for k, v in vars(obj).items()
        if not isinstance(getattr(cls, k, None), functools.cached_property)
    }
    return {"type": f"{cls.__module__}.{cls.__qualname__}", "state": canonical(state)}


def canonical_json(obj: Any) -> str:
    """:func:`canonical` as compact JSON with sorted keys (strict: no NaN/inf tokens)."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def settings_key(net: Any, train: TrainSpec, seed: int, payload: Any) -> str:
    """12 hex digits of a SHA-256 over the :func:`canonical_json` of a network dataclass
    (its ``key_fields()`` where it has them), the training spec, the seed and ``payload``
    (the data, plus anything else that decides the weights, such as class labels): equal
    parameters give equal keys whether they are numpy scalars or Python numbers, under any
    numpy version."""
    net_fields = net.key_fields() if hasattr(net, "key_fields") else asdict(net)
    blob = canonical_json({"net": net_fields, "train": train, "seed": int(seed), "data": payload})
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _labels_payload(net: NetSpec, labels: Any) -> Any:
    if not net.conditional:
        if labels is not None:
            raise InputError("labels need a class-conditional network (n_classes > 0)")
        return None
    return None if labels is None else np.asarray(labels, dtype=np.int64)


def job_key(net: NetSpec, train: TrainSpec, seed: int, data: Any, labels: Any = None) -> str:
    """12 hex digits of a SHA-256 over everything that determines a training's weights
    (:func:`settings_key`): the data (an array by its float64 values, an ensemble by its
    state) and, for a class-conditional network, the labels (``None`` for an ensemble
    that draws its own)."""
    lab = _labels_payload(net, labels)
    payload = {"data": data} if not net.conditional else {"data": data, "labels": lab}
    return settings_key(net, train, seed, payload)


def legacy_job_key(net: NetSpec, train: TrainSpec, seed: int, data: Any, labels: Any = None) -> str:
    """The key of checkpoints written before :func:`job_key` was canonical: a SHA-256 over
    the ``repr`` of the fields and a pickle of the data, which changes with the numpy
    version (``np.float64(0.1)`` is written ``0.1`` by numpy 1 and ``np.float64(0.1)`` by
    numpy 2, and pickles name numpy's internal modules). :func:`make_job` still finds a
    finished checkpoint under it, when the numpy version matches."""
    lab = _labels_payload(net, labels)
    payload = data_payload(data)
    if net.conditional:
        payload = (payload, None if lab is None else lab.tobytes())
    net_fields = net.key_fields() if hasattr(net, "key_fields") else asdict(net)
    blob = repr((net_fields, asdict(train), int(seed))).encode() + pickle.dumps(payload, 4)
    return hashlib.sha256(blob).hexdigest()[:12]


def checkpoint_path(root: str | Path, name: str, key: str) -> str:
    """The absolute checkpoint folder ``root/<name>-<key>`` of a job."""
    return str((Path(root) / f"{name}-{key}").resolve())


def _checkpoint_dir(root, name, net, train, seed, data, labels) -> str:
    """``root/<name>-<job_key>``, or the folder of the legacy key where only that one
    exists (a finished training from before the canonical keys is found again)."""
    path = checkpoint_path(root, name, job_key(net, train, seed, data, labels))
    if not Path(path).exists():
        legacy = checkpoint_path(root, name, legacy_job_key(net, train, seed, data, labels))
        if Path(legacy).exists():
            return legacy
    return path


def make_job(
    name: str,
    net: NetSpec,
    train: TrainSpec,
    data: Any,
    *,
    seed: int,
    device: str,
    root: str | Path,
    threads: int = 0,
    progress: bool = False,
    labels: Any = None,
) -> TrainJob:
    """A job whose checkpoint lives in ``root/<name>-<hash>`` (absolute path), the hash
    over everything that decides the weights (:func:`job_key`)."""
    return TrainJob(
        name=name,
        net=net,
        train=train,
        data=data,
        seed=int(seed),
        device=device,
        checkpoint_dir=_checkpoint_dir(root, name, net, train, seed, data, labels),
        threads=threads,
        progress=progress,
        labels=labels,
    )


def in_process(engine: Any, n_jobs: int) -> bool:
    """Whether ``engine`` runs ``n_jobs`` trainings one after another in this process (a
    serial engine, or a single local worker; never a caller's executor or SLURM): then a
    job may show its progress bar."""
    if engine.kind in ("executor", "slurm"):
        return False
    return engine.kind == "serial" or engine.n_workers(n_jobs) == 1


def build_denoiser(net: NetSpec, seed: int | None = None):
    """The untrained ``Denoiser(ScoreMLP(...))`` or ``Denoiser(ScoreUNet(...))`` of ``net``
    (initial weights from ``seed`` when the network accepts one)."""
    from physdiff.nn import Denoiser, ScoreMLP, ScoreUNet

    cls = ScoreMLP if net.kind == "mlp" else ScoreUNet
    kw: dict[str, Any] = {}
    if net.conditional:
        kw["n_classes"] = net.n_classes
    if seed is not None and "seed" in inspect.signature(cls).parameters:
        kw["seed"] = int(seed)
    if net.kind == "mlp":
        kw.update(hidden=net.hidden, depth=net.depth, embed_dim=net.embed_dim)
        model = ScoreMLP(net.dim, **kw)
    else:
        model = ScoreUNet(net.image_shape, base_channels=net.base_channels, **kw)
    return Denoiser(model, parametrisation=net.parametrisation, sigma_data=net.sigma_data)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(n)`` (``n = 0``: leave it as it is).

    Small MLPs run fastest on one CPU thread, and on a loaded machine several threads per
    process spin against each other (a 100 x 64 forward pass measured 0.3 ms on one thread
    and 200 ms on two here, under load): parallelism comes from the sweep's processes.
    """
    import torch

    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_training(job: Any, denoiser: Any, progress: bool, labels: Any = None):
    """Train (or resume, or find finished) ``denoiser`` on ``job.data`` with ``job``'s
    spec, seed, device, threads and checkpoint folder (a :class:`TrainJob` or any job with
    those fields; ``labels`` for a class-conditional one)."""
    from physdiff.nn import TrainConfig, train

    with torch_threads(job.threads):
        cfg = TrainConfig(**asdict(job.train), seed=job.seed, device=job.device)
        Path(job.checkpoint_dir).mkdir(parents=True, exist_ok=True)
        return train(
            denoiser,
            job.data,
            cfg,
            labels=labels,
            checkpoint_dir=job.checkpoint_dir,
            progress=progress,
        )


def summarize(job: Any, res: Any) -> TrainSummary:
    """The :class:`TrainSummary` of ``job``'s finished :class:`physdiff.nn.TrainResult`
    ``res``: the final loss is the mean of the last 5% of the losses (NaN without any)."""
    losses = np.asarray(res.losses, dtype=np.float64)
    tail = losses[-max(1, len(losses) // 20) :] if losses.size else np.array([np.nan])
    return TrainSummary(
        name=job.name,
        checkpoint_dir=job.checkpoint_dir,
        steps=int(res.steps),
        seconds=float(res.seconds),
        samples_per_second=float(res.samples_per_second),
        final_loss=float(np.mean(tail)),
    )


def _train(job: Any, progress: bool):
    return run_training(job, job.net.build(job.seed), progress, labels=getattr(job, "labels", None))


def train_job(job: TrainJob) -> TrainSummary:
    """Train (or resume, or find finished) ``job``; the sweep's job function."""
    return summarize(job, _train(job, job.progress))


# -- a sweep's trainings as ensembles --------------------------------------------------------
MAX_MEMBERS = 64
"""At most this many networks in one ensemble (the rest of a group goes into further ones)."""


@dataclass(frozen=True, eq=False)
class EnsembleJob:
    """Trainings of one architecture and one set of shared settings, run as one
    :func:`physdiff.nn.train_ensemble` (picklable, like its members)."""

    members: tuple
    checkpoint_dir: str
    threads: int = 0
    progress: bool = False


def _shared_key(job: Any) -> tuple:
    """What members of one ensemble must share: the network (architecture and
    preconditioning), the step count, batch size, checkpoint interval, autocast, the
    device and the thread count (:data:`physdiff.nn.ensemble.SHARED_FIELDS`)."""
    t = job.train
    return (
        type(job.net).__name__,
        repr(job.net),
        t.steps,
        t.batch_size,
        t.checkpoint_every,
        t.amp,
        job.device,
        job.threads,
    )


def _finished(job: Any) -> bool:
    """Whether the job's own checkpoint exists and has reached its step count."""
    path = Path(job.checkpoint_dir) / "checkpoint.pt"
    if not path.is_file():
        return False
    import torch

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: let train() report it
        return False
    return int(ck.get("step", -1)) >= job.train.steps


def ensemble_jobs(
    jobs: Any, max_members: int = MAX_MEMBERS, *, check_finished: bool = True
) -> list[EnsembleJob]:
    """The unfinished ``jobs`` grouped into ensembles (:func:`_shared_key`), at most
    ``max_members`` each, in the order the groups first appear (``check_finished=False``:
    every job, finished or not); each ensemble's checkpoint
    folder sits beside its first member's and is named by a hash of its members' folders."""
    groups: dict[tuple, list] = {}
    for job in jobs:
        if not (check_finished and _finished(job)):
            groups.setdefault(_shared_key(job), []).append(job)
    out = []
    for members in groups.values():
        for i in range(0, len(members), max_members):
            chunk = tuple(members[i : i + max_members])
            blob = "\n".join(j.checkpoint_dir for j in chunk).encode()
            key = hashlib.sha256(blob).hexdigest()[:12]
            root = Path(chunk[0].checkpoint_dir).parent
            out.append(
                EnsembleJob(
                    members=chunk,
                    checkpoint_dir=str(root / f"ensemble-{key}"),
                    # a lone network keeps its job's thread count (small MLPs run fastest
                    # on one thread); a batched step has products worth every core the
                    # process may use (torch's default: all of them, or the share a
                    # worker process was given, see validation.sweep)
                    threads=chunk[0].threads if len(chunk) == 1 else 0,
                    progress=any(j.progress for j in chunk),
                )
            )
    return out


def train_ensemble_job(ens: EnsembleJob) -> int:
    """Train one :class:`EnsembleJob` (or resume it); each member's final state goes to its
    own checkpoint folder, where :func:`load_trained` finds it. Returns the member count."""
    from physdiff.nn import TrainConfig, train_ensemble

    jobs = ens.members
    with torch_threads(ens.threads):
        train_ensemble(
            [j.net.build(j.seed) for j in jobs],
            [j.data for j in jobs],
            [TrainConfig(**asdict(j.train), seed=j.seed, device=j.device) for j in jobs],
            labels=[getattr(j, "labels", None) for j in jobs],
            checkpoint_dir=ens.checkpoint_dir,
            member_dirs=[j.checkpoint_dir for j in jobs],
            progress=ens.progress,
        )
    return len(jobs)


class PlannedTrainings(Exception):
    """Raised by :func:`train_jobs` inside :func:`stop_before_training`, holding the jobs."""

    def __init__(self, jobs: list):
        super().__init__(f"{len(jobs)} trainings planned")
        self.jobs = jobs


_PLANNING = False


@contextmanager
def stop_before_training() -> Iterator[None]:
    """Within this block :func:`train_jobs` trains nothing: it raises
    :class:`PlannedTrainings` with its jobs (:mod:`validation.plan`)."""
    global _PLANNING
    old, _PLANNING = _PLANNING, True
    try:
        yield
    finally:
        _PLANNING = old


def train_jobs(
    jobs: Any,
    engine: Any = None,
    *,
    desc: str = "training",
    max_members: int = MAX_MEMBERS,
) -> list[TrainSummary]:
    """Train every job of a sweep, the unfinished ones as ensembles grouped by architecture
    and shared settings (:func:`ensemble_jobs`, :func:`physdiff.nn.train_ensemble`), the
    ensembles run on ``engine`` (:func:`validation.sweep.map_jobs`: one after another, in
    worker processes, or as SLURM jobs); then the summary of each job, in order. A job is
    a :class:`TrainJob` or any job with ``net.build(seed)``, ``train``, ``data``, ``seed``,
    ``device``, ``checkpoint_dir``, ``threads`` and optionally ``labels``."""
    from .sweep import map_jobs

    jobs = list(jobs)
    if _PLANNING:
        raise PlannedTrainings(jobs)
    groups = ensemble_jobs(jobs, max_members)
    map_jobs(train_ensemble_job, groups, engine, desc=desc, progress=len(groups) > 1)
    return [summarize(j, load_trained(j)) for j in jobs]


def load_trained(job: TrainJob):
    """The :class:`physdiff.nn.TrainResult` of a finished job (trains first if it is not)."""
    return _train(job, progress=False)


def load_network(job: TrainJob, device: str):
    """The trained network of a finished ``job`` (trained first if it is not) as a
    :class:`physdiff.nn.NetworkScoreModel` on ``device``."""
    from physdiff.nn import NetworkScoreModel

    return NetworkScoreModel(load_trained(job).denoiser, device=device)


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Limit numpy's BLAS pools to ``n`` threads (``n = 0``: leave them). On a loaded
    2-core machine two BLAS threads wait on each other: a (1438, 65) x (65, 10) product
    measured 8 ms instead of 60 us, and the exact mixture score ran 15x slower."""
    if n <= 0:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        ctx = nullcontext()
    else:
        ctx = threadpool_limits(limits=int(n), user_api="blas")
    with ctx:
        yield


@contextmanager
def limited_threads(config: Any) -> Iterator[None]:
    """Run an experiment under its config's ``training.threads`` (or ``threads``: torch)
    and ``blas_threads`` (numpy's BLAS) limits; a config without one of the fields leaves
    that pool alone."""
    threads = getattr(getattr(config, "training", config), "threads", 0)
    with (
        torch_threads(threads),
        blas_threads(getattr(config, "blas_threads", 0)),
    ):
        yield
