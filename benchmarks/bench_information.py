"""Benchmark of the class-information numerics, :mod:`physdiff.information` (issue 6,
"Performance").

Run from the repository root::

    python -m benchmarks.bench_information            # a few minutes on 2 cores
    python -m benchmarks.bench_information --quick    # fewer repetitions and particles

Two targets:

* **entropy profiles of a 1-D mixture at 1000 noise levels in under a second**:
  :func:`~physdiff.information.conditional_entropy_quadrature` plus
  :func:`~physdiff.information.entropy_rate_quadrature` (Gauss-Hermite, order 200, all
  levels in one vectorised call) on ``np.geomspace(1e-3, 1e4, 1000)``, for the issue's
  four point masses at -8, -4, 6, 8 and for four Gaussians (variance 0.5) at the same
  places. Baseline, measured in the same run: adaptive ``scipy.integrate.quad`` per level
  and per component of the same integrands (one scalar posterior per call, the
  straightforward way), timed on 20 of the levels and scaled to 1000; its values also
  give the quadrature's accuracy at those levels.
* **online classification adds at most 30% to a sampler run**: DDPM ancestral sampling
  on the DDPM process (1000 steps) of the four-class 1-D mixture (10,000 particles) and of
  a four-class Gaussian mixture in d = 16 (2,000 particles), alone and with the online
  classifier recording ``p(c | x_t)`` at every step: the library's
  :class:`~physdiff.information.OnlineClassifier` on the plain mixture (with and
  without the history), and the same classifier reading the step records of a run on
  :class:`physdiff.classes.MixtureClasses` (the sampler evaluates the K conditional
  denoisers with the mixture and the classifier reads them back). The
  posteriors of the two classifiers are compared (max abs difference), and the cached
  sampler's particles with the plain one's. For reference, the same on an (untrained)
  class-conditional ``ScoreMLP`` (d = 8, 4 classes), where the classifier needs K network
  evaluations per step that the sampler does not make.

For reference as well: ``NetworkClasses.denoise_all`` on that network with every label in
one batched pass (``NetworkScoreModel.denoise_labels``, issue #16) against one call per
label, at 100, 1000 and 10,000 points.

Times are medians (best in brackets) of repetitions interleaved between the variants,
after a warm-up. Results: ``benchmarks/results/information.md``, written atomically, and
the tables on stdout.
"""

from __future__ import annotations

import math
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
from physdiff import information as I
from physdiff import sampling
from physdiff.classes import as_conditional
from physdiff.ensembles import GaussianMixture
from physdiff.processes import DDPM

RESULTS = Path(__file__).resolve().parent / "results" / "information.md"
DELTAS = np.geomspace(1e-3, 1e4, 1000)
MEANS = [[-8.0], [-4.0], [6.0], [8.0]]


