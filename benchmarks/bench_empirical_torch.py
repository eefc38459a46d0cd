"""Benchmark of the empirical score on torch: physdiff's chunked path against a plain torch
formulation on the same device, float32 and float64, and the device's matrix-product rate.

Run from the repository root::

    python -m benchmarks.bench_empirical_torch                  # CUDA if present, else CPU
    python -m benchmarks.bench_empirical_torch --device cpu --quick
    python -m benchmarks.bench_empirical_torch --device cuda    # the GPU run of issue #15

What it times, for each size ``(d, n)`` with ``m`` queries (noisy training points at noise
variance ``delta`` on standard normal data), interleaved, after a warm-up:

* *physdiff*: ``Empirical(points_on_device).stats(y, delta)`` (score, denoiser, log-sum-exp
  and participation ratio; blocks of at most ``chunk`` query-point pairs, the accuracy rule
  of physdiff._kernels);
* *plain torch*: ``d2 = |y|^2 + |a|^2 - 2 y a^T`` (one matmul), ``lse = logsumexp(-d2 /
  2 delta)``, ``w = exp(l - lse)``, ``den = w @ a``, ``pr = 1 / sum w^2`` on the whole
  ``(m, n)`` matrix at once (what a user writes by hand; no accuracy control);
* the device's float32 matrix-product rate: ``torch.matmul`` of two float32 square
  matrices (8192 on a GPU, 2048 on the CPU; default settings: no TF32), in GFLOP/s.

Each row gives both times, their ratio (>1: physdiff faster), physdiff's rate ``4 m n d /
t`` (two products of ``2 m n d`` flops) as a fraction of the float32 matmul rate, and the
error of each denoiser against plain torch in float64 on the float64 copies of the same
numbers (relative to max |a|). Issue #15's targets on a CUDA GPU: speed-up >= 1 at every
size, and >= 50% of the matmul rate at d >= 784, n >= 1e5 (float32); the *target* column
says met / missed. Results: ``benchmarks/results/empirical_torch.md`` (a CPU run) or
``empirical_torch_cuda.md`` (a CUDA run), written atomically, and the table on stdout.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import (
    MACHINE_NOTE,
    arguments,
    environment_lines,
    load_average,
    publish,
)

HERE = Path(__file__).resolve().parent / "results"
SIZES_GPU = [(2, 10_000), (64, 10_000), (784, 10_000), (784, 100_000), (3072, 50_000)]
SIZES_GPU += [(3072, 100_000)]
SIZES_CPU = [(2, 10_000), (64, 10_000), (784, 10_000), (784, 20_000), (3072, 5_000)]
SIZES_QUICK = [(2, 5_000), (64, 5_000), (784, 5_000)]


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(torch, device, fns, reps):
    """Median wall time of each function (interleaved, after one warm-up each)."""
    for fn in fns.values():
        fn()
    _sync(torch, device)
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            _sync(torch, device)
            t0 = time.perf_counter()
            fn()
            _sync(torch, device)
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def plain_torch(torch, y, a, delta):
    """The hand-written empirical score: the whole ``(m, n)`` matrix at once."""
    d2 = (y * y).sum(1, keepdim=True) + (a * a).sum(1) - 2.0 * (y @ a.T)
    logits = -d2.clamp_min_(0.0) / (2.0 * delta)
    lse = torch.logsumexp(logits, dim=1)
    w = torch.exp(logits - lse.unsqueeze(1))
    return w @ a, lse, 1.0 / (w * w).sum(1)


def matmul_rate(torch, device, n=4096, reps=5):
    """GFLOP/s of a float32 ``n x n`` matrix product on ``device`` (default settings)."""
    a = torch.randn(n, n, device=device, dtype=torch.float32)
    b = torch.randn(n, n, device=device, dtype=torch.float32)
    t = _time(torch, device, {"mm": lambda: a @ b}, reps)["mm"]
    return 2.0 * n**3 / t / 1e9


def _reference(torch, y, a, delta):
    """Plain torch in float64 on float64 copies (the accuracy reference), in query blocks."""
    y64, a64 = y.to(torch.float64), a.to(torch.float64)
    step = max(1, (1 << 26) // a.shape[0])
    return torch.cat(
        [plain_torch(torch, y64[i : i + step], a64, delta)[0] for i in range(0, y.shape[0], step)]
    )


def _target(d, n, dt, speedup, pct, gpu):
    """Issue #15's verdict for a row (GPU runs only)."""
    if not gpu:
        return "(CPU run)"
    if speedup != speedup:
        return "n/a"
    ok = speedup >= 1.0
    if dt == "float32" and d >= 784 and n >= 100_000:
        ok = ok and pct >= 50.0
    return "met" if ok else "**missed**"


