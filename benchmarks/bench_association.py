"""Benchmark of the attractor search, :func:`physdiff.association.find_attractors` (issue 7,
"Performance": the search batches all starting points in one sampler call).

Run from the repository root::

    python -m benchmarks.bench_association            # about two minutes on 2 cores
    python -m benchmarks.bench_association --quick    # smaller set, fewer repetitions

Case: the exact empirical score of K = 1000 patterns drawn from N(0, I_64) (seed 0),
N = 4096 starting points, Heun probability-flow ODE on the EDM process (find_attractors'
default) with 40 steps down to ``delta_end = (0.05 s)^2`` (``s`` the patterns' median
nearest-neighbour spacing), then the iterated denoiser (until updates fall below 1e-8 s),
the deduplication and the stability test: ``find_attractors`` with its defaults.
Throughput = starting points per second of wall time.

Baseline, measured in the same run: the same search with one sampler call (and one
refinement) per starting point, the loop a script would write; it is timed on a subset of
``--baseline-starts`` points and extrapolated linearly to N (the per-point cost does not
depend on N; the deduplication and the stability test, which do not depend on how the end
points were produced, are added from the batched run's own timings). The batched run's
stages are timed separately (sampler, refinement, deduplication, score Jacobians and
eigenvalues) so that the table shows where the time goes.

Times are medians over repetitions (the best in brackets) after one warm-up call. Results:
``benchmarks/results/association.md``, written atomically, and the table on stdout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import arguments, environment_lines, publish, timeit, with_machine_note
from physdiff import association as A
from physdiff.ensembles import Empirical
from physdiff.processes import get_process
from physdiff.sampling import sample

RESULTS = Path(__file__).resolve().parent / "results" / "association.md"


def setup(K: int, d: int, N: int):
    pats = np.random.default_rng(0).standard_normal((K, d))
    emp = Empirical(pats)
    s = A.nearest_neighbour_spacing(pats)
    proc = get_process("edm")  # find_attractors' default
    delta_end = max((0.05 * s) ** 2, proc.delta_min * 1.0001)
    x0 = proc.sigma(proc.t_max) * np.random.default_rng(1).standard_normal((N, d))
    return emp, s, proc, delta_end, x0


def batched(emp, x0, steps: int):
    return A.find_attractors(emp, x0.shape[0], np.random.default_rng(2), n_steps=steps, x_start=x0)


def _refine(emp) -> dict:
    """find_attractors' refinement settings: stop at updates below 1e-8 s."""
    return {"tol": 0.0, "atol": 1e-8 * A.nearest_neighbour_spacing(emp.points)}


def stages(emp, s, proc, delta_end, x0, steps: int, reps: int) -> dict:
    """The batched search's stages, each timed on its own (median of ``reps``)."""
    t_end = float(proc.time_of_delta(delta_end))

    def sampler():
        rng = np.random.default_rng(2)
        return sample(
            emp, None, rng, method="heun", process=proc, n_steps=steps, t_end=t_end, x_start=x0
        )

    out = sampler()
    y, _ = A.refine_fixed_points(emp, out.y, delta_end, **_refine(emp))
    reps_, _ = A.deduplicate(y, 0.05 * s)
    jac = emp.score_jacobian(reps_, delta_end)
    return {
        "sampler": timeit(sampler, reps),
        "refinement": timeit(
            lambda: A.refine_fixed_points(emp, out.y, delta_end, **_refine(emp)), reps
        ),
        "deduplication": timeit(lambda: A.deduplicate(y, 0.05 * s), reps),
        "score Jacobians": timeit(lambda: emp.score_jacobian(reps_, delta_end), reps),
        "eigenvalues": timeit(lambda: [np.linalg.eigvalsh(0.5 * (j + j.T))[-1] for j in jac], reps),
        "n_attractors": int(reps_.shape[0]),
    }


def per_point(emp, proc, delta_end, x0, steps: int) -> None:
    """The baseline's loop: one sampler call and one refinement per starting point."""
    t_end = float(proc.time_of_delta(delta_end))
    rng = np.random.default_rng(2)
    for i in range(x0.shape[0]):
        out = sample(
            emp,
            None,
            rng,
            method="heun",
            process=proc,
            n_steps=steps,
            t_end=t_end,
            x_start=x0[i : i + 1],
        )
        A.refine_fixed_points(emp, out.y, delta_end, **_refine(emp))