# -- entropy profiles ------------------------------------------------------------------------
def quad_baseline(model: GaussianMixture, deltas) -> tuple[np.ndarray, np.ndarray]:
    """``H(C | y)`` and ``dH/d delta`` per level by ``scipy.integrate.quad`` per component,
    the integrands evaluated one point at a time."""
    from scipy.integrate import quad

    w = model.weights
    means = model.means[:, 0]
    var = np.array([float(c.covariance[0, 0]) for c in model.components])
    comps = model.components
    H, R = [], []
    for dl in np.atleast_1d(deltas):

        def post(y, dl=dl):
            return model.posterior(np.array([[y]]), dl)[0]

        def h(y, dl=dl):
            p = post(y)
            p = p[p > 0]
            return float(-np.sum(p * np.log(p)))

        def gap(y, dl=dl):
            p = post(y)
            s = np.array([c.score(np.array([[y]]), dl)[0, 0] for c in comps])
            return float(0.5 * np.sum(p * (s - p @ s) ** 2))

        hs, rs = 0.0, 0.0
        for k in range(len(w)):
            sd = math.sqrt(var[k] + dl)

            def dens(y, k=k, sd=sd):
                return math.exp(-0.5 * ((y - means[k]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

            lo, hi = means[k] - 12 * sd, means[k] + 12 * sd
            pts = [m for m in means if lo < m < hi]
            opts = {"points": pts, "limit": 200, "epsabs": 1e-13, "epsrel": 1e-11}
            hs += w[k] * quad(lambda y, dens=dens: dens(y) * h(y), lo, hi, **opts)[0]
            rs += w[k] * quad(lambda y, dens=dens: dens(y) * gap(y), lo, hi, **opts)[0]
        H.append(hs)
        R.append(rs)
    return np.array(H), np.array(R)


def bench_profiles(reps: int, n_baseline: int) -> list[dict]:
    rows = []
    models = {
        "point masses at -8, -4, 6, 8": GaussianMixture.isotropic([0.25] * 4, MEANS, [0.0] * 4),
        "4 Gaussians (var 0.5) at -8, -4, 6, 8": GaussianMixture.isotropic(
            [0.25] * 4, MEANS, [0.5] * 4
        ),
    }
    sub = DELTAS[np.linspace(0, DELTAS.size - 1, n_baseline).astype(int)]
    for name, model in models.items():
        t = timeit_interleaved(
            {
                "H": lambda m=model: I.conditional_entropy_quadrature(m, DELTAS),
                "rate": lambda m=model: I.entropy_rate_quadrature(m, DELTAS),
                "both": lambda m=model: (
                    I.conditional_entropy_quadrature(m, DELTAS),
                    I.entropy_rate_quadrature(m, DELTAS),
                ),
            },
            reps,
        )
        t0 = time.perf_counter()
        Hq, Rq = quad_baseline(model, sub)
        base = (time.perf_counter() - t0) * DELTAS.size / sub.size
        Hg = I.conditional_entropy_quadrature(model, sub)
        Rg = I.entropy_rate_quadrature(model, sub)
        rows.append(
            {
                "case": name,
                "H": t["H"],
                "rate": t["rate"],
                "both": t["both"],
                "baseline": base,
                "err_H": float(np.max(np.abs(Hg - Hq))),
                "err_R": float(np.max(np.abs(Rg - Rq)) / np.max(Rq)),
                "err_R_at": float(sub[np.argmax(np.abs(Rg - Rq))]),
            }
        )
    return rows


# -- online classification --------------------------------------------------------------------
def _four_d16() -> GaussianMixture:
    rng = np.random.default_rng(3)
    means = 3.0 * rng.standard_normal((4, 16)) / 4.0
    return GaussianMixture.isotropic([0.25] * 4, means, [0.3] * 4)


def bench_online(reps: int, n1: int, n16: int, with_network: bool) -> list[dict]:
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -1.0)
    cases = [
        (
            "1-D point masses at -8, -4, 6, 8",
            GaussianMixture.isotropic([0.25] * 4, MEANS, [0.0] * 4),
            n1,
        ),
        ("d = 16, 4 Gaussians (var 0.3)", _four_d16(), n16),
    ]
    rows = []
    for name, model, n in cases:
        out: dict[str, object] = {}

        def run(m, clf=None, key=None, n=n, out=out):
            res = sampling.sample(
                m,
                n,
                np.random.default_rng(0),
                method="ddpm",
                process=proc,
                times=grid,
                record=None if clf is None else clf.recorder(),
            )
            if key is not None:
                out[key] = (res.x, None if clf is None else clf.posterior)

        def plain_clf(model=model):
            run(model, I.OnlineClassifier(as_conditional(model).class_models(), proc), "plain+clf")

        def plain_nohist(model=model):
            clf = I.OnlineClassifier(as_conditional(model).class_models(), proc, keep_history=False)
            run(model, clf, "plain+clf-nohist")

        def cached_clf(model=model):
            c = as_conditional(model)
            run(c, I.OnlineClassifier(c, proc), "cache+clf")

        def cached_nohist(model=model):
            c = as_conditional(model)
            run(c, I.OnlineClassifier(c, proc, keep_history=False), "cache+clf-nohist")

        t = timeit_interleaved(
            {
                "sampler": lambda model=model: run(model, key="sampler"),
                "sampler + OnlineClassifier": plain_clf,
                "sampler + OnlineClassifier, no history": plain_nohist,
                "classes sampler": lambda model=model: run(as_conditional(model)),
                "classes sampler + OnlineClassifier (step records)": cached_clf,
                "classes sampler + OnlineClassifier (step records), no history": cached_nohist,
            },
            reps,
        )
        diff_post = float(
            max(
                np.max(np.abs(out["plain+clf"][1] - out["cache+clf"][1])),
                np.max(np.abs(out["plain+clf"][1] - out["cache+clf-nohist"][1])),
                np.max(np.abs(out["plain+clf"][1] - out["plain+clf-nohist"][1])),
            )
        )
        diff_x = float(np.max(np.abs(out["sampler"][0] - out["cache+clf"][0])))
        rows.append({"case": name, "n": n, "t": t, "diff_post": diff_post, "diff_x": diff_x})
    if with_network:
        rows.append(bench_network(reps))
    return rows


def bench_network(reps: int) -> dict:
    import torch

    from physdiff import nn

    torch.set_num_threads(1)
    den = nn.Denoiser(
        nn.ScoreMLP(8, hidden=64, depth=2, n_classes=4, seed=0), parametrisation="edm"
    )
    net = nn.NetworkScoreModel(den, device="cpu")
    proc = DDPM()
    grid = np.arange(999.0, -1.0, -5.0)
    n = 1000

    def run(m, clf=None):
        sampling.sample(
            m,
            n,
            np.random.default_rng(0),
            method="ddpm",
            process=proc,
            times=grid,
            record=None if clf is None else clf.recorder(),
        )

    def cached():
        c = as_conditional(net)
        run(c, I.OnlineClassifier(c, proc))

    def cached_nohist():
        c = as_conditional(net)
        run(c, I.OnlineClassifier(c, proc, keep_history=False))

    t = timeit_interleaved(
        {
            "sampler": lambda: run(net),
            "sampler + OnlineClassifier": lambda: run(
                net, I.OnlineClassifier(as_conditional(net).class_models(), proc)
            ),
            "sampler + OnlineClassifier, no history": lambda: run(
                net,
                I.OnlineClassifier(as_conditional(net).class_models(), proc, keep_history=False),
            ),
            "classes sampler": lambda: run(as_conditional(net)),
            "classes sampler + OnlineClassifier (step records)": cached,
            "classes sampler + OnlineClassifier (step records), no history": cached_nohist,
        },
        max(1, reps // 2),
    )
    return {
        "case": "conditional ScoreMLP d = 8, 4 classes (200 steps, 1 thread)",
        "n": n,
        "t": t,
        "diff_post": float("nan"),
        "diff_x": float("nan"),
    }


def bench_labels(reps: int) -> list[dict]:
    """``NetworkClasses.denoise_all`` of the same conditional ``ScoreMLP`` (d = 8, 4 classes):
    every label in one batched network pass (``NetworkScoreModel.denoise_labels``) against
    one call per label (``ModelClasses`` of the ``C + 1`` conditional views)."""
    import torch

    from physdiff import nn
    from physdiff.classes import ModelClasses, NetworkClasses

    torch.set_num_threads(1)
    den = nn.Denoiser(
        nn.ScoreMLP(8, hidden=64, depth=2, n_classes=4, seed=0), parametrisation="edm"
    )
    net = nn.NetworkScoreModel(den, device="cpu")
    batched = NetworkClasses(net)
    batched_1024 = NetworkClasses(nn.NetworkScoreModel(den, device="cpu", batch_size=1024))
    per_label = ModelClasses(net.unconditional(), [net.conditional(c) for c in range(4)])
    rows = []
    for n in (100, 1000, 10000):
        y = np.random.default_rng(n).standard_normal((n, 8))
        t = timeit_interleaved(
            {
                "batched": lambda y=y: batched.denoise_all(y, 0.5),
                "batched, 1024 rows": lambda y=y: batched_1024.denoise_all(y, 0.5),
                "per label": lambda y=y: per_label.denoise_all(y, 0.5),
            },
            reps,
        )
        a, b = batched.denoise_all(y, 0.5), per_label.denoise_all(y, 0.5)
        diff = max(
            float(np.max(np.abs(a.classes - b.classes))),
            float(np.max(np.abs(a.unconditional - b.unconditional))),
        )
        rows.append({"n": n, "t": t, "diff": diff, "dtype": str(net.dtype)})
    # the network's cost per row at two call sizes (one label, one call each)
    one = nn.NetworkScoreModel(den, device="cpu", batch_size=1 << 20).conditional(0)
    per_row = {}
    for size in (1000, 4096):
        y = np.random.default_rng(size).standard_normal((size, 8))
        per_row[size] = timeit_interleaved({"call": lambda y=y: one.denoise(y, 0.5)}, reps)["call"]
    rows.append({"per_row": per_row})
    return rows


# -- report -----------------------------------------------------------------------------------
def _ms(t: dict) -> str:
    return f"{1e3 * t['median']:,.1f} ({1e3 * t['best']:,.1f})"


def report(prof: list[dict], online: list[dict], args, load, labels=()) -> str:
    lines = [
        "# Class information numerics (physdiff.information)",
        "",
        f"Written by `python -m benchmarks.bench_information{' --quick' if args.quick else ''}` "
        f"on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Times in milliseconds: "
        "median over the repetitions, best in brackets, after one warm-up call; the "
        "variants' repetitions are interleaved. Targets (issue 6): entropy profiles of a 1-D "
        "mixture at 1000 noise levels under 1000 ms; online classification adds at most 30% "
        "to a sampler run.",
        "",
        *environment_lines(load_start=load),
        "",
        "## Entropy profiles at 1000 noise levels",
        "",
        "`conditional_entropy_quadrature(model, np.geomspace(1e-3, 1e4, 1000))` (H) and "
        "`entropy_rate_quadrature` (rate), Gauss-Hermite order 200. Baseline: "
        "`scipy.integrate.quad` per level and component (one scalar posterior per integrand "
        f"call), timed on {args.n_baseline} levels spread over the range and scaled to 1000. "
        "Accuracy: the largest difference to the baseline at those levels (absolute for H, "
        "relative to the largest rate for the rate, with the level where it occurs). "
        "The Gauss-Hermite nodes are cached per order in the library (`information._nodes`, "
        "an `lru_cache`; before, each call solved the order-200 eigenvalue problem again and "
        "H + rate took about 0.40 s); the mixture's posteriors are computed on `(K, n)` rows "
        "(benchmarks/results/ensembles.md).",
        "",
        "| case | H | rate | H + rate | target | scipy.quad "
        "baseline (1000 levels) | speed-up | max abs error H | max error rate / max rate "
        "(at delta) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in prof:
        ok = "met" if r["both"]["median"] < 1.0 else "missed"
        lines.append(
            f"| {r['case']} | {_ms(r['H'])} | {_ms(r['rate'])} | {_ms(r['both'])} | {ok} | "
            f"{1e3 * r['baseline']:,.0f} | {r['baseline'] / r['both']['median']:,.0f}x | "
            f"{r['err_H']:.1e} | {r['err_R']:.1e} ({r['err_R_at']:.3g}) |"
        )
    lines += [
        "",
        "## Online classification during a sampler run",
        "",
        "DDPM ancestral sampling on the DDPM process, 1000 steps (the network: 200), "
        "`record=` the classifier. Overhead = time with the classifier / time of the same "
        "sampler without it - 1 (the baseline, measured in the same run, repetitions "
        "interleaved). The library's `OnlineClassifier` is measured on the plain mixture: it "
        "evaluates the K class denoisers itself (in 1-D the Gaussian closed form, all classes "
        "at once). `OnlineClassifier` reading the step records (the same update) "
        "runs on `MixtureClasses` of the mixture, whose own sampler run is the "
        "reference for its overhead, and reads the K denoisers back from the sampler's "
        "evaluation. *vs plain sampler*: the cached run with the classifier against the plain "
        "sampler alone, what adding online classification costs a user of the plain sampler. "
        "*No history*: `keep_history=False`, which updates the log-posterior in place and "
        "forms the posterior only when asked (`clf.posterior`) instead of recording a new "
        "`(n, K)` posterior at every step. Max differences: posteriors of all the classifiers "
        "against the library's with history, particles of the two samplers. The network row "
        "is for reference only: there the classifier needs K conditional network "
        "evaluations per step that the sampler does not make (the classes sampler, asked "
        "for the classes by the classifier's recorder, makes all K + 1 in one batched "
        "network pass, `NetworkScoreModel.denoise_labels`), so no target applies.",
        "",
        "| case | n | sampler | + OnlineClassifier | overhead | target "
        "| + OnlineClassifier, no history | overhead | classes sampler "
        "| + OnlineClassifier (step records) | overhead | vs plain sampler | target "
        "| + Cached..., no history | overhead | max diff post. | max diff x |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in online:
        t = r["t"]
        a, b = t["sampler"]["median"], t["sampler + OnlineClassifier"]["median"]
        b2 = t["sampler + OnlineClassifier, no history"]["median"]
        c = t["classes sampler"]["median"]
        d = t["classes sampler + OnlineClassifier (step records)"]["median"]
        e = t["classes sampler + OnlineClassifier (step records), no history"]["median"]
        ok_b = "met" if b / a - 1 <= 0.30 else "missed"
        ok = "met" if d / c - 1 <= 0.30 else "missed"
        if r["case"].startswith("conditional"):
            ok = ok_b = "n/a"
        lines.append(
            f"| {r['case']} | {r['n']:,} | {_ms(t['sampler'])} | "
            f"{_ms(t['sampler + OnlineClassifier'])} | {100 * (b / a - 1):+.0f}% | {ok_b} | "
            f"{_ms(t['sampler + OnlineClassifier, no history'])} | {100 * (b2 / a - 1):+.0f}% | "
            f"{_ms(t['classes sampler'])} | "
            f"{_ms(t['classes sampler + OnlineClassifier (step records)'])} | "
            f"{100 * (d / c - 1):+.0f}% | {100 * (d / a - 1):+.0f}% | {ok} | "
            f"{_ms(t['classes sampler + OnlineClassifier (step records), no history'])} | "
            f"{100 * (e / c - 1):+.0f}% | "
            f"{r['diff_post']:.1e} | {r['diff_x']:.1e} |"
        )
    lines += [
        "",
        "One Bayes update serves both classifiers (`OnlineClassifier.update`; the cached one "
        "only overrides where the K class denoisers come from). It keeps the log-posterior "
        "as `(K, n)`, so the normalisations over the classes reduce over contiguous rows "
        "(numpy reduces the short last axis of an `(n, K)` array some 100x slower), applies "
        "the exact Gaussian kernel in closed form through each component's eigenbasis "
        "(Woodbury; no Cholesky factorisation or solve per class and step), works on flat "
        "`(K, n d)` rows reused across steps and reads the schedule without per-call "
        "validation. In 1-D the Gaussian class denoisers `mu_k + s_k (y - mu_k)` are formed "
        "for all classes in two passes. What is left: about ten numpy passes over the "
        "`(K, n)` log-posterior per step and, with the history, a fresh `(n, K)` posterior "
        "per step (320 MB over the run for 10,000 particles), whose first-touch page faults "
        "cost about as much as the update: the *no history* columns. The two "
        "classifiers' overheads are against different baselines (the plain sampler and the "
        "classes sampler); since the mixture computes its posteriors on `(K, n)` rows "
        "(benchmarks/results/ensembles.md) the plain sampler is the faster one in 1-D, which "
        "makes the same extra time a larger percentage. For a network "
        "the K conditional evaluations are new work, not shared with the sampler, so the "
        "overhead there is about K network calls per step whichever classifier is used.",
    ]
    if labels:
        lines += [
            "",
            "## Every label in one network pass",
            "",
            "`NetworkClasses(net).denoise_all(y, 0.5)` on the same untrained conditional "
            "`ScoreMLP` (d = 8, 4 classes, float32, 1 torch thread): *batched*, the "
            "`C + 1 = 5` labels in one label-major pass through "
            "`NetworkScoreModel.denoise_labels` in calls of at most `batch_size` rows (the "
            "default 4096, and 1024); *per label*, one `denoise` call per label "
            "(`ModelClasses` of the conditional views, the path before). Ratio = per label / "
            "batched, in the same run. Max diff: the two paths' largest absolute difference.",
            "",
            "| n | batched | batched, 1024 rows | per label | per label / batched "
            "| per label / batched, 1024 rows | max diff |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        cost = labels[-1]["per_row"]
        us = {k: 1e6 * v["median"] / k for k, v in cost.items()}
        for r in labels[:-1]:
            t = r["t"]
            a, a2, b = (t[k]["median"] for k in ("batched", "batched, 1024 rows", "per label"))
            lines.append(
                f"| {r['n']:,} | {_ms(t['batched'])} | {_ms(t['batched, 1024 rows'])} | "
                f"{_ms(t['per label'])} | {b / a:.2f}x | {b / a2:.2f}x | {r['diff']:.1e} |"
            )
        lines += [
            "",
            "The batched pass saves the per-call cost (Python, validation, torch dispatch) of "
            "the C extra calls, which dominates for small batches; for large ones the "
            "network's own cost per row dominates and both paths do the same arithmetic. "
            "That cost depends on the rows a call on a CPU (cache): "
            f"{us[1000]:.2f} us a row in one call of 1000 rows, {us[4096]:.2f} us in one of "
            "4096 (one `denoise` call each, in this run), which is what the 1024-row column "
            "probes.",
        ]
    return with_machine_note(lines)


def main(argv=None) -> int:
    ap = arguments(__doc__, RESULTS, "fewer repetitions and particles")
    ap.add_argument("--no-network", action="store_true", help="skip the network rows (torch)")
    args = ap.parse_args(argv)
    args.n_baseline = 8 if args.quick else 20
    load = load_average()
    reps = 3 if args.quick else 7
    prof = bench_profiles(reps, args.n_baseline)
    online = bench_online(
        2 if args.quick else 5,
        2000 if args.quick else 10000,
        500 if args.quick else 2000,
        not args.no_network,
    )
    labels = [] if args.no_network else bench_labels(3 if args.quick else 7)
    text = report(prof, online, args, load, labels)
    print(text)
    return publish(args.out, text)


if __name__ == "__main__":
    raise SystemExit(main())
