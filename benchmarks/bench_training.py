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
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import environment_lines, write_atomic
from physdiff.nn import Denoiser, ScoreMLP, ScoreUNet, TrainConfig
from physdiff.nn.training import _Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "training.md"


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed window")
    ap.add_argument("--windows", type=int, default=5)
    args = ap.parse_args(argv)

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
