"""Sampler throughput on an exact mixture score (issue #15 item 6): particle-steps per
second of :func:`physdiff.sampling.sample` against the vectorised numpy loop a user would
write, the same update rule and the same closed-form score, measured in the same run.

Run from the repository root (on the shared development machine with
``OPENBLAS_NUM_THREADS=1``, see :mod:`benchmarks.bench_ensembles`)::

    python -m benchmarks.bench_sampling            # about two minutes on 2 cores
    python -m benchmarks.bench_sampling --quick    # fewer repetitions

The model: ``GaussianMixture.isotropic`` with K = 10 components of different variances
(uniform in [0.1, 1], means with entries N(0, 9/d)), d = 16, 64 and 256, 10^4 particles,
the OU process on its default grid of 40 steps, from one shared start ``N(0, I)``. The
methods: ``euler`` (probability-flow ODE, one score a step), ``heun`` (two), ``ddpm``
(ancestral, one denoiser a step) and ``euler-maruyama`` (reverse SDE, one score a step).
The numpy loop precomputes the schedule on the grid (alpha, delta, f = d log alpha/dt,
g^2 = alpha^2 d delta/dt) and calls :class:`benchmarks.bench_ensembles.ClosedFormIsotropic`
for the score or denoiser; the stochastic methods draw their noise from a generator of the
same seed in the same order, so the runs give the same particles (max diff reported). The
library runs twice: as a user calls it (the fused kernel of
:mod:`physdiff.ensembles._mixture_sampler`) and with the generic stepper
(``_mixture_sampler.MODE = "generic"``, the library before the kernel). A second table
splits the stochastic runs into their parts: drawing the noise alone, the same run without
noise (``ddim``, the posterior step at ``eta = 0``: the same arithmetic as ``ddpm``), and
the fixed cost of a step (100 particles). Results: ``benchmarks/results/sampling.md``,
written atomically, and the tables on stdout.
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
    table,
    timeit_interleaved,
    with_machine_note,
)
from benchmarks.bench_ensembles import ClosedFormIsotropic, blas_threads
from physdiff import sampling
from physdiff.ensembles import GaussianMixture, _mixture_sampler
from physdiff.processes import get_process

RESULTS = Path(__file__).resolve().parent / "results" / "sampling.md"
N_PARTICLES = 10_000
N_STEPS = 40
K = 10
DIMS = (16, 64, 256)
METHODS = ("euler", "heun", "ddpm", "euler-maruyama")


def model(d: int) -> tuple[GaussianMixture, ClosedFormIsotropic]:
    rng = np.random.default_rng(d)
    w = np.full(K, 1.0 / K)
    means = 3.0 * rng.standard_normal((K, d)) / np.sqrt(d)
    s2 = rng.uniform(0.1, 1.0, K)
    return GaussianMixture.isotropic(w, means, s2), ClosedFormIsotropic(w, means, s2)


class PerComponent:
    """The same mixture's score and denoiser written one component at a time (a loop over K
    of ``(n, d)`` differences ``y - mu_k``, as from per-component densities): a second,
    slower numpy baseline, for context."""

    def __init__(self, ref: ClosedFormIsotropic):
        self.ref = ref

    def _terms(self, y, delta):
        r = self.ref
        v = r.s2 + delta
        diffs = [y - m for m in r.mu]
        lj = np.stack(
            [
                r.logw[k]
                - 0.5 * y.shape[1] * np.log(2 * np.pi * v[k])
                - 0.5 * np.einsum("nd,nd->n", dk, dk) / v[k]
                for k, dk in enumerate(diffs)
            ],
            axis=1,
        )
        lj -= lj.max(axis=1, keepdims=True)
        p = np.exp(lj)
        p /= p.sum(axis=1, keepdims=True)
        return p, v, diffs

    def score(self, y, delta):
        p, v, diffs = self._terms(y, delta)
        return -sum(p[:, [k]] * dk / v[k] for k, dk in enumerate(diffs))

    def denoise(self, y, delta):
        p, v, diffs = self._terms(y, delta)
        c = self.ref.s2 / v
        return sum(p[:, [k]] * (self.ref.mu[k] + c[k] * dk) for k, dk in enumerate(diffs))


def schedule(process, grid: np.ndarray) -> dict[str, np.ndarray]:
    """alpha, delta, f and g^2 on the grid (what a user's loop precomputes)."""
    a = np.asarray(process.alpha(grid), dtype=float)
    return {
        "alpha": a,
        "delta": np.asarray(process.delta(grid), dtype=float),
        "f": np.asarray(process.drift_coefficient(grid), dtype=float),
        "g2": a * a * np.asarray(process.ddelta_dt(grid), dtype=float),
    }


def numpy_loop(ref: ClosedFormIsotropic, method: str, x: np.ndarray, grid, sch, seed: int):
    """The user's loop: the same update rules as :mod:`physdiff.sampling`."""
    rng = np.random.default_rng(seed)
    al, de, f, g2 = sch["alpha"], sch["delta"], sch["f"], sch["g2"]
    x = x.copy()

    def velocity(x, i):  # f x - g^2/2 score_t(x), score_t(x) = score(x / alpha, delta) / alpha
        return f[i] * x - (0.5 * g2[i] / al[i]) * ref.score(x / al[i], de[i])

    for i in range(grid.shape[0] - 1):
        dt = grid[i + 1] - grid[i]
        if method == "euler":
            x = x + dt * velocity(x, i)
        elif method == "euler-maruyama":  # dx = [f x - g^2 score_t] dt + g dW-bar
            drift = f[i] * x - (g2[i] / al[i]) * ref.score(x / al[i], de[i])
            x = x + dt * drift + np.sqrt(g2[i] * -dt) * rng.standard_normal(x.shape)
        elif method == "heun":
            k1 = velocity(x, i)
            if de[i + 1] > 0:
                x = x + (0.5 * dt) * (k1 + velocity(x + dt * k1, i + 1))
            else:
                x = x + dt * k1
        else:  # ddpm: y_s = x0 + r (y - x0) + sqrt(D_s (1 - r)) z, r = D_s / D_t
            y = x / al[i]
            x0 = ref.denoise(y, de[i])
            r = de[i + 1] / de[i]
            ys = x0 + r * (y - x0)
            c2 = de[i + 1] * (1.0 - r)
            if c2 > 0:
                ys += np.sqrt(c2) * rng.standard_normal(x.shape)
            x = al[i + 1] * ys
    return x


def bench(reps: int) -> list[dict]:
    process = get_process("ou")
    grid = np.asarray(process.sampling_grid(N_STEPS), dtype=float)
    sch = schedule(process, grid)
    rows = []
    for d in DIMS:
        lib, ref = model(d)
        per_comp = PerComponent(ref)
        x_start = np.random.default_rng(100 + d).standard_normal((N_PARTICLES, d))
        for method in METHODS:
            out: dict[str, np.ndarray] = {}

            def run_lib(method=method, x_start=x_start, out=out, lib=lib, mode="auto"):
                _mixture_sampler.MODE = mode
                try:
                    res = sampling.sample(
                        lib,
                        None,
                        np.random.default_rng(7),
                        method=method,
                        process=process,
                        times=grid,
                        x_start=x_start,
                    )
                finally:
                    _mixture_sampler.MODE = "auto"
                out["library" if mode == "auto" else mode] = res.x

            def run_gen(run_lib=run_lib):
                run_lib(mode="generic")

            def run_np(method=method, x_start=x_start, out=out, ref=ref):
                out["numpy"] = numpy_loop(ref, method, x_start, grid, sch, 7)

            def run_pc(method=method, x_start=x_start, out=out, ref=per_comp):
                out["per component"] = numpy_loop(ref, method, x_start, grid, sch, 7)

            t = timeit_interleaved(
                {
                    "library": run_lib,
                    "generic": run_gen,
                    "numpy": run_np,
                    "per component": run_pc,
                },
                reps,
            )
            diff = float(np.max(np.abs(out["library"] - out["numpy"])))
            diff_gen = float(np.max(np.abs(out["library"] - out["generic"])))
            evals = 2 if method == "heun" else 1
            ps = N_PARTICLES * (grid.shape[0] - 1)
            row = {
                "d": d,
                "method": method,
                "evals": evals,
                "library": t["library"],
                "generic": t["generic"],
                "numpy": t["numpy"],
                "lib_rate": ps / t["library"]["median"],
                "gen_rate": ps / t["generic"]["median"],
                "np_rate": ps / t["numpy"]["median"],
                "pc_rate": ps / t["per component"]["median"],
                "diff": diff,
                "diff_gen": diff_gen,
            }
            row["ratio"] = row["lib_rate"] / row["np_rate"]
            row["gen_ratio"] = row["gen_rate"] / row["np_rate"]
            row["pc_ratio"] = row["lib_rate"] / row["pc_rate"]
            rows.append(row)
            print(
                f"d={d:<4} {method:<14} library {row['lib_rate']:>12,.0f} /s  numpy "
                f"{row['np_rate']:>12,.0f} /s  library/numpy {row['ratio']:5.2f}  "
                f"generic/numpy {row['gen_ratio']:5.2f}  "
                f"per component {row['pc_rate']:>10,.0f} /s ({row['pc_ratio']:4.2f})  "
                f"max diff {diff:.1e}",
                flush=True,
            )
    return rows


def breakdown(reps: int) -> list[dict]:
    """The parts of a stochastic run, per d, interleaved: the noise alone (N_STEPS draws of
    ``(n, d)`` from one generator, as the sampler draws it), the fused ddpm run, the same
    run without noise (ddim: the same kernel arithmetic), the numpy ddpm loop, and the
    fixed cost of a fused step (euler on 100 particles, forced onto the kernel)."""
    process = get_process("ou")
    grid = np.asarray(process.sampling_grid(N_STEPS), dtype=float)
    sch = schedule(process, grid)
    rows = []
    for d in DIMS:
        lib, ref = model(d)
        x_start = np.random.default_rng(100 + d).standard_normal((N_PARTICLES, d))
        buf = np.empty((N_PARTICLES, d))

        def noise(buf=buf):
            rng = np.random.default_rng(7)
            for _ in range(N_STEPS):
                rng.standard_normal(out=buf)

        def run(method, x=x_start, lib=lib):
            return sampling.sample(
                lib,
                None,
                np.random.default_rng(7),
                method=method,
                process=process,
                times=grid,
                x_start=x,
            )

        small = x_start[:100]

        def fixed(small=small, run=run):
            _mixture_sampler.MODE = "fused"
            try:
                run("euler", small)
            finally:
                _mixture_sampler.MODE = "auto"

        t = timeit_interleaved(
            {
                "noise": noise,
                "ddpm": lambda run=run: run("ddpm"),
                "ddim": lambda run=run: run("ddim"),
                "numpy ddpm": lambda ref=ref, x=x_start: numpy_loop(ref, "ddpm", x, grid, sch, 7),
                "fixed": fixed,
            },
            reps,
        )
        row = {"d": d, **{k: v["median"] for k, v in t.items()}}
        rows.append(row)
        print(
            f"d={d:<4} noise {1e3 * row['noise']:7.1f} ms  fused ddpm {1e3 * row['ddpm']:7.1f} ms"
            f"  fused ddim {1e3 * row['ddim']:7.1f} ms  numpy ddpm {1e3 * row['numpy ddpm']:7.1f}"
            f" ms  fixed {1e6 * row['fixed'] / N_STEPS:6.0f} us/step",
            flush=True,
        )
    return rows


def report(rows: list[dict], parts: list[dict], args, load_start, load_end) -> str:
    lines = [
        "# Sampler throughput on an exact mixture score (issue #15 item 6)",
        "",
        f"Written by `python -m benchmarks.bench_sampling{' --quick' if args.quick else ''}` "
        f"on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Medians over "
        f"{args.reps} interleaved repetitions (library, numpy, ...) after one warm-up run "
        "each, best in brackets.",
        "",
        *environment_lines(load_start=load_start, load_end=load_end),
        f"- settings: {blas_threads()}",
        "",
        f"`physdiff.sampling.sample(GaussianMixture.isotropic(...), x_start=..., method=M, "
        f"process='ou', times=OU().sampling_grid({N_STEPS}))` with {N_PARTICLES:,} particles "
        f"and K = {K} isotropic components against the same update rule in a plain numpy "
        "loop over the precomputed schedule with the closed-form numpy score "
        "(`ClosedFormIsotropic` of `bench_ensembles`). Particle-steps/s = particles x "
        f"{N_STEPS} steps / median run time (heun evaluates the score twice a step). "
        "Ratio = library / numpy throughput (the issue's target: >= 4). *Library*: `sample` "
        "as a user calls it, which runs this model on the fused kernel "
        "(`physdiff/ensembles/_mixture_sampler.py`: per block of particles kept in cache, "
        "the posterior over the K components, the score or denoiser and the update of the "
        "step, both Heun stages, in one compiled pass, threaded over blocks); *generic*: "
        "the same call on the generic stepper (`_mixture_sampler.MODE = 'generic'`, the "
        "library before the kernel: about ten `(n, d)` passes, validation and an "
        "`Evaluation` a step), measured in the same interleaved rounds. *Per component*: "
        "the same numpy loop with the score written one component at a time "
        "(`PerComponent`: K passes of `y - mu_k`), a slower baseline for context. Max diff: "
        "the final particles, library against the closed-form numpy loop and against the "
        "generic stepper (the same noise: the kernel's generator draws as the generic "
        "stepper does).",
        "",
        *table(
            "d | method | evals/step | library (ms) | generic (ms) | numpy (ms) | library "
            "particle-steps/s | numpy particle-steps/s | **library / numpy** | generic / "
            "numpy | library / per component | max diff vs numpy / generic",
            (
                [
                    r["d"],
                    r["method"],
                    r["evals"],
                    _ms(r["library"]),
                    _ms(r["generic"]),
                    _ms(r["numpy"]),
                    f"{r['lib_rate']:,.0f}",
                    f"{r['np_rate']:,.0f}",
                    f"**{r['ratio']:.2f}**",
                    f"{r['gen_ratio']:.2f}",
                    f"{r['pc_ratio']:.2f}",
                    f"{r['diff']:.1e} / {r['diff_gen']:.1e}",
                ]
                for r in rows
            ),
            "rlrrrrrrrrrr",
        ),
        "",
        "Reading it. The kernel runs on every core (two here), the numpy loop on one "
        "(`OPENBLAS_NUM_THREADS=1`), so its ratio drops by up to half while other work "
        "holds a core (the load averages). Without noise (euler, heun) a run is one kernel "
        "call in which each block of particles stays in cache through all the steps: no "
        "`(n, d)` pass through memory a step, where the numpy loop makes about ten. With "
        "noise (ddpm, euler-maruyama) the particles are the generic stepper's only if the "
        "noise is the one stream of the caller's generator, drawn in order by one thread "
        "(a ziggurat, about 9 ns a number here): the kernel overlaps that draw with the "
        "step before, but no run is faster than its draw, so library / numpy stays below "
        "the *bound* of the second table (numpy ddpm / noise) however fast the arithmetic "
        "(the *ddim* column: the same run without noise). A ratio of 4 there would need the "
        "noise drawn on several threads from per-block streams: reproducible from the seed "
        "but other particles than the generic stepper's (not done).",
        "",
        "## Where the time goes in the stochastic methods",
        "",
        f"The same model and grid, medians of {args.reps} interleaved rounds. *Noise*: "
        f"{N_STEPS} draws `rng.standard_normal(out=buf)` of `({N_PARTICLES:,}, d)` from one "
        "generator, what the sampler must draw to reproduce the generic stepper's particles "
        "(one stream, so one thread draws it; the kernel overlaps it with the arithmetic "
        "of the step before, on the other core). *ddim*: the fused run of the posterior "
        "step at `eta = 0`, the arithmetic of `ddpm` without its noise. *Fixed*: the cost of "
        "a fused step on 100 particles (dispatch, schedule, thread hand-off). *Bound*: "
        "numpy ddpm / noise, the largest library / numpy ratio a run can reach while one "
        "thread draws the noise.",
        "",
        *table(
            "d | noise (ms) | fused ddpm (ms) | fused ddim (ms) | numpy ddpm (ms) | noise / "
            "numpy ddpm | bound: numpy ddpm / noise | fixed (us/step)",
            (
                [
                    p["d"],
                    f"{1e3 * p['noise']:,.0f}",
                    f"{1e3 * p['ddpm']:,.0f}",
                    f"{1e3 * p['ddim']:,.0f}",
                    f"{1e3 * p['numpy ddpm']:,.0f}",
                    f"{p['noise'] / p['numpy ddpm']:.0%}",
                    f"{p['numpy ddpm'] / p['noise']:.2f}",
                    f"{1e6 * p['fixed'] / N_STEPS:,.0f}",
                ]
                for p in parts
            ),
            "rrrrrrrr",
        ),
    ]
    return with_machine_note(lines)


def _ms(t: dict) -> str:
    return f"{1e3 * t['median']:,.0f} ({1e3 * t['best']:,.0f})"


def main(argv: list[str] | None = None) -> int:
    ap = arguments(__doc__, RESULTS, "fewer repetitions")
    args = ap.parse_args(argv)
    args.reps = 3 if args.quick else 7
    load_start = load_average()
    rows = bench(args.reps)
    parts = breakdown(args.reps)
    load_end = load_average()
    return publish(args.out, report(rows, parts, args, load_start, load_end))


if __name__ == "__main__":
    sys.exit(main())
