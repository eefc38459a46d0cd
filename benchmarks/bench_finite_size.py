"""Benchmark of the exact finite-(n, d) excess entropy, :mod:`physdiff.finite_size`.

Run from the repository root::

    python -m benchmarks.bench_finite_size            # under a minute on 2 cores
    python -m benchmarks.bench_finite_size --quick    # fewer repetitions, shorter baselines

What a user would otherwise do to get ``E[d f^e(delta)]`` at finite ``n`` and ``d`` is
brute-force Monte Carlo over training sets: draw sets of ``n`` Gaussian points, query
``y = a_nu + sqrt(delta) z`` and average ``log(1 + S)``
(:func:`physdiff.memorization.excess_entropy_samples` on an ``Empirical`` set, the
streaming kernel). For each case it times, in the same run:

* :func:`physdiff.finite_size.finite_size_entropy` at ``delta = delta_C`` (the large-d
  collapse), median of a few calls; for the isotropic cases also one
  :func:`physdiff.finite_size.finite_size_collapse` (Brent root plus the 13-point curve);
* a short brute-force run (40 sets of 50 queries, after a warm-up call), giving the time per query
  and the variance per query (from the spread of the set means, so the set-to-set part is
  in it); extrapolated to the number of queries whose standard error equals the target:
  1e-4 nats for the deterministic quadrature (its accuracy is about 1e-9), the method's
  own standard error for the randomised quasi-Monte Carlo cases.

Results: ``benchmarks/results/finite_size.md`` (written atomically) and the table on stdout.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import _common as C
from physdiff import finite_size as FS
from physdiff import memorization as M
from physdiff.ensembles import Empirical

RESULTS = Path(__file__).resolve().parent / "results" / "finite_size.md"
TARGET = 1e-4  # nats: the brute-force standard error asked for the deterministic cases


def cases() -> list[tuple[str, int, np.ndarray]]:
    return [
        ("isotropic, d = 16", 1000, np.ones(16)),
        ("isotropic, d = 256", 1000, np.ones(256)),
        ("two groups 4 x2, 0.25 x6", 1000, np.r_[np.full(2, 4.0), np.full(6, 0.25)]),
        ("three groups 1, 0.09, 1e-4 (x10)", 1000, np.repeat([1.0, 0.09, 1e-4], 10)),
        ("power law 1/i, d = 64", 1000, 1.0 / np.arange(1, 65)),
    ]


def brute(n: int, lam: np.ndarray, delta: float, sets: int, probes: int, seed: int) -> dict:
    """Time per query and variance per query of brute-force Monte Carlo over training sets."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(lam)
    means = []
    t0 = time.perf_counter()
    for _ in range(sets):
        pts = scale * rng.standard_normal((n, lam.size))
        h, _ = M.excess_entropy_samples(Empirical(pts), delta, probes, rng)
        means.append(h.mean())
    dt = time.perf_counter() - t0
    means = np.asarray(means)
    return {
        "mean": float(means.mean()),
        "se": float(means.std(ddof=1) / math.sqrt(sets)),
        "per_query": dt / (sets * probes),
        "var_per_query": float(means.var(ddof=1) * probes),
    }


def run(quick: bool) -> list[dict]:
    reps = 2 if quick else 3
    sets, probes = (16, 50) if quick else (40, 50)
    rows = []
    for name, n, lam in cases():
        dc = float(M.collapse_delta(n, lam))
        h, se = FS.finite_size_entropy_error(dc, n, spectrum=lam)
        t = C.timeit(lambda lam=lam, n=n, dc=dc: FS.finite_size_entropy(dc, n, spectrum=lam), reps)
        tc = None
        if np.ptp(lam) == 0:
            t0 = time.perf_counter()
            FS.finite_size_collapse(n, lam.size)
            tc = time.perf_counter() - t0
        brute(n, lam, dc, 2, 10, seed=0)  # warm-up: the kernel's first call compiles
        b = brute(n, lam, dc, sets, probes, seed=n + lam.size)
        target = se if se > 0 else TARGET
        queries = b["var_per_query"] / target**2
        rows.append(
            {
                "name": name,
                "n": n,
                "delta": dc,
                "h": h,
                "se": se,
                "time": t["median"],
                "collapse": tc,
                "brute": b,
                "target": target,
                "brute_time": queries * b["per_query"],
                "queries": queries,
            }
        )
        print(
            f"{name}: {t['median']:.3f} s, brute force {queries * b['per_query']:.3g} s "
            f"({queries:.3g} queries); H = {h:.6f} (se {se:.1e}), brute {b['mean']:.4f} "
            f"+- {b['se']:.4f}",
            flush=True,
        )
    return rows


def report(rows: list[dict], quick: bool, load0, load1) -> str:
    lines = [
        "# Exact finite-size excess entropy (physdiff.finite_size)",
        "",
        "`python -m benchmarks.bench_finite_size" + (" --quick`" if quick else "`"),
        "",
        *C.environment_lines(load_start=load0, load_end=load1),
        "",
        "`E[d f^e]` at the large-d `delta_C`, n = 1000: `finite_size_entropy` (median) against "
        "brute-force Monte Carlo over training sets (`excess_entropy_samples` on `Empirical`) "
        "run long enough for the same standard error, extrapolated from a short run of "
        "the same run (time per query x queries needed). Target s.e.: 1e-4 nats for the "
        "deterministic quadrature (accurate to about 1e-9), the method's own s.e. for RQMC.",
        "",
        *C.table(
            "case | method | E[d f^e] | its s.e. | time (s) | brute force (s) | speed-up | "
            "brute mean +- s.e. (short run)",
            [
                (
                    r["name"],
                    "RQMC" if r["se"] > 0 else "quadrature",
                    f"{r['h']:.6f}",
                    f"{r['se']:.1e}" if r["se"] > 0 else "~1e-9",
                    f"{r['time']:.3f}",
                    f"{r['brute_time']:.3g}",
                    f"{r['brute_time'] / r['time']:.3g}",
                    f"{r['brute']['mean']:.4f} +- {r['brute']['se']:.4f}",
                )
                for r in rows
            ],
            "llrrrrrl",
        ),
        "",
        "`finite_size_collapse` (Brent root of `E[d f^e] = log 2` plus the 13-point curve): "
        + "; ".join(f"{r['name']}: {r['collapse']:.2f} s" for r in rows if r["collapse"])
        + ".",
    ]
    return C.with_machine_note(lines)


def main(argv: list[str] | None = None) -> int:
    ap = C.arguments(__doc__, RESULTS, "fewer repetitions, shorter brute-force runs")
    args = ap.parse_args(argv)
    load0 = C.load_average()
    rows = run(args.quick)
    text = report(rows, args.quick, load0, C.load_average())
    print(text)
    return C.publish(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
