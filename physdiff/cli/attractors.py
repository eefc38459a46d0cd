"""``physdiff attractors``: the end points of deterministic generation
(:func:`physdiff.association.attractor_report`).

    physdiff attractors --points circle --n-train 12
    physdiff attractors --points gaussian-points --n-train 20 --d 2 --seed 0 --json
    physdiff attractors --points digits --n-train 100 --n-samples 1000
    physdiff attractors --checkpoint runs/net --arch mlp --d 2 --train points.npy

The model is the exact empirical score of a named training set
(:func:`physdiff.examples.point_set`) or a trained network read from a checkpoint
(:func:`physdiff.nn.from_checkpoint.network_from_checkpoint`, the architecture read from
the weights).
"""

from __future__ import annotations

from ..examples import POINT_SETS
from . import _args as A
from ._args import UsageError, bounded, choice, emit, integer, option

NAME = "attractors"
FLAGS = {"dim": "--d", "n": "--n-samples", "k": "--n-train"}
HELP = "attractors of deterministic generation: count, stability, memorised fraction"
ARCHES = ("mlp", "unet")

DESCRIPTION = """\
Run --n-samples probability-flow (Heun) trajectories of --process in one batch down to the
noise level --delta-end, refine their end points with the iterated denoiser, deduplicate
them into attractors, test each attractor's stability (score Jacobian) and classify the end
points against the training set: memorised (a training point within c_m s), spurious (not
memorised, but at least min_neighbours other end points within c_s s) or generalised; s is
the training set's median nearest-neighbour spacing (docs/theory.md section 5). The model is
the exact empirical score of a named training set (--points), which only memorises, or a
trained network (--checkpoint). The default process, edm, has the smallest noise (sigma =
0.002): it resolves the closest memories."""
EPILOG = """\
Training sets: circle (K equally spaced points on the unit circle, d = 2), gaussian-points
(K points drawn from N(0, I_d) with --seed; d = --d, default 2), digits (K of the 1438
standardised 8x8 training digits, a permutation drawn with --seed); K is --n-train. A
checkpoint of physdiff.nn.train needs --arch and --d (the network's data dimension); its
training set, for the classification, comes from --train FILE.npy or --points. Examples:
physdiff attractors --points circle --n-train 12; physdiff attractors --checkpoint runs/net
--arch mlp --d 2 --train points.npy --json."""


def register(subparsers) -> None:
    p = A.add_command(subparsers, NAME, HELP, DESCRIPTION, EPILOG)
    src = p.add_argument_group("model and training set")
    option(
        src,
        "--points",
        "NAME",
        f"a named training set ({', '.join(POINT_SETS)}); without --checkpoint its exact "
        "empirical score is the model",
        type=choice(POINT_SETS, "training set"),
    )
    A.add_flag(src, "n_train")
    A.add_flag(src, "dimension")
    A.add_flag(src, "seed", default=0)
    option(src, "--checkpoint", "PATH", "a physdiff.nn checkpoint file or its folder", type=None)
    src.add_argument("--arch", type=choice(ARCHES, "architecture"), help="mlp or unet")
    option(
        src, "--image-shape", "C,H,W", "image shape of a unet (default 1,H,W, H*W = --d)", type=None
    )
    option(
        src,
        "--base-channels",
        "C",
        "unet base channels (default: read from the checkpoint)",
        type=integer,
    )
    src.add_argument(
        "--parametrisation",
        default="edm",
        choices=["edm", "eps", "x0", "score"],
        help="the network's denoiser parametrisation (edm)",
    )
    option(src, "--sigma-data", "S", "the network's sigma_data (1)", default=1.0)
    option(src, "--train", "FILE", "training set of the network: .npy array (K, d)", type=None)
    src.add_argument(
        "--device", default="cpu", help="torch device of the network (cpu, cuda, auto; cpu)"
    )
    run_ = p.add_argument_group("search and classification")
    A.add_flag(run_, "n_samples", default=512)
    A.add_flag(run_, "process", default="edm")
    A.add_flag(run_, "steps", default=60)
    option(
        run_,
        "--delta-end",
        "D",
        "final noise level of the sampler and of the refinement (default: (0.05 s)^2, at "
        "least the process's smallest)",
    )
    option(
        run_,
        "--max-iter",
        "M",
        "at most M denoiser iterations refine each end point; a point stops when its last "
        "update is below --refine-tol times s, the others are reported as not converged "
        "(1000; 0: no refinement, the sampler's end points)",
        type=bounded(0, 10**7),
        default=1000,
    )
    option(
        run_,
        "--refine-tol",
        "T",
        "convergence tolerance of the refinement in units of s (1e-8; about 1e-5 for a "
        "float32 network)",
        default=1e-8,
    )
    option(run_, "--dedup", "C", "end points within C s share an attractor (0.05)", default=0.05)
    option(run_, "--c-m", "C", "memorised within C s (0.25)", default=0.25)
    option(run_, "--c-s", "C", "spurious cluster radius C s (0.25)", default=0.25)
    option(
        run_,
        "--min-neighbours",
        "M",
        "neighbours that make a cluster spurious (default: the count reached by chance with "
        "probability below 1%%, from N, K and the training set's intrinsic dimension)",
        type=bounded(1, None),
    )
    option(
        run_,
        "--rows",
        "R",
        "attractors listed in the table (20)",
        type=bounded(0, 10**6),
        default=20,
    )
    A.add_flag(p, "json")


