"""The ``physdiff attractors`` subcommand: the end points of deterministic generation.

    physdiff attractors --ensemble circle --k 12
    physdiff attractors --ensemble gaussian-points --k 20 --d 2 --seed 0 --json
    physdiff attractors --ensemble digits --k 100 --n 1000
    physdiff attractors --checkpoint runs/net --arch mlp --dim 2 --train points.npy

It runs :func:`physdiff.association.find_attractors` (one batched Heun probability-flow
call, the iterated denoiser at ``delta_end``, deduplication, stability from the score
Jacobian) on the exact empirical score of a named training set or on a trained network
(:func:`physdiff.nn.load_checkpoint`), and classifies the refined end points with
:func:`physdiff.association.classify_samples` against the training set (memorised,
spurious, generalised). Wiring: :func:`add_parser` adds the subcommand to the ``physdiff``
parser, :func:`run` executes it. Bad input gives one line on stderr naming the argument
and exit status 2. Nothing heavy is imported until the command runs.
"""

from __future__ import annotations

import argparse
import math
import warnings

from ._cli_args import UsageError as _Usage
from ._cli_args import choice as _choice
from ._cli_args import integer as _int
from ._cli_args import json_number as _num
from ._cli_args import number as _number
from ._cli_args import process_name as _process
from ._cli_args import run_command

__all__ = ["add_parser", "run", "attractors", "named_points", "ENSEMBLES", "ARCHES"]

