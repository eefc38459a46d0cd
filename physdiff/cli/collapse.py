"""``physdiff collapse``: the memorisation collapse time of n training points for a
covariance spectrum (:func:`physdiff.memorization.collapse_table`).

    physdiff collapse --d 256 --n-train 20000 --variance 1 --process ou --json
    physdiff collapse --spectrum-file eig.npy --n-train 1e4 1e5 1e6 --process ddpm
    physdiff collapse --d 1 --log-n 1000

Extending it: add flags in :func:`register`, pass them on in :func:`run`, and add what
they produce to the text in :func:`table` (the JSON is the result's ``to_dict()``).
"""

from __future__ import annotations

import math

from . import _args as A
from ._args import UsageError, cell, emit, option

NAME = "collapse"
HELP = "memorisation collapse time t_C of n training points, for a covariance spectrum"
FLAGS = {"spectrum": "--spectrum-file", "n": "--n-train"}

DESCRIPTION = """\
The random-energy-model collapse of the exact empirical score (docs/theory.md section 3;
Biroli et al. 2024): with n = e^{alpha_n d} training points the posterior over them
condenses where the Gaussian mutual information per dimension reaches alpha_n, i.e. where
log n = sum_i 1/2 log(1 + lambda_i/delta) (normal directions, lambda = 0, drop out). For
each --n-train (or --log-n, its natural log, for n beyond a float) it gives alpha_n, the
collapse noise-to-signal variance delta_C, t_C in --process, its OU time and DDPM steps
(floor, nearest, ceil) when in range, the small- and large-alpha_n asymptotics, and the
inputs of the excess-entropy formula f = alpha_n - I(delta)/d. Give the spectrum as --d with
--variance (isotropic), plus --top-eigenvalue (one spiked direction) or --intrinsic-dim (a
linear manifold), or as --spectrum-file."""
EPILOG = """\
Examples: physdiff collapse --d 256 --n-train 20000 --variance 1 --process ou --json;
physdiff collapse --d 784 --intrinsic-dim 12 --n-train 6e4 --process ddpm; physdiff collapse
--spectrum-file eig.npy --n-train 1e4 1e5 --t 0.5 1.0 (f at those times of --process). The
criterion is the large-d limit of the excess entropy; at finite d the measured crossover is
smooth (see docs/memorization.md)."""


def register(subparsers) -> None:
    p = A.add_command(subparsers, NAME, HELP, DESCRIPTION, EPILOG)
    A.add_spectrum(p)
    n = p.add_mutually_exclusive_group(required=True)
    A.add_flag(n, "n_train")
    option(
        n,
        "--log-n",
        "LOG_N",
        "natural log of the number(s) of training points instead (>= log 2), for n beyond "
        "a float (e^709.78): e.g. --log-n 1000",
        nargs="+",
    )
    A.add_flag(p, "process", default="ou")
    A.add_flag(p, "time")
    fs = p.add_argument_group(
        "finite size",
        "the finite-(n, d) expected excess entropy E[d f^e] of Gaussian training sets, for "
        "any spectrum: exact quadrature for at most two distinct positive eigenvalues, "
        "randomised quasi-Monte Carlo with a standard error otherwise "
        "(physdiff.finite_size.finite_size_collapse; seconds per n)",
    )
    fs.add_argument(
        "--finite-size",
        action="store_true",
        help="also the finite-size collapse: where E[d f^e] crosses --level nats, beside "
        "the large-d delta_C, with the curve E[d f^e](delta)",
    )
    option(
        fs,
        "--level",
        "L",
        "with --finite-size: the level in nats, in (0, log n) (default log 2, the level the "
        "validation reads)",
    )
    option(
        fs,
        "--curve",
        "DELTA",
        "with --finite-size: noise levels of the curve (default: 13 from delta_C/6 to 3 delta_C)",
        nargs="+",
    )
    A.add_flag(p, "json")


def spectrum_args(args) -> dict:
    """The spectrum flags of :func:`physdiff.cli._args.add_spectrum` as the keyword
    arguments of :func:`physdiff.memorization.model_spectrum` (the file read here)."""
    spectrum = None
    if args.spectrum_file is not None:
        spectrum = A.read_array(args.spectrum_file, "--spectrum-file")
    return {
        "d": args.d,
        "variance": args.variance,
        "top_eigenvalue": args.top_eigenvalue,
        "intrinsic_dim": args.intrinsic_dim,
        "spectrum": spectrum,
    }


def run(args) -> int:
    from ..memorization import collapse_table

    _check_finite_size(args)
    res = collapse_table(
        n=args.n_train, log_n=args.log_n, process=args.process, t=args.t, **spectrum_args(args)
    )
    if not args.finite_size:
        return emit(NAME, args, res, table)
    out = res.to_dict()
    out["finite_size"] = finite_size(args, out["spectrum"])
    return emit(NAME, args, out, table)


def _check_finite_size(args) -> None:
    """--level and --curve go with --finite-size; --level in (0, log n) for every --n-train."""
    if not args.finite_size:
        for flag, v in (("--level", args.level), ("--curve", args.curve)):
            if v is not None:
                raise UsageError(f"argument {flag}: goes with --finite-size")
        return
    if args.log_n is not None:
        raise UsageError(
            "argument --finite-size: needs --n-train (integer n in [2, 10^12]), not --log-n"
        )
    if args.level is not None and not args.level > 0:
        raise UsageError(f"argument --level: must lie in (0, log n) nats; got {args.level:g}")
    lev = math.log(2.0) if args.level is None else args.level
    for n in args.n_train:
        if n >= 2 and not lev < math.log(n):
            raise UsageError(
                f"argument --level: must lie in (0, log n = {math.log(n):.6g}) nats for "
                f"--n-train {n:g}; got {lev:g}"
            )