# ---------------------------------------------------------------------------------------
# the checks and the model
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
            raise UsageError(f"argument {name}: must be a positive number; got {v:g}")
    if args.delta_end is not None and not args.delta_end > 0:
        raise UsageError(f"argument --delta-end: must be a positive number; got {args.delta_end:g}")
    if args.n_samples > 10**6:
        raise UsageError(f"argument --n-samples: at most 10^6 trajectories; got {args.n_samples}")
    if args.points is None and args.checkpoint is None:
        raise UsageError("argument --points: give --points NAME (with --n-train) or --checkpoint")
    if args.points is not None and args.n_train is None:
        raise UsageError(f"argument --n-train: required with --points {args.points}")
    if args.n_train is not None and args.points is None:
        raise UsageError("argument --n-train: goes with --points")
    A.single(args, "n_train")
    if args.n_train is not None:
        if not float(args.n_train).is_integer():
            raise UsageError(f"argument --n-train: not an integer: {args.n_train:g}")
        args.n_train = int(args.n_train)
    if args.train is not None and args.checkpoint is None:
        raise UsageError("argument --train: goes with --checkpoint (--points is its own data)")
    if args.train is not None and args.points is not None:
        raise UsageError("argument --train: give either --train or --points as the training set")
    if args.checkpoint is None:
        for name in ("arch", "image_shape", "base_channels"):
            if getattr(args, name) is not None:
                raise UsageError(f"argument --{name.replace('_', '-')}: goes with --checkpoint")


def _load_train(path: str, dim: int):
    import numpy as np

    arr = A.read_array(path, "--train", text=False)
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] < 2:
        raise UsageError(
            f"argument --train: expected shape (K, {dim}) with K >= 2; got {arr.shape} in {path!r}"
        )
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"argument --train: {path!r} holds NaN or inf")
    return arr


def network(args):
    """The checkpoint's network as a score model
    (:func:`physdiff.nn.from_checkpoint.network_from_checkpoint`)."""
    if args.arch is None:
        raise UsageError("argument --arch: required with --checkpoint (mlp or unet)")
    if args.d is None:
        raise UsageError("argument --d: required with --checkpoint (the data dimension, >= 1)")
    shape = None
    if args.image_shape is not None:
        try:
            shape = tuple(int(v) for v in args.image_shape.split(","))
        except ValueError:
            raise UsageError(
                f"argument --image-shape: expected C,H,W; got {args.image_shape!r}"
            ) from None
    from ..nn.from_checkpoint import network_from_checkpoint

    return network_from_checkpoint(
        args.checkpoint,
        args.arch,
        args.d,
        image_shape=shape,
        base_channels=args.base_channels,
        parametrisation=args.parametrisation,
        sigma_data=args.sigma_data,
        device=args.device,
    )


# ---------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------
def run(args) -> int:
    from ..association import attractor_report
    from ..errors import InputError
    from ..examples import point_set

    _check(args)
    train = None
    if args.points is not None:
        train = point_set(args.points, args.n_train, d=args.d, seed=args.seed)
    if args.checkpoint is not None:
        model = network(args)
        if args.train is not None:
            train = _load_train(args.train, model.dim)
        source = {"checkpoint": str(args.checkpoint), "arch": args.arch}
        if args.points is not None:
            source.update(ensemble=args.points, k=args.n_train, seed=args.seed)
    else:
        from ..ensembles import Empirical

        model = Empirical(train)
        source = {"ensemble": args.points, "k": args.n_train, "seed": args.seed, "model": "exact"}
    if train is not None:
        source["k"] = int(train.shape[0])
    try:
        rep = attractor_report(
            model,
            train,
            n=args.n_samples,
            **A.pick(args, "seed", "process", "steps", "delta_end", "dedup", "c_m", "c_s"),
            **A.pick(args, "min_neighbours", "max_iter", "refine_tol"),
        )
    except InputError as exc:  # e.g. --delta-end outside the process's range
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "delta" in msg and args.delta_end is not None:
            raise UsageError(f"argument --delta-end: {msg}") from None
        raise
    return emit(NAME, args, {"source": source, **rep.to_dict()}, lambda r: table(r, args.rows))


def table(res: dict, max_rows: int) -> str:
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