def main(argv=None) -> int:
    ap = arguments(__doc__, HERE / "empirical_torch.md", "three small sizes, fewer repetitions")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if present)")
    ap.add_argument("--delta", type=float, default=1.0, help="noise variance of the queries")
    ap.add_argument("--queries", type=int, default=None, help="m (default 1024 GPU, 256 CPU)")
    args = ap.parse_args(argv)
    import torch

    from physdiff.ensembles import Empirical

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        print("no CUDA device: nothing measured, nothing written", file=sys.stderr)
        return 2
    if args.out == HERE / "empirical_torch.md" and gpu:
        args.out = HERE / "empirical_torch_cuda.md"
    sizes = SIZES_QUICK if args.quick else (SIZES_GPU if gpu else SIZES_CPU)
    m = args.queries or (1024 if gpu else 256)
    reps = 3 if args.quick else (10 if gpu else 5)
    load0 = load_average()
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    rate = matmul_rate(torch, device, 8192 if gpu else 2048)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    rows = []
    for d, n in sizes:
        for dt in (torch.float32, torch.float64):
            gen = torch.Generator(device="cpu").manual_seed(d + n)
            a = torch.randn(n, d, generator=gen, dtype=dt).to(device)
            pick = torch.randint(0, n, (m,), generator=gen)
            z = torch.randn(m, d, generator=gen, dtype=dt).to(device)
            y = a[pick] + args.delta**0.5 * z
            emp = Empirical(a)
            fns = {
                "physdiff": lambda emp=emp, y=y: emp.stats(y, args.delta),
                "plain": lambda y=y, a=a: plain_torch(torch, y, a, args.delta),
            }
            t = {"physdiff": float("nan"), "plain": float("nan")}
            err = {"physdiff": float("nan"), "plain": float("nan")}
            try:
                ref = _reference(torch, y, a, args.delta)
                scale = float(a.abs().max())
                for k, fn in fns.items():
                    try:
                        err[k] = float((fn()[0].to(torch.float64) - ref).abs().max()) / scale
                    except oom:  # the plain formulation's (m, n) matrices
                        del fns[k]
                        break
                t.update(_time(torch, device, fns, reps))
            except oom:
                pass
            flops = 4.0 * m * n * d
            gfl = flops / t["physdiff"] / 1e9
            sp = t["plain"] / t["physdiff"]
            dts = str(dt).split(".")[1]
            rows.append((d, n, dts, t, gfl, err, _target(d, n, dts, sp, 100 * gfl / rate, gpu)))
            print(rows[-1], file=sys.stderr)
            del a, y, z, emp, fns
            if gpu:
                torch.cuda.empty_cache()
    load1 = load_average()
    kind = "CUDA GPU" if gpu else "CPU (not the GPU run of issue #15: no target is judged)"
    lines = [
        "# Empirical score on torch (physdiff._kernels._torch)",
        "",
        f"Written by `python -m benchmarks.bench_empirical_torch --device {device}"
        f"{' --quick' if args.quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}. Device: **{name}** "
        f"({kind}). Medians of {reps} interleaved repetitions after a warm-up.",
        "",
        *environment_lines(
            load_start=load0, load_end=load1, libraries=f"torch {torch.__version__}"
        ),
        f"- float32 matrix-product rate of this device (torch.matmul, precision "
        f"'{torch.get_float32_matmul_precision()}'): {rate:,.0f} GFLOP/s",
        "",
        f"m = {m} queries (noisy training points), delta = {args.delta:g}, standard normal "
        "data. *speed-up*: plain torch time / physdiff time (>1: physdiff faster). "
        "*rate*: physdiff's 4 m n d / t; *% of matmul*: that over the float32 matmul rate. "
        "*err*: largest error of the denoiser against plain torch in float64 on the same "
        "numbers, over max |a| (plain torch in float64 is that reference: 0 by "
        "construction). *target* (GPU runs): speed-up >= 1, and >= 50% of the "
        "matmul rate at d >= 784, n >= 1e5 in float32 (issue #15).",
        "",
        "| d | n | dtype | physdiff (ms) | plain torch (ms) | speed-up | rate (GFLOP/s) "
        "| % of matmul | err physdiff | err plain | target |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d, n, dt, t, gfl, err, verdict in rows:
        lines.append(
            f"| {d} | {n:,} | {dt} | {1e3 * t['physdiff']:,.1f} | {1e3 * t['plain']:,.1f} | "
            f"{t['plain'] / t['physdiff']:.2f}x | {gfl:,.1f} | {100 * gfl / rate:.0f}% "
            f"| {err['physdiff']:.1e} | {err['plain']:.1e} | {verdict} |"
        )
    if gpu:
        missed = sum(r[-1] == "**missed**" for r in rows)
        lines += ["", f"Targets missed: {missed} of {len(rows)} rows."]
    else:
        lines += [
            "",
            "A CPU run: issue #15's targets are for a CUDA GPU (`--device cuda`, written to "
            "`empirical_torch_cuda.md`) and are not judged here. " + MACHINE_NOTE,
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    return publish(args.out, text)


if __name__ == "__main__":
    sys.exit(main())
