"""Trained networks' own memorisation boundary over (n, parameter count) vs a capacity line.

Data sets: ``n`` points of ``N(0, s^2 I_d)`` for each ``d`` in ``dims`` (the first ``n`` of
one draw, so the training sets of one ``d`` are nested), and the 8x8 digits
(:func:`physdiff.data.load_digits` with ``held_out=0``: all 1797 images, standardised by
their global pixel mean and standard deviation; the first ``n`` of
``default_rng(0).permutation(1797)``, nested as well). For every data set, every ``n`` and
every width ``hidden`` an MLP (:class:`physdiff.nn.ScoreMLP`, ``depth`` residual blocks,
behind an EDM :class:`physdiff.nn.Denoiser`, ``sigma_data = 1``) is trained by denoising
score matching. Its parameter count ``P`` is counted on the built network (every weight,
the noise-conditioning MLP included). All networks of one ``(d, hidden)`` share an
architecture and the training settings, so :func:`validation.training.train_jobs` trains
each width's column of the grid as one ensemble (its members differ in ``n``, data, seed).

Measured per network: the memorised fraction of ``n_samples`` generated samples (Heun
probability-flow ODE, EDM schedule, final denoise) whose nearest training point lies within
``radius * h`` (``h``: the training set's median nearest-neighbour spacing), with
Agresti-Coull errors (:func:`validation.stats.binomial_fraction`). The same start noise
drives the exact empirical score of the same training set (:class:`physdiff.ensembles.
Empirical`, the optimum of the training loss), and fresh data give the generalising
baseline (new Gaussian draws; for the digits the images not in the training subset, none
at ``n = 1797``).

Theory (docs/theory.md section 3; Biroli et al. 2024): the exact empirical score's posterior
over training points condenses below ``delta_C(n)`` (isotropic data:
:func:`physdiff.memorization.collapse_delta_isotropic`; the digits' covariance spectrum:
:func:`physdiff.memorization.collapse_delta`). The sampler's last noise level is
``delta_end = sigma_min^2`` (EDM, ``4e-6``), where the final denoise reads the posterior
mean, so the REM theory predicts that the exact score memorises (fraction 1) at every grid
point with ``delta_C(n) > delta_end`` (every point here: ``delta_C`` is above 0.1).

Nothing in that theory bounds a network. The network's boundary ``n*`` (per width) is
where its memorised fraction falls to 1/2 or below for good: after the last grid ``n`` at
which it is still above 1/2, interpolated linearly in ``log n`` between that point and the
next, with the standard error propagated from their two binomial errors
(:func:`boundary`). The *last* crossing, not the first: at a handful of points the median
spacing ``h`` of one draw can be small (three of the first four digits are sixes), lowering the
fraction at the smallest ``n`` without the network failing to memorise. A width whose
fraction is still above 1/2 at ``n_max`` has the censored bound ``n* > n_max``; one at or
below 1/2 at every ``n`` has ``n* < n_min`` (recorded as the bound, never NaN).

The hypothesis tested is the *capacity line*: a network stops memorising once the training
set holds more numbers than it has parameters, ``n* d = P``. Its scaling form ``n* d ∝ P^b``
with ``b = 1`` is tested by a weighted least-squares fit of ``log(n* d)`` on ``log P`` over
the widths whose boundary was located (:func:`power_fit`; errors from the crossings, scaled
by the Birge ratio ``sqrt(chi^2/dof)`` where that exceeds 1). Each row also reports the
ratio ``P / (n* d)`` (1 on the capacity line).

Rows:

1. per data set and ``n`` with ``delta_C(n) > delta_end``: the exact empirical score's
   memorised fraction, predicted 1 (``k`` Agresti-Coull standard errors, no tolerance);
2. per data set and width: ``log n*`` against the capacity line ``log(P / d)``; ``k``
   standard errors plus half the bracketing grid step in ``log n`` (a linear interpolation
   locates a monotone crossing only within its bracket; for a censored bound the step next
   to it). A censored bound is a bound row (``bound``, :mod:`validation.result`): it agrees
   when it is consistent with the prediction, ``n* > n_max`` with a capacity line above
   ``n_max`` less the slack, ``n* < n_min`` with one below ``n_min`` plus it;
3. per data set with at least three located widths (two points fix a line and test
   nothing of it): the fitted exponent ``b`` against 1 (``k`` standard errors).

A disagreement in rows 2 and 3 is a result about trained networks (with this training
budget: ``steps`` is the same for every width), not a failure of the REM theory.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from physdiff import memorization as M
from physdiff.association import nearest_neighbour_spacing
from physdiff.ensembles import Empirical, Gaussian
from physdiff.errors import InputError

from ..config import ExperimentConfig, NetConfig, TrainingConfig, VerdictConfig
from ..curves import last_up_crossing
from ..result import Result, Row, judge, saved_figure
from ..samples import fraction_on_points, heun_samples
from ..stats import binomial_fraction
from ..training import NetSpec
from . import RunContext, experiment_run

__all__ = [
    "Config",
    "PRESETS",
    "run",
    "check",
    "Boundary",
    "boundary",
    "PowerFit",
    "power_fit",
    "parameter_count",
]

NAME = "network_memorization"
DIGITS_IMAGES = 1797

NET = NetConfig(depth=2, embed_dim=16)  # net.hidden is not read: ``widths`` gives each width
TRAINING = TrainingConfig(steps=3000, workers=2)


@dataclass(frozen=True)
class Config(ExperimentConfig):
    dims: tuple[int, ...] = (8, 64)  # Gaussian N(0, variance I_d) data sets
    ns: tuple[int, ...] = (4, 16, 64, 256, 1024)
    digits: bool = True
    digits_ns: tuple[int, ...] = (4, 16, 64, 256, 1024)
    variance: float = 1.0
    widths: tuple[int, ...] = (16, 32, 64, 128)  # the MLP's hidden widths (net.hidden unused)
    radius: float = 0.25  # memorised: nearest training point within radius * h
    n_samples: int = 400
    sampler_steps: int = 32
    level: float = 0.5  # the boundary: memorised fraction crosses this level
    blas_threads: int = 1
    net: NetConfig = NET
    training: TrainingConfig = TRAINING
    verdict: VerdictConfig = VerdictConfig()  # k; tolerances come from the grid (docstring)


PRESETS: dict[str, Config] = Config.presets(
    smoke=dict(
        dims=(4,),
        ns=(2, 512),
        digits=False,
        digits_ns=(),
        widths=(8, 16),
        n_samples=200,
        sampler_steps=16,
        net=NET.replace(depth=1, embed_dim=8),
        training=TRAINING.replace(steps=300, batch_size=64, ema_decay=0.9, workers=1),
    ),
    cpu=dict(),
    gpu=dict(
        ns=(4, 16, 64, 256, 1024, 4096, 16384),
        digits_ns=(4, 16, 64, 256, 1024, 1797),
        widths=(16, 32, 64, 128, 256, 512),
        n_samples=2000,
        sampler_steps=64,
        blas_threads=0,
        net=NET.replace(depth=3, embed_dim=64),
        training=TRAINING.replace(steps=20000, batch_size=1024, workers=1),
    ),
)


def check(config: Config) -> None:
    """Reject grids of fewer than two training-set sizes (no boundary can be located),
    unsorted or too small sets, digits subsets beyond the 1797 images, a non-positive data
    variance, bad widths and a boundary level outside (0, 1)."""
    grids = [config.ns] * bool(config.dims) + [config.digits_ns] * bool(config.digits)
    if not grids:
        raise InputError("no data set: give dims or digits=True")
    for ns in grids:
        if len(ns) < 2 or any(n < 2 for n in ns) or list(ns) != sorted(set(ns)):
            raise InputError(f"each n grid needs >= 2 increasing sizes n >= 2; got {ns}")
    if config.digits and config.digits_ns[-1] > DIGITS_IMAGES:
        raise InputError(f"the digits hold {DIGITS_IMAGES} images; got n={config.digits_ns[-1]}")
    if any(d < 1 for d in config.dims):
        raise InputError(f"dims must be >= 1; got {config.dims}")
    if not config.widths or any(w < 1 for w in config.widths):
        raise InputError(f"widths must be >= 1; got {config.widths}")
    if not config.variance > 0:
        raise InputError(f"variance must be > 0; got {config.variance!r}")
    if not 0 < config.level < 1:
        raise InputError(f"level must lie in (0, 1); got {config.level!r}")


# ---------------------------------------------------------------------------------------
# the boundary and the capacity fit
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Boundary:
    """Where a decreasing memorised fraction crosses the level, in ``log n``.

    ``censored`` is ``""`` for a located crossing, ``">"`` when the fraction is still above
    the level at ``n_max`` (``log_n`` is then ``log n_max``, a lower bound) and ``"<"`` when
    it is at or below the level at every ``n`` (``log_n = log n_min``, an upper bound). ``step``
    is the ``log n`` width of the bracketing grid step (for a bound, of the step next to it).
    """

    log_n: float
    se: float
    censored: str
    step: float

    @property
    def n(self) -> float:
        return math.exp(self.log_n)

    @property
    def located(self) -> bool:
        return not self.censored

    @property
    def text(self) -> str:
        if self.censored:
            return f"n* {self.censored} {self.n:.4g} (censored)"
        lo, hi = math.exp(self.log_n - self.se), math.exp(self.log_n + self.se)
        return f"n* = {self.n:.4g} (1 s.e.: {lo:.3g}..{hi:.3g})"


def boundary(ns, fraction, se, level: float = 0.5) -> Boundary:
    """The last down-crossing of ``level`` by ``fraction(n)`` on the grid ``ns``: in
    ``x = log n``, between the last grid point where ``f > level`` and the next one
    (``f <= level``), by linear interpolation with the standard error propagated from the
    two bracketing binomial errors (:func:`validation.curves.last_up_crossing` on ``-f``).
    Censored bounds are described in :class:`Boundary`.
    """
    x = np.log(np.asarray(ns, dtype=np.float64))
    f = np.asarray(fraction, dtype=np.float64)
    s = np.asarray(se, dtype=np.float64)
    if not (x.ndim == 1 and x.size >= 2 and f.shape == x.shape and s.shape == x.shape):
        raise ValueError(
            "ns, fraction and se must be 1-D of one length >= 2; "
            f"got {x.shape}, {f.shape}, {s.shape}"
        )
    if np.any(np.diff(x) <= 0) or not (np.all(np.isfinite(f)) and np.all(s >= 0)):
        raise ValueError("ns must increase, fractions be finite and errors >= 0")
    if f[-1] > level:
        return Boundary(float(x[-1]), 0.0, ">", float(x[-1] - x[-2]))
    if not np.any(f > level):
        return Boundary(float(x[0]), 0.0, "<", float(x[1] - x[0]))
    xc, err = last_up_crossing(x, -f, s, -level)  # some f > level, f[-1] <= level: a hit
    k = int(np.searchsorted(x, xc, side="left"))
    step = float(x[max(k, 1)] - x[max(k, 1) - 1])
    return Boundary(float(xc), float(err), "", step)


@dataclass(frozen=True)
class PowerFit:
    """``y = log_prefactor + exponent * x`` fitted by weighted least squares."""

    exponent: float
    exponent_se: float
    log_prefactor: float
    log_prefactor_se: float
    chi2: float
    dof: int

    @property
    def birge(self) -> float:
        """``sqrt(chi^2 / dof)`` (1 without a degree of freedom)."""
        return math.sqrt(self.chi2 / self.dof) if self.dof > 0 else 1.0


def power_fit(x, y, se) -> PowerFit:
    """Weighted least squares of ``y`` on ``x`` with known errors ``se`` (weights
    ``1/se^2``): ``b = S_xy / S_xx`` about the weighted means, ``se(b)^2 = 1/S_xx``,
    ``se(a)^2 = 1/W + xbar^2/S_xx``; both scaled by the Birge ratio ``sqrt(chi^2/dof)``
    where it exceeds 1 (the scatter is then larger than the stated errors; Birge 1932,
    as the Particle Data Group applies it). Needs two distinct ``x``."""
    x, y, s = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (x, y, se))
    if not (x.size >= 2 and x.shape == y.shape == s.shape):
        raise ValueError(
            f"x, y, se must be of one length >= 2; got {x.shape}, {y.shape}, {s.shape}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(s > 0)):
        raise ValueError("x and y must be finite and every se > 0")
    w = 1.0 / s**2
    big_w = w.sum()
    xm, ym = (w @ x) / big_w, (w @ y) / big_w
    sxx = w @ (x - xm) ** 2
    if not sxx > 0:
        raise ValueError("power_fit needs at least two distinct x")
    b = (w @ ((x - xm) * (y - ym))) / sxx
    a = ym - b * xm
    chi2 = float(w @ (y - a - b * x) ** 2)
    dof = x.size - 2
    scale = max(1.0, math.sqrt(chi2 / dof)) if dof > 0 else 1.0
    return PowerFit(
        exponent=float(b),
        exponent_se=float(scale / math.sqrt(sxx)),
        log_prefactor=float(a),
        log_prefactor_se=float(scale * math.sqrt(1.0 / big_w + xm**2 / sxx)),
        chi2=chi2,
        dof=dof,
    )


# ---------------------------------------------------------------------------------------
# data, networks, measurements
# ---------------------------------------------------------------------------------------
def parameter_count(net: NetSpec) -> int:
    """Trainable parameters of the built network (all of them: input, residual blocks,
    noise conditioning, output)."""
    return int(sum(p.numel() for p in net.build(0).parameters() if p.requires_grad))


@dataclass(frozen=True)
class _DataSet:
    key: str
    label: str
    dim: int
    points: np.ndarray  # the largest training set; the first n rows are the set of size n
    ns: tuple[int, ...]
    spectrum: np.ndarray  # population covariance eigenvalues (the collapse theory's input)
    fresh: Callable[[int, np.random.Generator], np.ndarray | None]  # None: no unused data


def _data_sets(config: Config, seed: int) -> list[_DataSet]:
    out = []
    for j, d in enumerate(config.dims):
        gauss = Gaussian.isotropic(np.zeros(d), config.variance)
        pts = gauss.sample(config.ns[-1], np.random.default_rng([seed, 70, j]))
        out.append(
            _DataSet(
                f"gauss{d}",
                f"Gaussian d={d}",
                d,
                pts,
                config.ns,
                np.full(d, config.variance),
                lambda n, rng, g=gauss: g.sample(config.n_samples, rng),
            )
        )
    if config.digits:
        from physdiff.data import load_digits

        x = np.asarray(load_digits(held_out=0.0).train, dtype=np.float64)
        x = x[np.random.default_rng(0).permutation(x.shape[0])]
        lam = np.clip(np.linalg.eigvalsh(np.cov(x.T, bias=True)), 0.0, None)

        def unused(n, rng, x=x):
            rest = x[n : n + config.n_samples]
            return rest if rest.shape[0] else None

        out.append(_DataSet("digits", "digits d=64", 64, x, config.digits_ns, lam, unused))
    return out


def _delta_c(ds: _DataSet, n: int, variance: float) -> float:
    if ds.key.startswith("gauss"):
        return float(M.collapse_delta_isotropic(n, ds.dim, variance))
    return float(M.collapse_delta(n, ds.spectrum))


def _on_points(samples: np.ndarray | None, emp: Empirical, radius: float):
    """``(fraction, se)`` of samples within ``radius`` of a training point; None for none."""
    return None if samples is None else binomial_fraction(*fraction_on_points(samples, emp, radius))


def _jobs(ctx: RunContext, sets: list[_DataSet], serial: bool):
    config, seed = ctx.config, ctx.seed
    jobs, params = {}, {}
    for a, ds in enumerate(sets):
        for b, w in enumerate(config.widths):
            net = NetSpec(ds.dim, w, config.net.depth, config.net.embed_dim, sigma_data=1.0)
            params[ds.dim, w] = params.get((ds.dim, w)) or parameter_count(net)
            for i, n in enumerate(ds.ns):
                jobs[ds.key, w, n] = ctx.job(
                    f"{ds.key}-w{w}-n{n}",
                    net,
                    ds.points[:n].copy(),
                    seed=seed * 100_000 + a * 10_000 + b * 100 + i,
                    progress=serial,
                )
    return jobs, params


# ---------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------
def _fit(bounds: dict[int, Boundary], params: dict[int, int], d: int) -> PowerFit | None:
    ok = [w for w, bd in bounds.items() if bd.located]
    if len({params[w] for w in ok}) < 2:
        return None
    x = [math.log(params[w]) for w in ok]
    y = [bounds[w].log_n + math.log(d) for w in ok]
    return power_fit(x, y, [max(bounds[w].se, 1e-12) for w in ok])


def _fit_text(fit: PowerFit | None) -> str:
    if fit is None:
        return "fit n* d ∝ P^b: fewer than two located widths"
    return f"fit n* d ∝ P^b: b = {fit.exponent:.3f} ± {fit.exponent_se:.3f}"


def _capacity_row(ds, w, P, bd: Boundary, fit, curve, config: Config) -> Row:
    pred = math.log(P / ds.dim)
    half = 0.5 * bd.step
    rule = config.verdict.rule(
        half,
        reason="grid quantisation: half the bracketing log-n step (linear interpolation "
        "locates a monotone crossing only within its bracket)",
    )
    ratio = P / (bd.n * ds.dim)
    rel = {"": "=", ">": "<", "<": ">"}[bd.censored]
    cond = (
        f"{ds.label}, hidden={w}, P={P}: {bd.text}; P/(n* d) {rel} {ratio:.3g}; "
        f"{_fit_text(fit)}; tolerance {half:.3g} = half the bracketing log-n step"
    )
    return judge(
        "network boundary log n* (fraction 1/2) vs capacity line n* d = P",
        pred + config.verdict.prediction_shift,
        bd.log_n,
        bd.se,
        rule,
        condition=cond,
        bound={"": "", ">": "lower", "<": "upper"}[bd.censored],
        data=ds.key,
        hidden=w,
        parameters=P,
        n_star=bd.n,
        censored=bd.censored,
        capacity_n=P / ds.dim,
        ratio_P_over_nd=ratio,
        fit=None if fit is None else fit.__dict__,
        curve=curve,
    )


def _exponent_row(ds, fit: PowerFit, located: int, config: Config) -> Row:
    cond = (
        f"{ds.label}: {located} located widths, log(n* d) = {fit.log_prefactor:.3f} + b log P, "
        f"chi2/dof = {fit.chi2:.3g}/{fit.dof} (errors scaled by {max(1.0, fit.birge):.3g})"
    )
    return judge(
        "boundary exponent b in n* d ∝ P^b (capacity line: b = 1)",
        1.0 + config.verdict.prediction_shift,
        fit.exponent,
        fit.exponent_se,
        config.verdict.rule(),
        condition=cond,
        data=ds.key,
        fit=fit.__dict__,
    )


@experiment_run
def run(config: Config, ctx: RunContext) -> Result:
    """Train the (n, width) grid per data set (one ensemble per width), sample every network
    and exact score, locate the boundaries, fit the capacity exponent, judge, plot."""
    out_dir, seed = ctx.out_dir, ctx.seed
    sets = _data_sets(config, seed)
    n_groups = len({(ds.dim, w) for ds in sets for w in config.widths})
    jobs, params = _jobs(ctx, sets, ctx.in_process(n_groups))
    trained = ctx.train(list(jobs.values()))
    summaries = dict(zip(jobs, trained, strict=True))

    from physdiff.processes import EDM

    delta_end = EDM().sigma_min ** 2
    rule_exact = config.verdict.rule()
    rows: list[Row] = []
    figure = []
    for a, ds in enumerate(sets):
        exact, fresh, nets = {}, {}, {}
        for i, n in enumerate(ds.ns):
            x = ds.points[:n]
            emp = Empirical(x.copy())
            rad = config.radius * nearest_neighbour_spacing(x)
            start = [seed, 71, a, i]  # one start noise for every model of this training set
            exact[n] = _on_points(
                heun_samples(
                    emp, config.n_samples, config.sampler_steps, np.random.default_rng(start)
                ),
                emp,
                rad,
            )
            fresh[n] = _on_points(ds.fresh(n, np.random.default_rng([seed, 72, a, i])), emp, rad)
            for w in config.widths:
                net = ctx.network(jobs[ds.key, w, n])
                xs = heun_samples(
                    net, config.n_samples, config.sampler_steps, np.random.default_rng(start)
                )
                nets[w, n] = _on_points(xs, emp, rad)
            dc = _delta_c(ds, n, config.variance)
            if dc > delta_end:
                rows.append(
                    judge(
                        "exact empirical score: memorised fraction (REM collapse predicted)",
                        1.0 + config.verdict.prediction_shift,
                        exact[n][0],
                        exact[n][1],
                        rule_exact,
                        condition=(
                            f"{ds.label}, n={n}: delta_C={dc:.3g} > sampler's final "
                            f"delta={delta_end:.2g}; radius {config.radius:g} h = {rad:.3g}"
                        ),
                        data=ds.key,
                        n=n,
                        delta_C=dc,
                        radius=rad,
                        fresh_fraction=None if fresh[n] is None else fresh[n][0],
                    )
                )
        bounds = {
            w: boundary(
                ds.ns,
                [nets[w, n][0] for n in ds.ns],
                [nets[w, n][1] for n in ds.ns],
                config.level,
            )
            for w in config.widths
        }
        pw = {w: params[ds.dim, w] for w in config.widths}
        fit = _fit(bounds, pw, ds.dim)
        for w in config.widths:
            curve = {
                "n": list(ds.ns),
                "network": [nets[w, n][0] for n in ds.ns],
                "network_se": [nets[w, n][1] for n in ds.ns],
                "exact": [exact[n][0] for n in ds.ns],
                "fresh": [None if fresh[n] is None else fresh[n][0] for n in ds.ns],
                "final_loss": [summaries[ds.key, w, n].final_loss for n in ds.ns],
                "train_seconds": summaries[ds.key, w, ds.ns[0]].seconds,
            }
            rows.append(_capacity_row(ds, w, pw[w], bounds[w], fit, curve, config))
        located = sum(bd.located for bd in bounds.values())
        if fit is not None and located >= 3:
            rows.append(_exponent_row(ds, fit, located, config))
        figure.append((ds, exact, fresh, nets, bounds, pw, fit))
    fig = f"{NAME}.png"
    _plot(figure, config, out_dir / fig)
    return ctx.result(rows, [fig])


# ---------------------------------------------------------------------------------------
# figure
# ---------------------------------------------------------------------------------------
def _edges(v: np.ndarray) -> np.ndarray:
    """Cell edges of a log grid: geometric midpoints, the ends mirrored."""
    lv = np.log(v)
    mid = 0.5 * (lv[1:] + lv[:-1]) if v.size > 1 else np.array([])
    first = lv[0] - (mid[0] - lv[0] if mid.size else 0.5)
    last = lv[-1] + (lv[-1] - mid[-1] if mid.size else 0.5)
    return np.exp(np.concatenate([[first], mid, [last]]))


def _plot(panels: list, config: Config, path: Path) -> None:
    from physdiff.plot import OKABE_ITO

    palette = [OKABE_ITO[c] for c in ("blue", "vermillion", "green", "purple")]
    with saved_figure(path, (3.6 * (len(panels) + 1), 3.5)) as fig:
        axes = fig.subplots(1, len(panels) + 1, squeeze=False)[0]
        widths = list(config.widths)
        for ax, (ds, exact, _, nets, bounds, pw, fit) in zip(axes, panels, strict=False):
            ns = np.array(ds.ns, float)
            ps = np.array([pw[w] for w in widths], float)
            grid = np.array([[nets[w, n][0] for n in ds.ns] for w in widths])
            mesh = ax.pcolormesh(
                _edges(ns), _edges(ps), grid, vmin=0, vmax=1, cmap="viridis", shading="flat"
            )
            ax.plot(ps / ds.dim, ps, "w--", lw=1.2, label="capacity line n d = P")
            for w, p in zip(widths, ps, strict=True):
                bd = bounds[w]
                if bd.located:
                    ax.errorbar(
                        bd.n,
                        p,
                        xerr=[
                            [bd.n - math.exp(bd.log_n - bd.se)],
                            [math.exp(bd.log_n + bd.se) - bd.n],
                        ],
                        fmt="o",
                        color=OKABE_ITO["orange"],
                        ms=4,
                        capsize=2,
                    )
                else:
                    ax.plot(
                        bd.n, p, ">" if bd.censored == ">" else "<", color=OKABE_ITO["orange"], ms=6
                    )
            if fit is not None:
                pg = np.geomspace(ps.min(), ps.max(), 50)
                ax.plot(
                    np.exp(fit.log_prefactor) * pg**fit.exponent / ds.dim,
                    pg,
                    color=OKABE_ITO["orange"],
                    lw=1.2,
                    label=f"fit n* d ∝ P^{fit.exponent:.2f}",
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(_edges(ns)[[0, -1]])
            ax.set_ylim(_edges(ps)[[0, -1]])
            ef = min(exact[n][0] for n in ds.ns)
            ax.set_title(f"{ds.label}\nexact score (collapse predicted): f >= {ef:.3f}", fontsize=8)
            ax.set_xlabel("training points n")
            ax.set_ylabel("parameters P")
            ax.legend(fontsize=6, frameon=True, framealpha=0.85, loc="upper right")
        fig.colorbar(
            mesh, ax=list(axes[: len(panels)]), label="network memorised fraction", shrink=0.8
        )
        ax = axes[-1]
        for j, (ds, _, _, _, bounds, pw, fit) in enumerate(panels):
            col = palette[j % len(palette)]
            for w in widths:
                bd = bounds[w]
                y = bd.n * ds.dim
                if bd.located:
                    ax.errorbar(pw[w], y, yerr=y * bd.se, fmt="o", color=col, ms=4, capsize=2)
                else:
                    ax.plot(pw[w], y, "^" if bd.censored == ">" else "v", color=col, ms=6)
            fitted = "" if fit is None else f": b = {fit.exponent:.2f} ± {fit.exponent_se:.2f}"
            ax.plot([], [], "o", color=col, label=ds.label + fitted)
            if fit is not None:
                pg = np.geomspace(min(pw.values()), max(pw.values()), 50)
                ax.plot(pg, np.exp(fit.log_prefactor) * pg**fit.exponent, color=col, lw=1)
        allp = [p for *_, pw, _ in panels for p in pw.values()]
        pg = np.geomspace(min(allp), max(allp), 10)
        ax.plot(pg, pg, "k--", lw=1, label="capacity line n* d = P")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters P")
        ax.set_ylabel("n* d (triangles: censored bounds)")
        ax.set_title("boundary vs capacity", fontsize=8)
        ax.legend(fontsize=6, frameon=False)
        fig.suptitle(
            f"Network memorisation boundary over (n, P) ({config.preset}; "
            f"memorised: within {config.radius:g} h; {config.training.steps} steps)",
            fontsize=9,
        )
