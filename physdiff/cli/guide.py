"""``physdiff guide``: guided sampling of a named mixture and the measured removal of one
class (:func:`physdiff.removal.guided_removal`).

    physdiff guide --mixture four-1d --method dng-exact --remove 2 --scale 1 --json
    physdiff guide --mixture square-2d --method np --remove 3 --scale 2 --out-file samples.npy
"""

from __future__ import annotations

from ..examples import GUIDE_MIXTURES as MIXTURES
from ..examples import MIXTURES as SPECS
from . import _args as A
from ._args import UsageError, choice, emit, integer, option

NAME = "guide"
FLAGS = {"n": "--n-samples"}
HELP = "guided sampling of a named mixture: removed-class share, class KL, quality"
METHODS = ("cfg", "np", "dng", "dng-exact")  # physdiff.removal.METHODS

DESCRIPTION = """\
Sample a named Gaussian mixture (exact scores) with a guidance method and measure the
removal of class --remove (physdiff.metrics.guidance_metrics): the share of samples the
exact Bayes classifier puts into the class, the smoothed KL divergence from the target class
distribution over the kept classes to the generated one, and the sliced W2 distance to exact
samples of the kept classes (with the same distance between two exact samples as its floor).
Methods: cfg (classifier-free guidance toward the class: s + w (s_c - s)), np (negative
prompting, s - lambda (s_c - s)), dng-exact (dynamic negative guidance with the exact
posterior: lambda = 1 samples the mixture without the class), dng (tracked DNG: the
posterior followed along the chain, the method for networks;
physdiff.negative_guidance.TrackedDNG). Sampler: DDPM ancestral steps on --process.
--out-file FILE writes the samples (n, d) as .npy."""
EPILOG = (
    "Mixtures: "
    + "; ".join(f"{k}: {SPECS[k].about}" for k in MIXTURES)
    + ". For cfg the metrics still refer to --remove as 'the removed class': its share "
    "is the share of the class guided toward. Example: physdiff guide --mixture four-1d "
    "--method dng-exact --remove 2 --scale 1 --json."
)


def register(subparsers) -> None:
    p = A.add_command(subparsers, NAME, HELP, DESCRIPTION, EPILOG)
    option(
        p,
        "--mixture",
        "NAME",
        f"a named mixture ({', '.join(MIXTURES)}; default four-1d)",
        type=choice(MIXTURES, "mixture"),
        default="four-1d",
    )
    option(
        p,
        "--method",
        "M",
        f"guidance method ({', '.join(METHODS)})",
        type=choice(METHODS, "method"),
        required=True,
    )
    option(
        p,
        "--remove",
        "K",
        "the class removed (cfg: the class guided toward)",
        type=integer,
        required=True,
    )
    option(p, "--scale", "S", "guidance scale, >= 0 (1)", default=1.0)
    A.add_flag(p, "n_samples", default=2000)
    A.add_flag(p, "seed", default=0)
    A.add_flag(p, "process", default="ddpm")
    A.add_flag(p, "steps", default=500)
    option(p, "--prior", "P", "dng: the posterior at the start (default: the class weight)")
    option(p, "--tau", "T", "dng: tau (1)", default=1.0)
    option(p, "--p-max", "P", "dng: the cap of p (0.99)", default=0.99)
    A.add_flag(p, "out_file")
    A.add_flag(p, "json")


def _check(args) -> None:
    if args.n_samples < 2:
        raise UsageError(f"argument --n-samples: at least 2 samples; got {args.n_samples}")
    K = SPECS[args.mixture].n_classes
    if not 0 <= args.remove < K:
        raise UsageError(f"argument --remove: class index {args.remove} out of range [0, {K - 1}]")
    if not args.scale >= 0:
        raise UsageError(f"argument --scale: must be >= 0; got {args.scale:g}")
    if args.method != "dng":
        for opt, v, default in (("--prior", args.prior, None), ("--tau", args.tau, 1.0),
                                ("--p-max", args.p_max, 0.99)):  # fmt: skip
            if v != default:
                raise UsageError(f"argument {opt}: goes with --method dng")
        return
    if not 0 < args.p_max < 1:
        raise UsageError(f"argument --p-max: must lie in (0, 1); got {args.p_max:g}")
    if args.prior is not None and not 0 < args.prior <= args.p_max:
        raise UsageError(f"argument --prior: must lie in (0, --p-max]; got {args.prior:g}")
    if not args.tau >= 0:
        raise UsageError(f"argument --tau: must be >= 0; got {args.tau:g}")


def run(args) -> int:
    from ..removal import guided_removal

    _check(args)
    res = guided_removal(
        args.mixture,
        args.method,
        args.remove,
        args.scale,
        n=args.n_samples,
        **A.pick(args, "seed", "process", "steps", "prior", "tau", "p_max"),
    )
    out = res.to_dict()
    if args.out_file is not None:
        import numpy as np

        A.write_output(
            args.out_file, lambda fh: np.save(fh, res.x, allow_pickle=False), "--out-file"
        )
        out["out"] = args.out_file
    return emit(NAME, args, out, table)


def table(res: dict) -> str:
    role = "guided toward" if res["method"] == "cfg" else "removed"
    lines = [
        f"{res['mixture']}: {res['about']}",
        f"{res['method']} at scale {res['scale']:g}, class {res['remove']} {role}; "
        f"{res['n']} samples, {res['sampler']} on {res['process']} ({res['steps']} steps), "
        f"seed {res['seed']}",
        "",
        f"{'class':>5} {'weight':>8} {'target':>8} {'share':>8}",
    ]
    target = res["target_shares"] or [None] * len(res["class_weights"])
    for k, (w, t, s) in enumerate(
        zip(res["class_weights"], target, res["class_shares"], strict=True)
    ):
        ts = f"{'-':>8}" if t is None else f"{t:>8.4f}"
        lines.append(f"{k:>5} {w:>8.4f} {ts} {s:>8.4f}" + ("  <-" if k == res["remove"] else ""))
    kl_pi = res["kl_kept_plugin"]
    lines += [
        "",
        f"share of class {res['remove']}: {res['removed_share']:.4f} +- "
        f"{res['removed_share_se']:.4f}",
        f"KL(target || generated) over the kept classes: {res['kl_kept']:.4g} (plug-in "
        + ("inf" if kl_pi is None else f"{kl_pi:.4g}")
        + ", noise floor "
        + ("n/a" if res["kl_floor"] is None else f"{res['kl_floor']:.2g}")
        + ")"
        + (f"; missing classes {res['missing_classes']}" if res["missing_classes"] else ""),
        f"sliced W2 to kept-class data: {res['quality_w2']:.4g} +- {res['quality_w2_se']:.2g} "
        f"(exact samples: {res['quality_w2_exact']:.4g} +- {res['quality_w2_exact_se']:.2g})",
    ]
    if res.get("out"):
        lines.append(f"samples written to {res['out']}")
    return "\n".join(lines)