def _ms(t: dict) -> str:
    return f"{t['median'] * 1e3:,.0f} ({t['best'] * 1e3:,.0f})"


def report(res: dict, args) -> str:
    N, K, d = args.n, args.k, args.d
    b, base, st = res["batched"], res["baseline"], res["stages"]
    post = st["deduplication"]["median"] + st["score Jacobians"]["median"]
    post += st["eigenvalues"]["median"]
    base_total = base["median"] * N / args.baseline_starts + post
    lines = [
        "# Attractor search (physdiff.association.find_attractors)",
        "",
        "Written by `python -m benchmarks.bench_association"
        + (" --quick" if args.quick else "")
        + f"` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Times in milliseconds: median "
        "over the repetitions, best in brackets, after one warm-up call.",
        "",
        *environment_lines(),
        "",
        f"Case: exact empirical score of K = {K} patterns from N(0, I_{d}) (seed 0; median "
        f"nearest-neighbour spacing s = {res['spacing']:.3f}), N = {N} starting points, Heun "
        f"probability-flow ODE on the EDM process, {args.steps} steps down to delta_end = "
        f"(0.05 s)^2 = {res['delta_end']:.4g}, then `find_attractors`' refinement "
        f"(iterated denoiser), deduplication (radius 0.05 s) and stability test: "
        f"{st['n_attractors']} attractors found.",
        "",
        "| method | time for N starts | starts per second | speed-up |",
        "|---|---:|---:|---:|",
        f"| `find_attractors`: one batched sampler call ({b['reps']} reps) | {_ms(b)} | "
        f"{N / b['median']:,.0f} | {base_total / b['median']:.0f}x |",
        f"| baseline: one sampler call + refinement per start, {args.baseline_starts} "
        f"starts timed ({base['reps']} reps), extrapolated x {N // args.baseline_starts} "
        f"(+ the batched run's deduplication and stability) | {base_total * 1e3:,.0f} | "
        f"{N / base_total:,.0f} | 1x |",
        "",
        "Where the batched search spends its time (each stage timed on its own):",
        "",
        "| stage | time |",
        "|---|---:|",
    ]
    for k in ("sampler", "refinement", "deduplication", "score Jacobians", "eigenvalues"):
        lines.append(f"| {k} | {_ms(st[k])} |")
    lines += [
        "",
        "The baseline's per-start cost is measured on a subset and scaled linearly (each "
        "start runs the same number of model calls whatever N is); only the sampler and the "
        "refinement are looped, the deduplication and the stability test of the batched run "
        "are added to it unchanged.",
    ]
    return with_machine_note(lines)


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, RESULTS, "K = 200, N = 1024, fewer repetitions")
    ap.add_argument("--k", type=int, default=1000, help="number of patterns (1000)")
    ap.add_argument("--d", type=int, default=64, help="dimension (64)")
    ap.add_argument("--n", type=int, default=4096, help="starting points (4096)")
    ap.add_argument("--steps", type=int, default=40, help="Heun steps (40)")
    ap.add_argument("--baseline-starts", type=int, default=64, help="timed per-start loop (64)")
    args = ap.parse_args(argv)
    if args.quick:
        args.k, args.n, args.baseline_starts = 200, 1024, 32
    reps = 2 if args.quick else 5
    emp, s, proc, delta_end, x0 = setup(args.k, args.d, args.n)
    print(f"K = {args.k}, d = {args.d}, N = {args.n}: timing find_attractors ...", flush=True)
    b = timeit(lambda: batched(emp, x0, args.steps), reps)
    print(f"  batched: {b['median']:.2f} s ({args.n / b['median']:,.0f} starts/s)", flush=True)
    st = stages(emp, s, proc, delta_end, x0, args.steps, reps)
    sub = x0[: args.baseline_starts]
    base = timeit(lambda: per_point(emp, proc, delta_end, sub, args.steps), max(2, reps // 2))
    print(f"  per-start loop: {base['median'] / args.baseline_starts * 1e3:.1f} ms per start")
    res = {"batched": b, "baseline": base, "stages": st, "spacing": s, "delta_end": delta_end}
    text = report(res, args)
    print(text)
    return publish(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
