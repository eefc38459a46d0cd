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

With ``--closed-form`` it times instead the library against THE CLOSED-FORM NUMPY COST
(issue #15 item 5): a plain vectorised numpy implementation of the same closed forms,
written below (:class:`ClosedFormIsotropic`, :class:`ClosedFormShared`: the log joints from
one matrix product, a softmax over K, then the formulas, float64), on a grid d in {256,
784, 3072}, K in {2, 10, 100}, for isotropic components of different variances and for
components sharing one covariance of rank d/4; n = 1000 queries from the noised marginal
at delta = 0.5 (fewer for the ``(n, d, d)`` Jacobian: 64, 16, 4 rows at d = 256, 784,
3072); ``posterior``, ``score``, ``denoise`` and ``score_jacobian``. Results:
``benchmarks/results/ensembles_closed_form.md``. On the shared development machine run it
with ``OPENBLAS_NUM_THREADS=1``: a threaded BLAS waiting for a descheduled worker there
turns 0.1 ms products into 10 ms ones at random.

Each new result is compared with the old one (largest absolute difference; the change is
meant to be exact). Times are medians (best in brackets) of interleaved repetitions after
a warm-up. Results: ``benchmarks/results/ensembles.md``, written atomically, and the
tables on stdout.
"""

from __future__ import annotations

import os
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
    with_machine_note,
)
from physdiff import sampling
from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.processes import DDPM

RESULTS = Path(__file__).resolve().parent / "results" / "ensembles.md"
RESULTS_CLOSED_FORM = RESULTS.with_name("ensembles_closed_form.md")
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


# -- the closed-form numpy cost (what a user would write; for comparison only) -----------------


def _softmax_last(a: np.ndarray) -> np.ndarray:
    a -= a.max(axis=1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=1, keepdims=True)
    return a


def _between_jacobian(p: np.ndarray, dev: np.ndarray) -> np.ndarray:
    """``sum_k p_k s_k s_k^T - s s^T`` ``(n, d, d)`` from the deviations ``s_k - s``
    ``(n, K, d)`` of the component scores from the score."""
    dev *= np.sqrt(p)[:, :, None]
    return np.matmul(dev.transpose(0, 2, 1), dev)


class ClosedFormIsotropic:
    """``sum_k w_k N(mu_k, s_k^2 I)`` in plain numpy, scalar delta: ``v_k = s_k^2 + delta``,
    ``log p_k ~ log w_k - d/2 log v_k - |y - mu_k|^2 / (2 v_k)`` with ``|y - mu_k|^2`` from
    one product ``y mu^T``; score ``sum_k p_k (mu_k - y) / v_k``, denoiser
    ``sum_k p_k (mu_k + s_k^2 / v_k (y - mu_k))``, Jacobian
    ``-sum_k p_k / v_k I + sum_k p_k s_k s_k^T - s s^T``."""

    def __init__(self, weights, means, variances):
        self.logw = np.log(weights)
        self.mu = np.ascontiguousarray(means)
        self.s2 = np.asarray(variances, dtype=float)
        self.musq = np.einsum("kd,kd->k", self.mu, self.mu)

    def posterior(self, y, delta):
        v = self.s2 + delta
        q = y @ self.mu.T
        q *= -2.0
        q += np.einsum("nd,nd->n", y, y)[:, None]
        q += self.musq
        q /= -2.0 * v
        q += self.logw - 0.5 * y.shape[1] * np.log(2 * np.pi * v)
        return _softmax_last(q)

    def score(self, y, delta):
        pv = self.posterior(y, delta) / (self.s2 + delta)
        out = pv @ self.mu
        out -= pv.sum(axis=1)[:, None] * y
        return out

    def denoise(self, y, delta):
        p = self.posterior(y, delta)
        pc = p * (self.s2 / (self.s2 + delta))
        out = (p - pc) @ self.mu
        out += pc.sum(axis=1)[:, None] * y
        return out

    def score_jacobian(self, y, delta):
        v = self.s2 + delta
        p = self.posterior(y, delta)
        pv = p / v
        s = pv @ self.mu - pv.sum(axis=1)[:, None] * y
        jac = _between_jacobian(p, (self.mu[None] - y[:, None]) / v[:, None] - s[:, None])
        i = np.arange(y.shape[1])
        jac[:, i, i] -= pv.sum(axis=1)[:, None]
        return jac


class ClosedFormShared:
    """``sum_k w_k N(mu_k, U diag(lam) U^T)`` (``U`` ``(d, r)`` orthonormal) in plain numpy,
    scalar delta: with ``z = U^T y``, ``nu = mu U`` and ``a = 1/delta - 1/(lam + delta)``,
    ``(y - mu_k)^T S^-1 (y - mu_k) = |y - mu_k|^2 / delta - sum_j a_j (z - nu_k)_j^2`` from
    the products ``y mu^T`` and ``(z a) nu^T``; score ``(p mu - y) / delta + U ((z - p nu)
    a)``, denoiser ``p mu + U ((z - p nu) lam / (lam + delta))``, Jacobian
    ``-I / delta + U diag(a) U^T + sum_k p_k s_k s_k^T - s s^T``."""

    def __init__(self, weights, means, basis, variances):
        self.logw = np.log(weights)
        self.mu = np.ascontiguousarray(means)
        self.U = np.ascontiguousarray(basis)
        self.lam = np.asarray(variances, dtype=float)
        self.nu = self.mu @ self.U
        self.musq = np.einsum("kd,kd->k", self.mu, self.mu)

    def _posterior(self, y, delta):
        d, r = self.U.shape
        a = self.lam / (delta * (self.lam + delta))
        z = y @ self.U
        za = z * a
        q = y @ self.mu.T
        q *= -2.0
        q += np.einsum("nd,nd->n", y, y)[:, None]
        q += self.musq
        q /= delta
        q += 2.0 * (za @ self.nu.T)
        q -= np.einsum("nr,nr->n", z, za)[:, None]
        q -= (self.nu * self.nu) @ a
        logdet = np.sum(np.log(self.lam + delta)) + (d - r) * np.log(delta)
        q *= -0.5
        q += self.logw - 0.5 * (d * np.log(2 * np.pi) + logdet)
        return _softmax_last(q), z, a

    def posterior(self, y, delta):
        return self._posterior(y, delta)[0]

    def score(self, y, delta):
        p, z, a = self._posterior(y, delta)
        out = p @ self.mu
        out -= y
        out /= delta
        out += ((z - p @ self.nu) * a) @ self.U.T
        return out

    def denoise(self, y, delta):
        p, z, _ = self._posterior(y, delta)
        out = p @ self.mu
        out += ((z - p @ self.nu) * (self.lam / (self.lam + delta))) @ self.U.T
        return out

    def score_jacobian(self, y, delta):
        p, z, a = self._posterior(y, delta)
        pm, pn = p @ self.mu, p @ self.nu
        dev = (self.mu[None] - pm[:, None]) / delta - ((self.nu[None] - pn[:, None]) * a) @ self.U.T
        jac = _between_jacobian(p, dev)
        jac += (self.U * a) @ self.U.T
        i = np.arange(self.U.shape[0])
        jac[:, i, i] -= 1.0 / delta
        return jac


GRID_D = (256, 784, 3072)
GRID_K = (2, 10, 100)
JAC_ROWS = {256: 64, 784: 16, 3072: 4}
GRID_METHODS = ("posterior", "score", "denoise", "score_jacobian")


def closed_form_case(structure: str, d: int, K: int, rng: np.random.Generator):
    """``(library model, closed-form numpy model, queries (1000, d))`` of one grid cell:
    means with entries N(0, 9/d) (|mu_k| about 3), equal weights; isotropic variances
    uniform in [0.1, 1]; or one covariance of rank d/4 (a random orthonormal basis,
    variances uniform in [0.2, 2]). Queries: x0 from the mixture plus sqrt(delta) noise."""
    w = np.full(K, 1.0 / K)
    means = 3.0 * rng.standard_normal((K, d)) / np.sqrt(d)
    labels = rng.integers(0, K, 1000)
    if structure == "isotropic":
        s2 = rng.uniform(0.1, 1.0, K)
        lib = GaussianMixture.isotropic(w, means, s2)
        ref = ClosedFormIsotropic(w, means, s2)
        x0 = means[labels] + np.sqrt(s2[labels])[:, None] * rng.standard_normal((1000, d))
    else:
        r = d // 4
        basis = np.linalg.qr(rng.standard_normal((d, r)))[0]
        lam = rng.uniform(0.2, 2.0, r)
        lib = GaussianMixture.shared_covariance(w, means, Gaussian.from_eigen(means[0], basis, lam))
        ref = ClosedFormShared(w, means, basis, lam)
        x0 = means[labels] + (np.sqrt(lam) * rng.standard_normal((1000, r))) @ basis.T
    return lib, ref, x0 + np.sqrt(DELTA) * rng.standard_normal(x0.shape)


def bench_closed_form(reps: int, dims=GRID_D, ks=GRID_K) -> list[dict]:
    rows = []
    for d in dims:
        for K in ks:
            for structure in ("isotropic", "shared rank d/4"):
                lib, ref, y = closed_form_case(structure, d, K, np.random.default_rng(d + K))
                handed = float(np.mean(lib._fast.bound(y, np.full((y.shape[0], 1), DELTA)) > 1e-9))
                for method in GRID_METHODS:
                    yy = y[: JAC_ROWS[d]] if method == "score_jacobian" else y
                    f_lib, f_ref = getattr(lib, method), getattr(ref, method)
                    t = timeit_interleaved(
                        {
                            "library": lambda f=f_lib, y=yy: f(y, DELTA),
                            "numpy": lambda f=f_ref, y=yy: f(y, DELTA),
                        },
                        reps,
                    )
                    a, b = f_lib(yy, DELTA), f_ref(yy, DELTA)
                    rel = float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                    ratio = t["library"]["median"] / t["numpy"]["median"]
                    row = {
                        "d": d,
                        "K": K,
                        "structure": structure,
                        "method": method,
                        "n": yy.shape[0],
                        "library": t["library"],
                        "numpy": t["numpy"],
                        "ratio": ratio,
                        "rel": rel,
                        "handed": handed,
                    }
                    rows.append(row)
                    print(
                        f"d={d:<5} K={K:<4} {structure:<16} {method:<15} n={yy.shape[0]:<5} "
                        f"library {_ms3(t['library']):>18}  numpy {_ms3(t['numpy']):>18}  "
                        f"{ratio:5.2f}x  rel diff {rel:.1e}",
                        flush=True,
                    )
    return rows


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


def _ms3(t: dict) -> str:
    return f"{1e3 * t['median']:,.3g} ({1e3 * t['best']:,.3g})"


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


SETTINGS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
)


def blas_threads() -> str:
    """The environment settings that move these timings: the BLAS threads
    (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``) and glibc's allocator thresholds
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``: page faults of fresh arrays)."""
    env = {k: os.environ[k] for k in SETTINGS if k in os.environ}
    return ", ".join(f"{k}={v}" for k, v in env.items()) or "none set (BLAS and malloc defaults)"


def report_closed_form(rows: list[dict], args, load_start, load_end) -> str:
    worst = max(r["ratio"] for r in rows)
    lines = [
        "# Exact mixtures against the closed-form numpy cost (issue #15 item 5)",
        "",
        f"Written by `python -m benchmarks.bench_ensembles --closed-form"
        f"{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Medians over "
        f"{args.reps_grid} interleaved repetitions (library, numpy, library, ...), best in "
        "brackets, after one warm-up call each.",
        "",
        *environment_lines(load_start=load_start, load_end=load_end),
        f"- settings: {blas_threads()}",
        "",
        "*library*: `GaussianMixture.isotropic(w, means, variances)` (different variance per "
        "component, uniform in [0.1, 1]) or `GaussianMixture.shared_covariance(w, means, "
        "Gaussian.from_eigen(means[0], U, lam))` (one covariance of rank r = d/4, random "
        "orthonormal U, lam uniform in [0.2, 2], zero variance on the complement), called "
        "through the public methods (input validation included). *numpy*: "
        "`ClosedFormIsotropic` / `ClosedFormShared` in the benchmark, the same closed forms "
        "in plain vectorised float64 numpy (log joints from one `y @ mu.T` product, softmax "
        "over K, the formulas; scalar delta, no validation, no error bound). Means with "
        "entries N(0, 9/d), equal weights; queries: samples of the noised marginal at "
        f"delta = {DELTA}, n = 1000 (Jacobian `(n, d, d)`: n = "
        + ", ".join(f"{v} at d = {k}" for k, v in JAC_ROWS.items())
        + "). Ratio = library / numpy (median times). Rel diff: max |library - numpy| / "
        "max |numpy|. Handed back: share of the rows whose error bound sends them to the "
        "per-component formulas (0 here: every row on the fast path).",
        "",
        f"Largest ratio: {worst:.2f}x.",
        "",
        "| d | K | structure | method | n | library (ms) | numpy (ms) | ratio | rel diff "
        "| handed back |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['d']} | {r['K']} | {r['structure']} | `{r['method']}` | {r['n']} | "
            f"{_ms3(r['library'])} | {_ms3(r['numpy'])} | {r['ratio']:.2f} | {r['rel']:.1e} | "
            f"{r['handed']:.0%} |"
        )
    return with_machine_note(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, RESULTS, "fewer repetitions")
    ap.add_argument(
        "--closed-form",
        action="store_true",
        help="the library against the closed-form numpy cost (d = 256..3072, K = 2..100)",
    )
    args = ap.parse_args(argv)
    if args.closed_form:
        if args.out == RESULTS:
            args.out = RESULTS_CLOSED_FORM
        args.reps_grid = 3 if args.quick else 7
        load_start = load_average()
        rows = bench_closed_form(args.reps_grid)
        load_end = load_average()
        return publish(args.out, report_closed_form(rows, args, load_start, load_end))
    args.reps_methods = 7 if args.quick else 31
    args.reps_sampler = 2 if args.quick else 7
    load_start = load_average()
    meth = bench_methods(args.reps_methods)
    samp = bench_sampler(args.reps_sampler, 10_000, 2_000)
    load_end = load_average()
    return publish(args.out, report(meth, samp, args, load_start, load_end))


if __name__ == "__main__":
    sys.exit(main())
