"""Benchmark of the Gaussian-mixture internals, :mod:`physdiff.ensembles.mixture`: class
posteriors, scores and denoisers computed with the components along the first axis,
``(K, n)``, against the ``(n, K)`` layout they had before.

Run from the repository root::

    python -m benchmarks.bench_ensembles            # about a minute on 2 cores
    python -m benchmarks.bench_ensembles --quick    # fewer repetitions

What it times, new (the library) against old (the implementation before this change,
copied below as :class:`LegacyGaussianMixture`), repetitions interleaved:

* ``posterior``, ``score`` and ``denoise`` of a K = 4 mixture at n = 10^4 queries, delta
  = 0.5: in d = 1 (point masses at -8, -4, 6, 8, the mixture of
  ``benchmarks/bench_information.py``, and Gaussians of variance 0.5 at the same places)
  and in d = 16 (four Gaussians of variance 0.3);
* a DDPM ancestral sampler run (:func:`physdiff.sampling.sample`, ``method="ddpm"``, the
  DDPM process, 1000 steps) of the 1-D point-mass mixture with 10,000 particles, and of
  the d = 16 mixture with 2,000 particles.

Each new result is compared with the old one (largest absolute difference; the change is
meant to be exact). Times are medians (best in brackets) of interleaved repetitions after
a warm-up. Results: ``benchmarks/results/ensembles.md``, written atomically, and the
tables on stdout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    arguments,
    environment_lines,
    load_average,
    publish,
    timeit_interleaved,
)
from physdiff import sampling
from physdiff.ensembles import GaussianMixture
from physdiff.processes import DDPM

RESULTS = Path(__file__).resolve().parent / "results" / "ensembles.md"
MEANS_1D = [[-8.0], [-4.0], [6.0], [8.0]]
N_QUERIES = 10_000
DELTA = 0.5


# -- the baseline: the implementation before this change (old, for comparison only) -----------


def _legacy_softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - np.max(a, axis=1, keepdims=True))
    return e / np.sum(e, axis=1, keepdims=True)


def _legacy_logsumexp(a: np.ndarray) -> np.ndarray:
    top = np.max(a, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.sum(np.exp(a - top), axis=1, keepdims=True)) + top)[:, 0]


def _legacy_component_denoise(c, y, delta):
    """``Gaussian._denoise`` before: it formed the complement ``P_perp (y - mu)`` too (one
    more matrix product and subtraction) and dropped it."""
    r, _ = c._split(y)
    return c._denoise_from(r, delta)


class LegacyGaussianMixture(GaussianMixture):
    """OLD implementation (baseline only): log joints and posteriors laid out ``(n, K)``,
    so that every softmax / log-sum-exp reduces a short last axis, and each component's
    coordinates computed twice (once for its density, once for its denoiser or score)."""

    def _log_joint(self, y, delta):
        return np.stack(
            [lw + c._log_density(y, delta) for lw, c in zip(self._logw, self._comps, strict=True)],
            axis=1,
        )

    def _posterior(self, y, delta):
        return _legacy_softmax(self._log_joint(y, delta))

    def _log_density(self, y, delta):
        return _legacy_logsumexp(self._log_joint(y, delta))

    def _denoise(self, y, delta):
        p = self._posterior(y, delta)
        return sum(
            p[:, [k]] * _legacy_component_denoise(c, y, delta) for k, c in enumerate(self._comps)
        )

    def _score(self, y, delta):
        p = self._posterior(y, delta)
        return sum(p[:, [k]] * c._score(y, delta) for k, c in enumerate(self._comps))


# -- timing ------------------------------------------------------------------------------------


def _d16() -> GaussianMixture:
    rng = np.random.default_rng(3)
    means = 3.0 * rng.standard_normal((4, 16)) / 4.0
    return GaussianMixture.isotropic([0.25] * 4, means, [0.3] * 4)


def models() -> dict[str, GaussianMixture]:
    return {
        "d = 1, point masses at -8, -4, 6, 8": GaussianMixture.isotropic(
            [0.25] * 4, MEANS_1D, [0.0] * 4
        ),
        "d = 1, Gaussians (var 0.5) at -8, -4, 6, 8": GaussianMixture.isotropic(
            [0.25] * 4, MEANS_1D, [0.5] * 4
        ),
        "d = 16, 4 Gaussians (var 0.3)": _d16(),
    }


def _legacy(model: GaussianMixture) -> LegacyGaussianMixture:
    return LegacyGaussianMixture.from_components(model.weights, model.components)


def bench_methods(reps: int) -> list[dict]:
    rows = []
    for name, model in models().items():
        old = _legacy(model)
        rng = np.random.default_rng(0)
        x0 = model.sample(N_QUERIES, rng)
        y = x0 + np.sqrt(DELTA) * rng.standard_normal(x0.shape)
        for method in ("posterior", "score", "denoise"):
            f_new, f_old = getattr(model, method), getattr(old, method)
            t = timeit_interleaved(
                {"new": lambda f=f_new, y=y: f(y, DELTA), "old": lambda f=f_old, y=y: f(y, DELTA)},
                reps,
            )
            diff = float(np.max(np.abs(f_new(y, DELTA) - f_old(y, DELTA))))
            row = {"case": name, "method": method, "new": t["new"], "old": t["old"], "diff": diff}
            rows.append(row)
            print(
                f"{name:<44} {method:<10} old {_us(t['old']):>22}  new {_us(t['new']):>22}  "
                f"{t['old']['median'] / t['new']['median']:5.2f}x  max diff {diff:.1e}",
                flush=True,
            )
    return rows


def bench_sampler(reps: int, n1: int, n16: int) -> list[dict]:
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -1.0)
    ms = models()
    cases = [
        ("d = 1, point masses at -8, -4, 6, 8", ms["d = 1, point masses at -8, -4, 6, 8"], n1),
        ("d = 16, 4 Gaussians (var 0.3)", ms["d = 16, 4 Gaussians (var 0.3)"], n16),
    ]
    rows = []
    for name, model, n in cases:
        old = _legacy(model)
        out: dict[str, np.ndarray] = {}

        def run(m, key, n=n, out=out):
            res = sampling.sample(
                m, n, np.random.default_rng(0), method="ddpm", process=proc, times=grid
            )
            out[key] = res.x

        t = timeit_interleaved(
            {"new": lambda m=model: run(m, "new"), "old": lambda m=old: run(m, "old")}, reps
        )
        diff = float(np.max(np.abs(out["new"] - out["old"])))
        rows.append({"case": name, "n": n, "new": t["new"], "old": t["old"], "diff": diff})
        print(
            f"sampler {name:<40} n={n:<6} old {_ms(t['old']):>18}  new {_ms(t['new']):>18}  "
            f"{t['old']['median'] / t['new']['median']:5.2f}x  max diff {diff:.1e}",
            flush=True,
        )
    return rows


# -- output ------------------------------------------------------------------------------------


def _us(t: dict) -> str:
    return f"{1e6 * t['median']:,.0f} ({1e6 * t['best']:,.0f})"


def _ms(t: dict) -> str:
    return f"{1e3 * t['median']:,.0f} ({1e3 * t['best']:,.0f})"


def report(meth: list[dict], samp: list[dict], args, load_start, load_end) -> str:
    lines = [
        "# Gaussian-mixture internals (physdiff.ensembles.mixture)",
        "",
        f"Written by `python -m benchmarks.bench_ensembles{' --quick' if args.quick else ''}` "
        f"on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Medians over the "
        "repetitions, best in brackets, after one warm-up call; old and new repetitions "
        "interleaved.",
        "",
        *environment_lines(load_start=load_start, load_end=load_end),
        "",
        "*new*: the library (components along the first axis: log joints, posteriors and "
        "their reductions are `(K, n)`, and each component's coordinates `U^T (y - mu)` / "
        "`P_perp (y - mu)` are computed once for its density and its denoiser or score; "
        "`Gaussian._denoise` no longer forms the complement it drops). *old*: the "
        "implementation before, kept in the benchmark as `LegacyGaussianMixture` (an `(n, K)` "
        "softmax and log-sum-exp over the short last axis). Max diff: the largest absolute "
        "difference between the two results (0 = bit for bit the same).",
        "",
        f"## Mixture methods, K = 4, n = {N_QUERIES:,} queries, delta = {DELTA}",
        "",
        "Microseconds per call. Queries: samples of the noised marginal at that delta.",
        "",
        "| model | method | old (us) | new (us) | speed-up | max diff |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in meth:
        lines.append(
            f"| {r['case']} | `{r['method']}` | {_us(r['old'])} | {_us(r['new'])} | "
            f"{r['old']['median'] / r['new']['median']:.2f}x | {r['diff']:.1e} |"
        )
    lines += [
        "",
        "## DDPM sampler run (1000 steps)",
        "",
        "`physdiff.sampling.sample(model, n, rng, method='ddpm', process=DDPM(), "
        "times=np.arange(999, -1, -1))`, milliseconds per run (the sampler calls "
        "`denoise` once per step). Max diff: the final particles.",
        "",
        "| model | particles | old (ms) | new (ms) | speed-up | max diff |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in samp:
        lines.append(
            f"| {r['case']} | {r['n']:,} | {_ms(r['old'])} | {_ms(r['new'])} | "
            f"{r['old']['median'] / r['new']['median']:.2f}x | {r['diff']:.1e} |"
        )
    lines += [
        "",
        f"Repetitions: {args.reps_methods} per method call, {args.reps_sampler} per sampler run.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, RESULTS, "fewer repetitions")
    args = ap.parse_args(argv)
    args.reps_methods = 7 if args.quick else 31
    args.reps_sampler = 2 if args.quick else 7
    load_start = load_average()
    meth = bench_methods(args.reps_methods)
    samp = bench_sampler(args.reps_sampler, 10_000, 2_000)
    load_end = load_average()
    return publish(args.out, report(meth, samp, args, load_start, load_end))


if __name__ == "__main__":
    sys.exit(main())
