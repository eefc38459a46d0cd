"""Training throughput of physdiff.nn (samples per second).

Cases (issue 3, "Performance"): the :class:`~physdiff.nn.ScoreMLP` at d = 64 (batch 256,
default width 256 and depth 4) and the :class:`~physdiff.nn.ScoreUNet` on 8x8 one-channel
images shaped like scikit-learn's digits (random data; batch 128, base 32 channels), EDM
parametrisation and noise levels; and a tiny MLP (d = 2, width 64, depth 2, batch 256)
whose step costs almost no arithmetic, so that its time is the per-step overhead (Python,
dispatch, one small kernel per tensor): the CPU stand-in for a GPU, where the d = 64 MLP
is bound by that overhead too. One step is exactly :func:`physdiff.nn.train`'s step
(minibatch, noise, forward, backward, clipping, AdamW, EMA). After a warm-up, the median of
a few timed windows is reported, on the CPU (torch's default thread count and one thread)
and on CUDA when present (bf16 autocast, as ``train`` uses it there).

Run from the repository root: ``python -m benchmarks.bench_training`` (writes
``benchmarks/results/training.md`` atomically; ``--out`` to write elsewhere).

``--ensemble`` measures :func:`physdiff.nn.train_ensemble` instead: the aggregate samples/s
of K members trained as one batched model against training them one after another with
``train``'s own step (a solo :class:`~physdiff.nn.training._Trainer`), in interleaved
windows on the same machine; the speed-up is the median over windows of their ratio. CPU:
K = 8 and 32 for the d = 8 MLP (hidden 64, depth 2) and the d = 64 MLP (hidden 256, depth
4), batch 256 a member, eager and (d = 8) with ``compile=True`` (the one-off compilation
time reported apart); on CUDA, K = 1 to 256. ``--quick``: fewer cases and windows, no file
written unless ``--out`` is given. ``--json``: print one JSON object, ``speedup`` the
headline case (CPU, d = 8, K = 8, eager), ``rows`` every case. Results:
``benchmarks/results/training_ensemble.md`` (``training_ensemble_cuda.md`` on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import environment_lines, write_atomic
from physdiff.nn import Denoiser, ScoreMLP, ScoreUNet, TrainConfig
from physdiff.nn.ensemble import _check_members, _Ensemble
from physdiff.nn.training import _Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "training.md"
ENSEMBLE_RESULTS = Path(__file__).resolve().parent / "results" / "training_ensemble.md"


def _cases():
    return [
        ("MLP d=64 (hidden 256, depth 4)", 256, 64, lambda: Denoiser(ScoreMLP(64, seed=0))),
        (
            "U-Net 1x8x8 (base 32 channels)",
            128,
            64,
            lambda: Denoiser(ScoreUNet((1, 8, 8), base_channels=32, seed=0)),
        ),
        (
            "MLP d=2 (hidden 64, depth 2): overhead",
            256,
            2,
            lambda: Denoiser(ScoreMLP(2, hidden=64, depth=2, seed=0)),
        ),
    ]


def measure(
    make, dim: int, batch: int, device: str, *, warmup: int, steps: int, windows: int
) -> tuple[float, list[float]]:
    """Median samples/s over ``windows`` windows of ``steps`` training steps each."""
    data = np.random.default_rng(0).standard_normal((4096, dim))
    cfg = TrainConfig(steps=10**9, batch_size=batch, device=device, seed=0)
    tr = _Trainer(make(), data, cfg)
    sync = torch.cuda.synchronize if tr.device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        tr.one_step()
    sync()
    rates = []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.one_step()
        sync()
        rates.append(steps * batch / (time.perf_counter() - t0))
    if not np.all(np.isfinite(tr.all_losses())):
        raise RuntimeError("non-finite loss during the benchmark")
    return statistics.median(rates), rates


def _machine(devices: list[str]) -> list[str]:
    lines = environment_lines(libraries=f"torch {torch.__version__}, numpy {np.__version__}")
    lines.insert(1, f"- torch default threads {torch.get_num_threads()}")
    if "cuda" in devices:
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)} (bf16 autocast)")
    else:
        lines.append("- GPU: none (torch.cuda.is_available() is False)")
    return lines


def _ensemble_cases(device: str, quick: bool) -> list[tuple[str, int, int, int, int, bool]]:
    """``(name, d, hidden, depth, K, compile)`` for one device."""
    small, big = (
        ("MLP d=8 (hidden 64, depth 2)", 8, 64, 2),
        ("MLP d=64 (hidden 256, depth 4)", 64, 256, 4),
    )
    if device == "cuda":
        ks = (1, 64, 256) if quick else (1, 4, 16, 64, 256)
        return [(*net, k, False) for net in (small, big) for k in ks]
    if quick:
        return [(*small, 8, False)]
    return [
        *((*small, k, False) for k in (8, 32)),
        *((*small, k, True) for k in (8, 32)),
        *((*big, k, False) for k in (8, 32)),
    ]


def measure_ensemble(
    d: int,
    hidden: int,
    depth: int,
    k: int,
    device: str,
    *,
    compile_: bool,
    steps: int,
    windows: int,
    batch: int = 256,
) -> dict:
    """Interleaved windows of ``steps`` steps: the solo step, then the K-member step.
    Returns the median solo and ensemble rates (samples/s, the ensemble's aggregate over
    its K members), the median per-window speed-up, and the compilation time."""
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((4096, d)) for _ in range(k)]
    cfg = TrainConfig(steps=10**9, batch_size=batch, device=device, seed=0)
    ecfg = TrainConfig(steps=10**9, batch_size=batch, device=device, seed=0, compile=compile_)

    def make(i):
        return Denoiser(ScoreMLP(d, hidden=hidden, depth=depth, seed=i))

    solo = _Trainer(make(0), data[0], cfg)
    ens = _Ensemble(*_check_members([make(i) for i in range(k)], data, ecfg, None))
    sync = torch.cuda.synchronize if solo.device.type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    ens.one_step()  # compiles, when asked
    sync()
    first = time.perf_counter() - t0
    for _ in range(5):
        solo.one_step()
        ens.one_step()
    sync()
    rs, re_, ratio = [], [], []
    for _ in range(windows):
        t0 = time.perf_counter()
        for _ in range(steps):
            solo.one_step()
        sync()
        t1 = time.perf_counter()
        for _ in range(steps):
            ens.one_step()
        sync()
        t2 = time.perf_counter()
        rs.append(steps * batch / (t1 - t0))
        re_.append(k * steps * batch / (t2 - t1))
        ratio.append(re_[-1] / rs[-1])
    if not (np.all(np.isfinite(solo.all_losses())) and np.all(np.isfinite(ens.all_losses()))):
        raise RuntimeError("non-finite loss during the benchmark")
    return {
        "solo_samples_per_second": statistics.median(rs),
        "ensemble_samples_per_second": statistics.median(re_),
        "speedup": statistics.median(ratio),
        "speedup_range": [min(ratio), max(ratio)],
        "first_step_seconds": first,
    }


def ensemble_main(args) -> int:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    header = _machine(devices)
    load0 = os.getloadavg()
    rows, table = [], []
    steps = 5 if args.quick else args.steps
    windows = 3 if args.quick else args.windows
    for device in devices:
        for name, d, hidden, depth, k, comp in _ensemble_cases(device, args.quick):
            r = measure_ensemble(
                d, hidden, depth, k, device, compile_=comp, steps=steps, windows=windows
            )
            threads = torch.get_num_threads()
            where = device if device == "cuda" else f"cpu, {threads} threads"
            rows.append({"case": name, "device": where, "K": k, "compile": comp, **r})
            lo, hi = r["speedup_range"]
            line = (
                f"| {name} | {where} | {k} | {'yes' if comp else 'no'} | "
                f"{r['solo_samples_per_second']:,.0f} | {r['ensemble_samples_per_second']:,.0f} | "
                f"{r['speedup']:.2f} ({lo:.2f} - {hi:.2f}) | {r['first_step_seconds']:.1f} |"
            )
            table.append(line)
            if not args.json:
                print(line, flush=True)
    load1 = os.getloadavg()
    head = next(
        (r for r in rows if r["device"].startswith("cpu") and r["K"] == 8 and not r["compile"]),
        rows[0],
    )
    if args.json:
        print(json.dumps({"speedup": head["speedup"], "rows": rows, "load": [load0, load1]}))
    out = None if args.out == RESULTS else args.out  # --out given
    if out is None and not args.quick:
        name = "training_ensemble_cuda.md" if "cuda" in devices else "training_ensemble.md"
        out = ENSEMBLE_RESULTS.with_name(name)
    if out is not None:
        text = "\n".join(
            [
                "# Ensemble training throughput (physdiff.nn.train_ensemble)",
                "",
                "Written by `python -m benchmarks.bench_training --ensemble` on "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Solo: `train`'s own step, one "
                "network; ensemble: K networks of the same architecture as one batched "
                "step (each with its own data, seed and draws), batch 256 a member. Both "
                f"measured in interleaved windows of {steps} steps ({windows} windows); "
                "aggregate samples/s = K x 256 x steps/s; speed-up = median over windows of "
                "ensemble aggregate / solo (range in brackets). The first step's time holds "
                "the `torch.compile` compilation where compile = yes.",
                "",
                *header,
                f"- load average at end (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load1)}",
                "",
                "| case | device | K | compile | solo samples/s | ensemble samples/s "
                "| speed-up | first step s |",
                "|---|---|---:|---|---:|---:|---:|---:|",
                *table,
                "",
            ]
        )
        write_atomic(Path(out), text)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--ensemble", action="store_true", help="time train_ensemble (docstring)")
    ap.add_argument("--quick", action="store_true", help="with --ensemble: a short run")
    ap.add_argument("--json", action="store_true", help="with --ensemble: print one JSON object")
    args = ap.parse_args(argv)
    if args.ensemble:
        return ensemble_main(args)
    if args.quick or args.json:
        ap.error("--quick and --json apply to --ensemble only")

    default_threads = torch.get_num_threads()
    setups = [("cpu", default_threads)]
    if default_threads != 1:
        setups.append(("cpu", 1))
    devices = ["cpu"]
    if torch.cuda.is_available():
        setups.append(("cuda", default_threads))
        devices.append("cuda")
    header = _machine(devices)

    rows = []
    for name, batch, dim, make in _cases():
        for device, threads in setups:
            torch.set_num_threads(threads)
            med, rates = measure(
                make, dim, batch, device, warmup=args.warmup, steps=args.steps, windows=args.windows
            )
            spread = f"{min(rates):,.0f} - {max(rates):,.0f}"
            where = device if device == "cuda" else f"cpu, {threads} thread(s)"
            ms = 1e3 * batch / med
            rows.append(f"| {name} | {batch} | {where} | {med:,.0f} | {spread} | {ms:.2f} |")
            print(rows[-1], flush=True)
        torch.set_num_threads(default_threads)

    text = "\n".join(
        [
            "# Training throughput (physdiff.nn)",
            "",
            "Written by `python -m benchmarks.bench_training` on "
            f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}. One step = one call of the step that "
            "`physdiff.nn.train` runs (minibatch, noise levels, forward, backward, gradient "
            "clipping, AdamW, EMA), EDM parametrisation; median over "
            f"{args.windows} windows of {args.steps} steps after {args.warmup} warm-up steps.",
            "",
            *header,
            "",
            "| case | batch | device | samples/s (median) | range over windows | ms/step |",
            "|---|---:|---|---:|---:|---:|",
            *rows,
            "",
            "On a shared machine other load disturbs the CPU numbers (see the load average). "
            "With two OpenMP threads competing with other processes for two cores, small "
            "matrix products can slow down by 10-100x; the one-thread rows are the robust "
            "figure for small networks.",
            "",
        ]
    )
    write_atomic(args.out, text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