def finite_size(args, summ: dict) -> dict:
    """The finite-size collapse (:func:`physdiff.finite_size.finite_size_collapse`) for each
    --n-train: isotropic data, a linear manifold, or any spectrum (exact quadrature for at
    most two distinct positive eigenvalues, randomised quasi-Monte Carlo with a standard
    error otherwise)."""
    from ..finite_size import LOG2, finite_size_collapse

    lev = LOG2 if args.level is None else args.level
    kw: dict = {"level": lev, "curve": args.curve}
    if summ["isotropic"]:
        kw.update(d=summ["intrinsic_dim"], variance=summ["top_eigenvalue"])
    else:
        from ..memorization import model_spectrum

        kw["spectrum"] = model_spectrum(**spectrum_args(args))[0]
    rows = []
    for n in args.n_train:
        rows.append(finite_size_collapse(int(n), **kw).to_dict())
    return {
        "level": lev,
        "meaning": "E[d f^e](delta) = E log(1 + sum_{mu != nu} e^{l_mu - l_nu}): the mean "
        "posterior entropy over n Gaussian training points, exact at finite (n, d); the "
        "finite-size collapse is where it crosses level",
        "results": rows,
    }


def describe(source: dict, summ: dict) -> str:
    """One line naming the spectrum (also the phase diagram's title)."""
    if "spectrum_size" in source:
        return (
            f"spectrum of {summ['d']} eigenvalues ({summ['intrinsic_dim']} positive, "
            f"top {summ['top_eigenvalue']:.6g}, trace {summ['trace']:.6g})"
        )
    parts = [f"d = {source['d']}"]
    if "intrinsic_dim" in source:
        parts.append(f"manifold of dimension m = {source['intrinsic_dim']}")
    parts.append(f"variance {source['variance']:g}")
    if "top_eigenvalue" in source:
        parts.append(f"top eigenvalue {source['top_eigenvalue']:g}")
    return ", ".join(parts)


def _asymptotic(e: dict) -> str:
    if e["delta"] is None:
        return "-"
    return f"{e['delta']:.6g}" + ("" if e["rel_error"] is None else f" ({e['rel_error']:+.1%})")


def table(res: dict) -> str:
    proc, summ = res["process"], res["spectrum"]
    tcol = f"t_C in {proc}"
    w = max(12, len(tcol) + 1)
    cols = [("n", 12), ("alpha_n", 12), ("delta_C", 12), ("OU time", 12), (tcol, w)]
    cols.append(("DDPM step", 11))
    lines = [
        f"{describe(res['source'], summ)}: collapse where log n = sum_i 1/2 log(1 + "
        f"lambda_i/delta)",
        "",
        "".join(c.rjust(k) for c, k in cols),
    ]
    notes = []
    for r in res["results"]:
        steps = r["ddpm_step"]
        # n beyond a float (given as --log-n) is written e^LOG_N
        nlab = f"{r['n']:g}" if r["n"] is not None else f"e^{r['log_n']:.6g}"
        vals = [
            r["n"] if r["n"] is not None else nlab,
            r["alpha_n"],
            r["delta"],
            r["ou_time"],
            r["time"],
            None if steps is None else int(steps["nearest"]),
        ]
        lines.append(
            "".join(
                " " + v.rjust(k - 1) if isinstance(v, str) else cell(v, k)
                for v, (_, k) in zip(vals, cols, strict=True)
            )
        )
        a = r["asymptotic"]
        notes.append(
            f"  n = {nlab}: asymptotic delta_C: small alpha {_asymptotic(a['small_alpha'])}, "
            f"large alpha {_asymptotic(a['large_alpha'])}"
        )
        if steps is not None:
            notes.append(
                f"  n = {nlab}: DDPM steps floor / nearest / ceil: {steps['floor']} / "
                f"{steps['nearest']} / {steps['ceil']}"
            )
        for e in r.get("excess_entropy", []):
            notes.append(
                f"  n = {nlab}: at t = {e['t']:g} (delta {e['delta']:.6g}): I/d = "
                f"{e['mutual_information'] / summ['d']:.6g}, f = {e['f']:.6g}"
                + (" (collapsed)" if e["collapsed"] else "")
            )
        if r.get("note"):
            notes.append(f"  n = {nlab}: {r['note']}")
    notes.append(
        f"  alpha_n = log(n)/d with d = {summ['d']}; intrinsic dimension m = "
        f"{summ['intrinsic_dim']} (alpha_n_intrinsic = log(n)/m in the JSON); large-d "
        "criterion (Biroli et al. 2024), the finite-d crossover is smooth"
    )
    lines += ["", "notes:"] + notes
    if "finite_size" in res:
        lines += _finite_size_table(res["finite_size"])
    return "\n".join(lines)


def _finite_size_table(fs: dict) -> list[str]:
    lines = [
        "",
        f"finite size: E[d f^e] of Gaussian training sets crosses {fs['level']:.6g} nats "
        "at delta_fs (s.e.: the standard error of log delta_fs, 0 where exact)",
        f"{'n':>12}{'delta_C':>12}{'delta_fs':>12}{'log(delta_fs/delta_C)':>23}{'s.e.':>12}",
    ]
    for r in fs["results"]:
        lines.append(
            cell(r["n"])
            + cell(r["delta_large_d"])
            + cell(r["delta"])
            + cell(r["log_offset"], 23)
            + cell(r.get("log_delta_error"))
        )
    for r in fs["results"]:
        c = r["curve"]
        lines += ["", f"  n = {r['n']}: curve", f"{'delta':>14}{'E[d f^e]':>12}"]
        lines += ["  " + cell(x) + cell(y) for x, y in zip(c["delta"], c["d_fe"], strict=True)]
    return lines