EXIT_OK, EXIT_USAGE = 0, 2
ENSEMBLES = ("circle", "gaussian-points", "digits")
ARCHES = ("mlp", "unet")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``attractors`` to the ``physdiff`` sub-parsers; returns the new parser."""
    from .processes import PRESETS

    names = ", ".join(PRESETS)
    p = subparsers.add_parser(
        "attractors",
        help="attractors of deterministic generation: count, stability, memorised fraction",
        description="Run n probability-flow (Heun) trajectories in one batch down to the "
        "noise level --delta-end, refine their end points with the iterated denoiser, "
        "deduplicate them into attractors, test each attractor's stability (score "
        "Jacobian) and classify the end points against the training set: memorised "
        "(a training point within c_m s), spurious (not memorised, but at least "
        "min_neighbours other end points within c_s s) or generalised; s is the training "
        "set's median nearest-neighbour spacing (THEORY.md section 5). The model is the "
        "exact empirical score of a named training set (--ensemble), which only "
        "memorises, or a trained network (--checkpoint).",
        epilog="Ensembles: circle (K equally spaced points on the unit circle, d = 2), "
        "gaussian-points (K points drawn from N(0, I_d) with --seed), digits (K of the "
        "1438 standardised 8x8 training digits, a permutation drawn with --seed). A "
        "checkpoint of physdiff.nn.train needs --arch and --dim; its training set, for the "
        f"classification, comes from --train FILE.npy or --ensemble. Processes: {names}. "
        "Examples: physdiff attractors --ensemble circle --k 12; physdiff attractors "
        "--checkpoint runs/net --arch mlp --dim 2 --train points.npy --json.",
    )
    src = p.add_argument_group("model and training set")
    src.add_argument(
        "--ensemble",
        type=_choice(ENSEMBLES, "ensemble"),
        metavar="NAME",
        help=f"a named training set ({', '.join(ENSEMBLES)}); without --checkpoint its exact "
        "empirical score is the model",
    )
    src.add_argument("--k", type=_int, metavar="K", help="number of training points (>= 2)")
    src.add_argument("--d", type=_int, metavar="D", help="dimension of gaussian-points (default 2)")
    src.add_argument(
        "--seed", type=_int, default=0, metavar="S", help="seed of the data and the sampler (0)"
    )
    src.add_argument(
        "--checkpoint", metavar="PATH", help="a physdiff.nn checkpoint file or its folder"
    )
    src.add_argument("--arch", type=_choice(ARCHES, "architecture"), help="mlp or unet")
    src.add_argument("--dim", type=_int, metavar="D", help="data dimension of the network")
    src.add_argument(
        "--image-shape",
        metavar="C,H,W",
        help="image shape of a unet (default 1,H,W with H*W = --dim)",
    )
    src.add_argument(
        "--base-channels",
        type=_int,
        metavar="C",
        help="unet base channels (default: read from the checkpoint)",
    )
    src.add_argument(
        "--parametrisation",
        default="edm",
        choices=["edm", "eps", "x0", "score"],
        help="the network's denoiser parametrisation (edm)",
    )
    src.add_argument(
        "--sigma-data", type=_number, default=1.0, metavar="S", help="the network's sigma_data (1)"
    )
    src.add_argument(
        "--train", metavar="FILE", help="training set of the network: .npy array (K, d)"
    )
    src.add_argument(
        "--device", default="cpu", help="torch device of the network (cpu, cuda, auto; cpu)"
    )
    run_ = p.add_argument_group("search and classification")
    run_.add_argument(
        "--n", type=_int, default=512, metavar="N", help="number of trajectories (512)"
    )
    run_.add_argument(
        "--process",
        type=_process,
        default="edm",
        metavar="PROC",
        help=f"the process of the sampler ({names}; default edm: its smallest noise, "
        "sigma = 0.002, resolves the closest memories)",
    )
    run_.add_argument("--steps", type=_int, default=60, metavar="S", help="Heun steps (60)")
    run_.add_argument(
        "--delta-end",
        type=_number,
        metavar="D",
        help="final noise level of the sampler and of the refinement (default: (0.05 s)^2, "
        "at least the process's smallest)",
    )
    run_.add_argument(
        "--max-iter",
        type=_int,
        default=1000,
        metavar="M",
        help="at most M denoiser iterations refine each end point; a point stops when its "
        "last update is below --refine-tol times s, the others are reported as not "
        "converged (1000; 0: no refinement, the sampler's end points)",
    )
    run_.add_argument(
        "--refine-tol",
        type=_number,
        default=1e-8,
        metavar="T",
        help="convergence tolerance of the refinement in units of s (1e-8; about 1e-5 for "
        "a float32 network)",
    )
    run_.add_argument(
        "--dedup",
        type=_number,
        default=0.05,
        metavar="C",
        help="end points within C s share an attractor (0.05)",
    )
    run_.add_argument(
        "--c-m", type=_number, default=0.25, metavar="C", help="memorised within C s (0.25)"
    )
    run_.add_argument(
        "--c-s", type=_number, default=0.25, metavar="C", help="spurious cluster radius C s (0.25)"
    )
    run_.add_argument(
        "--min-neighbours",
        type=_int,
        metavar="M",
        help="neighbours that make a cluster spurious (default: the count reached by chance "
        "with probability below 1%%, from N, K and the training set's intrinsic dimension)",
    )
    run_.add_argument(
        "--rows", type=_int, default=20, metavar="R", help="attractors listed in the table (20)"
    )
    run_.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
def named_points(name: str, k: int, *, d: int | None = None, seed: int = 0):
    """The training set of a named ensemble as an ``(k, d)`` float64 array.

    ``circle``: ``k`` equally spaced points on the unit circle (d = 2); ``gaussian-points``:
    ``k`` draws from ``N(0, I_d)`` with ``numpy.random.default_rng(seed)``; ``digits``: the
    first ``k`` rows of the standardised digits training split (``physdiff.data.
    load_digits()``, 1438 images, d = 64) after a permutation drawn with
    ``numpy.random.default_rng(seed)``. Raises :class:`InputError` naming ``--k`` or
    ``--d`` when they are out of range.
    """
    import numpy as np

    from .errors import InputError

    if name not in ENSEMBLES:
        raise InputError(f"--ensemble: unknown ensemble {name!r}; choose from {ENSEMBLES}")
    if not isinstance(k, int) or k < 2:
        raise InputError(f"--k must be an integer >= 2 (classification needs two points); got {k}")
    if name != "gaussian-points" and d is not None:
        fixed = 2 if name == "circle" else 64
        if d != fixed:
            raise InputError(f"--d: the {name} ensemble has d = {fixed}; got {d}")
    if name == "circle":
        if k > 10**6:
            raise InputError(f"--k must lie in [2, 10^6] for circle; got {k}")
        th = 2 * np.pi * np.arange(k) / k
        return np.stack([np.cos(th), np.sin(th)], axis=1)
    if name == "gaussian-points":
        d = 2 if d is None else d
        if not 1 <= d <= 10**5:
            raise InputError(f"--d must lie in [1, 10^5]; got {d}")
        if k * d > 10**8:
            raise InputError(f"--k times --d must stay below 10^8; got {k} x {d}")
        return np.random.default_rng(seed).standard_normal((k, d))
    from .data import load_digits

    ds = load_digits()
    n = ds.train.shape[0]
    if k > n:
        raise InputError(f"--k must lie in [2, {n}] for digits (its training split); got {k}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.array(ds.train[perm[:k]], dtype=np.float64)


def _load_train(path: str, dim: int):
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Usage(f"argument --train: cannot read {path!r}: {msg}") from None
    if not isinstance(arr, np.ndarray):
        raise _Usage(f"argument --train: {path!r} must be a .npy array of shape (K, {dim})")
    arr = np.asarray(arr, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] < 2:
        raise _Usage(
            f"argument --train: expected shape (K, {dim}) with K >= 2; got {arr.shape} in {path!r}"
        )
    if not np.all(np.isfinite(arr)):
        raise _Usage(f"argument --train: {path!r} holds NaN or inf")
    return arr


def _network(args):
    """The checkpoint's denoiser as a ``NetworkScoreModel`` (architecture from the
    checkpoint's weights for an MLP: hidden width, depth, embedding, classes)."""
    from pathlib import Path

    p = Path(args.checkpoint)
    if not (p.is_file() or (p.is_dir() and (p / "checkpoint.pt").is_file())):
        raise _Usage(f"argument --checkpoint: no checkpoint at {str(p)!r}")
    if args.arch is None:
        raise _Usage("argument --arch: required with --checkpoint (mlp or unet)")
    if args.dim is None or args.dim < 1:
        raise _Usage("argument --dim: required with --checkpoint (the data dimension, >= 1)")
    import torch

    from .errors import InputError
    from .nn import Denoiser, NetworkScoreModel, ScoreMLP, ScoreUNet, load_checkpoint

    file = p if p.is_file() else p / "checkpoint.pt"
    try:
        ck = torch.load(file, map_location="cpu", weights_only=True)
        state = ck["ema"]
    except Exception as exc:  # unreadable or not ours: load_checkpoint says which below
        state, err = None, exc
    if args.arch == "mlp":
        if state is None:
            raise _Usage(f"argument --checkpoint: cannot read {str(file)!r}: {_first_line(err)}")
        try:
            hidden, dim = state["net.inp.weight"].shape
            embed = state["net.cond.mlp.0.weight"].shape[1]
            depth = len({k.split(".")[2] for k in state if k.startswith("net.blocks.")})
            emb = state.get("net.cond.classes.weight")
        except (KeyError, IndexError, AttributeError):
            raise _Usage(
                f"argument --arch: {str(file)!r} does not hold a ScoreMLP (try --arch unet)"
            ) from None
        if dim != args.dim:
            raise _Usage(f"argument --dim: the checkpoint's network has dim {dim}; got {args.dim}")
        n_classes = None if emb is None else int(emb.shape[0]) - 1
        net = ScoreMLP(
            args.dim, hidden=int(hidden), depth=depth, n_classes=n_classes, embed_dim=int(embed)
        )
    else:
        shape = _image_shape(args)
        try:
            base = int(state["net.conv_in.weight"].shape[0]) if state is not None else None
            embed = int(state["net.cond.mlp.0.weight"].shape[1]) if state is not None else None
            attention = state is None or any(".qkv." in k for k in state)
            emb = None if state is None else state.get("net.cond.classes.weight")
        except (KeyError, IndexError, AttributeError):
            raise _Usage(
                f"argument --arch: {str(file)!r} does not hold a ScoreUNet (try --arch mlp)"
            ) from None
        if args.base_channels is not None:
            base = args.base_channels
        n_classes = None if emb is None else int(emb.shape[0]) - 1
        net = ScoreUNet(
            shape,
            base_channels=base or 32,
            n_classes=n_classes,
            embed_dim=embed,
            attention=attention,
        )
    try:
        den = Denoiser(net, parametrisation=args.parametrisation, sigma_data=args.sigma_data)
        load_checkpoint(file, den)
        return NetworkScoreModel(den, device=args.device)
    except InputError as exc:  # torch's mismatch report spans lines: keep the first
        raise _Usage(f"argument --checkpoint: {_first_line(exc)}") from None
    except RuntimeError as exc:  # e.g. an unavailable device
        raise _Usage(f"argument --device: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _image_shape(args) -> tuple[int, int, int]:
    if args.image_shape is None:
        side = math.isqrt(args.dim)
        if side * side != args.dim:
            raise _Usage(
                f"argument --image-shape: required when --dim ({args.dim}) is not a square"
            )
        return (1, side, side)
    try:
        shape = tuple(int(v) for v in args.image_shape.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or math.prod(shape) != args.dim:
        raise _Usage(
            f"argument --image-shape: expected C,H,W with C*H*W = --dim ({args.dim}); "
            f"got {args.image_shape!r}"
        )
    return shape  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------------------
def attractors(
    model,
    train,
    *,
    n: int = 512,
    seed: int = 0,
    process: str = "edm",
    steps: int = 60,
    delta_end: float | None = None,
    dedup: float = 0.05,
    c_m: float = 0.25,
    c_s: float = 0.25,
    min_neighbours: int | None = None,
    max_iter: int = 1000,
    refine_tol: float = 1e-8,
) -> dict:
    """The data behind ``physdiff attractors`` (JSON-ready): ``find_attractors`` on
    ``model`` with the training set's spacing as scale, then ``classify_samples`` of the
    refined end points against ``train`` (``None``: no classification)."""
    import numpy as np

    from . import association as A

    scale = A.nearest_neighbour_spacing(train) if train is not None else 1.0
    rng = np.random.default_rng([seed, 1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        att = A.find_attractors(
            model,
            n,
            rng,
            process=process,
            n_steps=steps,
            delta_end=delta_end,
            scale=scale,
            dedup=dedup,
            max_iter=max_iter,
            refine_tol=refine_tol,
        )
    notes = []
    if delta_end is None and att.delta > 1.001 * (0.05 * scale) ** 2:
        notes.append(
            f"delta_end = (0.05 s)^2 = {(0.05 * scale) ** 2:.3g} is below the smallest noise "
            f"of {process}; the search stopped at {att.delta:.3g}, where memories closer "
            f"than about {2 * math.sqrt(att.delta):.3g} merge"
            + (" (--process edm reaches 4e-06)" if process != "edm" else "")
        )
    else:  # any other warning of the search is passed on as a note
        notes += [str(c.message) for c in caught if issubclass(c.category, UserWarning)]
    if att.n_unconverged:
        notes.append(
            f"{att.n_unconverged} of {n} end points did not converge within --max-iter "
            f"{max_iter} denoiser iterations (last update above {refine_tol:g} s); on a trained "
            "network (float32) raise --refine-tol to about 1e-5; the iteration can also "
            "drift along the learned manifold: try a small --max-iter, or 0"
        )
    out: dict = {
        "dim": int(model.dim),
        "n": int(n),
        "process": process,
        "steps": int(steps),
        "delta_end": att.delta,
        "scale": scale,
        "dedup_radius": dedup * scale,
        "n_attractors": int(att.points.shape[0]),
        "n_stable": int(np.sum(att.stable)),
        "max_iter": int(max_iter),
        "n_unconverged": att.n_unconverged,
    }
    labels = None
    if train is not None:
        cl = A.classify_samples(att.samples, train, c_m=c_m, c_s=c_s, min_neighbours=min_neighbours)
        labels = cl.labels
        out["classification"] = {
            "fractions": cl.fractions,
            "stderr": cl.stderr,
            "spacing": cl.spacing,
            "delta_m": cl.delta_m,
            "delta_s": cl.delta_s,
            "min_neighbours": cl.min_neighbours,
            "intrinsic_dim": _num(cl.intrinsic_dim),
            "chance_neighbours": _num(cl.chance_neighbours),
        }
        from .ensembles import Empirical

        nearest, dist = Empirical(train).nearest(att.points)
    rows = []
    for i in np.argsort(-att.counts, kind="stable"):
        row: dict = {
            "count": int(att.counts[i]),
            "stable": bool(att.stable[i]),
            "top_eigenvalue": _num(att.top_eigenvalue[i]),
            "point": [float(v) for v in att.points[i]],
        }
        if labels is not None:
            lab = np.bincount(labels[att.labels == i], minlength=3)
            row["class"] = A.Classification.LABELS[int(np.argmax(lab))]
            row["nearest_training_point"] = int(nearest[i])
            row["distance"] = float(dist[i])
        rows.append(row)
    out["attractors"] = rows
    if notes:
        out["note"] = "; ".join(notes)
    return out


# ---------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------
def _check(args) -> None:
    for name, v in (
        ("--c-m", args.c_m),
        ("--c-s", args.c_s),
        ("--dedup", args.dedup),
        ("--refine-tol", args.refine_tol),
        ("--sigma-data", args.sigma_data),
    ):
        if not v > 0:
            raise _Usage(f"argument {name}: must be a positive number; got {v:g}")
    if args.delta_end is not None and not args.delta_end > 0:
        raise _Usage(f"argument --delta-end: must be a positive number; got {args.delta_end:g}")
    for name, v, lo, hi in (
        ("--n", args.n, 1, 10**6),
        ("--steps", args.steps, 1, 10**5),
        ("--max-iter", args.max_iter, 0, 10**7),
        ("--rows", args.rows, 0, 10**6),
    ):
        if not lo <= v <= hi:
            raise _Usage(f"argument {name}: must be an integer in [{lo}, {hi}]; got {v}")
    if args.min_neighbours is not None and args.min_neighbours < 1:
        raise _Usage(
            f"argument --min-neighbours: must be an integer >= 1; got {args.min_neighbours}"
        )
    if args.seed < 0:
        raise _Usage(f"argument --seed: must be an integer >= 0; got {args.seed}")
    if args.ensemble is None and args.checkpoint is None:
        raise _Usage("give --ensemble NAME (with --k) or --checkpoint PATH")
    if args.ensemble is not None and args.k is None:
        raise _Usage(f"argument --k: required with --ensemble {args.ensemble}")
    if args.k is not None and args.ensemble is None:
        raise _Usage("argument --k: goes with --ensemble")
    if args.train is not None and args.checkpoint is None:
        raise _Usage("argument --train: goes with --checkpoint (an ensemble is its own data)")
    if args.train is not None and args.ensemble is not None:
        raise _Usage("argument --train: give either --train or --ensemble as the training set")
    if args.checkpoint is None:
        for name in ("arch", "dim", "image_shape", "base_channels"):
            if getattr(args, name) is not None:
                raise _Usage(f"argument --{name.replace('_', '-')}: goes with --checkpoint")


def _compute(args) -> dict:
    from .errors import InputError

    _check(args)
    try:
        train = (
            named_points(args.ensemble, args.k, d=args.d, seed=args.seed)
            if args.ensemble is not None
            else None
        )
    except InputError as exc:
        msg = str(exc)
        raise _Usage(f"argument {msg}" if msg.startswith("--") else msg) from None
    if args.checkpoint is not None:
        model = _network(args)
        if args.train is not None:
            train = _load_train(args.train, model.dim)
        if train is not None and train.shape[1] != model.dim:
            raise _Usage(
                f"argument --ensemble: {args.ensemble} has d = {train.shape[1]} but the "
                f"network has dim {model.dim}"
            )
        source = {"checkpoint": str(args.checkpoint), "arch": args.arch}
        if args.ensemble is not None:
            source.update(ensemble=args.ensemble, k=args.k, seed=args.seed)
    else:
        from .ensembles import Empirical

        model = Empirical(train)
        source = {"ensemble": args.ensemble, "k": args.k, "seed": args.seed, "model": "exact"}
    if train is not None:
        source["k"] = int(train.shape[0])
    try:
        res = attractors(
            model,
            train,
            n=args.n,
            seed=args.seed,
            process=args.process,
            steps=args.steps,
            delta_end=args.delta_end,
            dedup=args.dedup,
            c_m=args.c_m,
            c_s=args.c_s,
            min_neighbours=args.min_neighbours,
            max_iter=args.max_iter,
            refine_tol=args.refine_tol,
        )
    except InputError as exc:  # e.g. --delta-end outside the process's range
        msg = str(exc)
        if "delta" in msg and args.delta_end is not None:
            raise _Usage(f"argument --delta-end: {msg}") from None
        raise _Usage(msg) from None
    return {"source": source, **res}


def run(args) -> int:
    """Execute ``physdiff attractors`` for parsed ``args``; returns the exit status."""
    return run_command("attractors", _compute, lambda res: _table(res, args.rows), args)


def _table(res: dict, max_rows: int) -> str:
    src = res["source"]
    if "checkpoint" in src:
        head = f"network {src['checkpoint']} ({src['arch']}, d = {res['dim']})"
        if "k" in src:
            head += f", training set of K = {src['k']}"
    else:
        head = f"exact empirical score of {src['ensemble']}: K = {src['k']} in d = {res['dim']}"
    lines = [
        head,
        f"{res['n']} Heun probability-flow trajectories on {res['process']} ({res['steps']} "
        f"steps) to delta_end = {res['delta_end']:.4g}, refined by the iterated denoiser "
        f"(at most {res['max_iter']} iterations; {res['n_unconverged']} not converged); "
        f"dedup radius {res['dedup_radius']:.4g}",
        f"attractors: {res['n_attractors']} ({res['n_stable']} stable)",
    ]
    cl = res.get("classification")
    if cl is not None:
        f, se = cl["fractions"], cl["stderr"]
        lines.append(
            "end points: "
            + ", ".join(f"{k} {f[k]:.3f} +- {se[k]:.3f}" for k in f)
            + f"  (s = {cl['spacing']:.4g}, delta_m = {cl['delta_m']:.4g}, delta_s = "
            f"{cl['delta_s']:.4g}, min_neighbours = {cl['min_neighbours']}"
            + (
                f" from intrinsic dimension {cl['intrinsic_dim']:g}"
                if cl.get("intrinsic_dim") is not None
                else ""
            )
            + ")"
        )
    if res.get("note"):
        lines.append(f"note: {res['note']}")
    rows = res["attractors"][:max_rows]
    if rows:
        show_pt = res["dim"] <= 3
        cols = f"{'#':>4} {'count':>6} {'stable':>6} {'top eig':>11}"
        if cl is not None:
            cols += f"  {'class':<11} {'nearest':>7} {'dist/s':>9}"
        if show_pt:
            cols += "  point"
        lines += ["", cols]
        for i, r in enumerate(rows):
            eig = "-" if r["top_eigenvalue"] is None else f"{r['top_eigenvalue']:.4g}"
            line = f"{i:>4} {r['count']:>6} {'yes' if r['stable'] else 'no':>6} {eig:>11}"
            if cl is not None:
                line += (
                    f"  {r['class']:<11} {r['nearest_training_point']:>7} "
                    f"{r['distance'] / cl['spacing']:>9.3g}"
                )
            if show_pt:
                line += "  (" + ", ".join(f"{v:.4g}" for v in r["point"]) + ")"
            lines.append(line)
        if len(res["attractors"]) > max_rows:
            lines.append(f"  ... {len(res['attractors']) - max_rows} more (--rows, --json)")
    return "\n".join(lines)
