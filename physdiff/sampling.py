"""Reverse-time samplers as plain functions over particle clouds ``(n, d)``.

Every sampler runs any score model (an exact ensemble, an ``Empirical`` training set or a
trained network: anything with ``dim``, ``score(y, delta)`` and ``denoise(y, delta)`` in
the VE frame, :class:`physdiff.ensembles.ScoreModel`) under any process
(:class:`physdiff.processes.Process`) on any decreasing grid of that process's times.
The particles ``x`` live in the process's own frame, ``x_t = alpha(t) y`` with
``y = x0 + sqrt(delta(t)) z`` (docs/design.md "One convention for noise"), so that

    score_t(x) = score(x / alpha, delta) / alpha,     E[x0 | x_t] = denoise(x / alpha, delta).

The dynamics are written once, in terms of ``alpha(t)``, ``delta(t)`` and the model:

* the reverse-time SDE family (Song et al. 2021, "Score-based generative modeling through
  SDEs", Eq. 6 for ``lambda = 1`` and the probability-flow ODE, Eq. 13, for ``lambda = 0``;
  every ``lambda`` has the same marginals, Karras et al. 2022, Eq. 6)

      dx = [f x - (1 + lambda^2)/2 g^2 score_t(x)] dt + lambda g dW-bar,
      f = d log alpha / dt,   g^2 = alpha^2 d delta / dt,

  integrated backwards in time by an explicit Runge-Kutta tableau (:class:`RungeKutta`:
  Euler-Maruyama, Euler, Heun = Karras et al. 2022, Algorithm 1);
* the posterior family (:class:`PosteriorStep`: DDIM and DDPM ancestral sampling), which
  from ``t`` to ``s < t`` draws ``x_s`` from the Gaussian that Song, Meng & Ermon 2021
  ("DDIM", Eq. 12 and 16) build around ``x0_hat = E[x0 | x_t]``. In the VE frame
  (``y = x / alpha``, ``D = delta``; the forward bridge from ``y_s`` to ``y_t`` has variance
  ``D_t - D_s``):

      y_s = x0_hat + sqrt((D_s - c^2) / D_t) (y_t - x0_hat) + c z,
      c^2 = eta^2 D_s (D_t - D_s) / D_t,                         x_s = alpha_s y_s.

  ``eta = 1`` is the exact Gaussian posterior ``q(x_s | x_t, x0_hat)``, DDPM's ancestral step
  for an arbitrary grid; on consecutive DDPM steps it is Ho et al. 2020's Eq. 11 with
  variance ``beta~_k`` (Eq. 7). ``eta = 0`` is deterministic DDIM, the first-order
  exponential integrator of the probability-flow ODE (Euler in ``(y, sqrt(delta))``).

A method is data: a :class:`RungeKutta` tableau (with a noise level ``lambda``) or a
:class:`PosteriorStep` with its ``eta``, frozen. What changes along a run lives in an
explicit state, as diffrax's ``solver_state`` and NetKet's ``SamplerState`` do it: a method
has ``state = method.init(dyn, x, t0)`` and ``x_s, state = method.step(dyn, x, t, s, rng,
state)`` (the built-in methods are stateless: their state is ``None``; a stateful one is
:class:`physdiff.negative_guidance.TrackedDNG`), so one method runs any number of
interleaved chains. :func:`sample` is the one generic stepper; the named functions
:func:`euler_maruyama`, :func:`euler_ode`, :func:`heun`, :func:`ddim` and
:func:`ddpm_ancestral` only choose the method. Every sampler starts from a draw at the
first grid time (``x_start``: an array, a callable ``(n, rng) -> x`` such as
:func:`gaussian_start`, or by default the standard prior ``N(0, sigma(t0)^2 I)``), calls
an optional recorder at every grid time and returns a :class:`SampleResult` (with the
method's final state). A recorder is a function ``record(t, x)`` or a
:class:`StepRecorder`, which receives the :class:`StepRecord` of each grid time: the
particles, the schedule, the method's state and the model's evaluation at the previous
grid state (:class:`Evaluation`: the denoised estimate the step used, and, for a model
with classes, every class's, so an online classifier reads them instead of evaluating
the classes again).

An exact :class:`~physdiff.ensembles.GaussianMixture` whose components are isotropic or
share one covariance, sampled with Euler, Euler-Maruyama, Heun or a posterior step and no
:class:`StepRecorder`, runs each step as one compiled kernel over blocks of particles
(:mod:`physdiff.ensembles._mixture_sampler`: the model and the update fused, the noise
drawn from ``rng`` as here); the particles are the generic stepper's to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._validate import as_points, finite_array, integer
from .classes import ClassConditional
from .ensembles.base import Ensemble, ScoreModel
from .ensembles.gaussian import Gaussian
from .errors import DomainError, InputError, NotSupportedError, PhysdiffError, ShapeError
from .processes import Process, get_process

__all__ = [
    "Coefficients",
    "Evaluation",
    "StepRecord",
    "StepRecorder",
    "Method",
    "RungeKutta",
    "PosteriorStep",
    "METHODS",
    "Dynamics",
    "SampleResult",
    "GaussianStart",
    "gaussian_start",
    "sample",
    "euler_maruyama",
    "euler_ode",
    "heun",
    "ddim",
    "ddpm_ancestral",
]

DEFAULT_STEPS = 100
"""Number of steps of the default grid ``process.sampling_grid(DEFAULT_STEPS)``."""

Recorder = Callable[[float, np.ndarray], Any]
StartSampler = Callable[[int, np.random.Generator], np.ndarray]


# ---------------------------------------------------------------------------------------
# the dynamics: the model seen in the process frame
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coefficients:
    """The schedule at one time: ``alpha``, ``delta``, ``f = d log alpha/dt``, ``g^2``."""

    t: float
    alpha: float
    delta: float
    f: float
    g2: float


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The model's evaluation at the grid state of a step, in the VE frame.

    ``kind`` is ``"denoise"`` or ``"score"`` (what the method asked for), ``value`` the
    model's output ``(n, d)`` at ``y = x_t / alpha_t`` and ``delta = delta(t)``, and
    ``classes`` the same for every class ``(C, n, d)`` when the model is a
    :class:`~physdiff.classes.ClassConditional` and a recorder asked for them (else
    ``None``). The denoised estimates follow by Tweedie, ``E[x0 | y] = y + delta score``.
    """

    t: float
    delta: float
    y: np.ndarray
    kind: str
    value: np.ndarray
    classes: np.ndarray | None
    model: Any
    """The model that was evaluated (the sampled one)."""

    @property
    def denoised(self) -> np.ndarray:
        """``E[x0 | x_t]`` as the step evaluated it, ``(n, d)`` (data space)."""
        return self.value if self.kind == "denoise" else self.y + self.delta * self.value

    @property
    def class_denoised(self) -> np.ndarray | None:
        """``E[x0 | x_t, c]`` for every class, ``(C, n, d)``, or ``None``."""
        if self.classes is None or self.kind == "denoise":
            return self.classes
        return self.y + self.delta * self.classes


class Dynamics:
    """A score model under a process, in the process frame; what a :class:`Method` steps on.

    It evaluates the schedule (cached per time), the model in the process frame, checks
    every model output for shape and finiteness (naming the step) and counts the model
    evaluations. The stepper announces each step with :meth:`begin`; the model's first
    evaluation at that step's grid state is kept as :attr:`evaluation` (with every class's
    when ``keep_classes`` and the model is a :class:`~physdiff.classes.ClassConditional`),
    which the step's :class:`StepRecord` hands to the recorders.
    """

    def __init__(self, model: ScoreModel, process: Process, *, keep_classes: bool = False):
        self.model = model
        self.process = process
        self.dim = int(model.dim)
        self.n_evals = 0
        self.step = 0  # index of the step in progress, for error messages
        self.keep_classes = bool(keep_classes) and isinstance(model, ClassConditional)
        self.evaluation: Evaluation | None = None
        self._grid: tuple[float, np.ndarray] | None = None
        self._cache: dict[tuple[float, float | None], Coefficients] = {}

    def begin(self, step: int, t: float, x: np.ndarray) -> None:
        """Start step ``step`` from the grid state ``(t, x)`` (clears :attr:`evaluation`)."""
        self.step = int(step)
        self._grid = (float(t), x)
        self.evaluation = None

    def at(self, t: float, toward: float | None = None) -> Coefficients:
        """The schedule at time ``t``; with ``toward``, the time derivatives ``f`` and ``g^2``
        are the one-sided limits from the side of ``toward`` (evaluated one ulp inside).

        A step from ``t`` to ``s`` needs the schedule of the interval it crosses: on a
        process with a piecewise schedule (the DDPM process interpolates ``log abar``
        linearly between integer steps) the derivative at a knot depends on the side.
        """
        t = float(t)
        key = (t, None if toward is None else float(np.sign(toward - t)))
        c = self._cache.get(key)
        if c is None:
            p = self.process
            a = p.alpha(t)
            td = t if toward is None else float(np.nextafter(t, toward))
            c = Coefficients(t, a, p.delta(t), p.drift_coefficient(td), a * a * p.ddelta_dt(td))
            self._cache[key] = c
        return c

    def _checked(self, out, n: int, what: str, c: Coefficients) -> np.ndarray:
        self.n_evals += 1
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (n, self.dim):
            raise ShapeError(
                f"model.{what} must return shape ({n}, {self.dim}); got {out.shape}"
                f" at step {self.step} (t={c.t:g})"
            )
        if not np.all(np.isfinite(out)):
            bad = int(np.sum(~np.all(np.isfinite(out), axis=1)))
            raise PhysdiffError(
                f"model.{what} returned non-finite values for {bad} of {n} particles at step "
                f"{self.step} (t={c.t:g}, delta={c.delta:.6g})"
            )
        return out

    def _evaluate(self, what: str, x: np.ndarray, c: Coefficients, model) -> np.ndarray:
        grid = (
            model is None
            and self.evaluation is None
            and self._grid is not None
            and x is self._grid[1]
            and c.t == self._grid[0]
        )
        m = self.model if model is None else model
        y = x / c.alpha
        classes = None
        if grid and self.keep_classes:
            out, classes = getattr(m, f"{what}_all")(y, c.delta)
        else:
            out = getattr(m, what)(y, c.delta)
        out = self._checked(out, x.shape[0], what, c)
        if grid:
            if classes is not None:
                classes = np.asarray(classes, dtype=np.float64)
                K = self.model.n_classes
                if classes.shape != (K, x.shape[0], self.dim) or not np.all(np.isfinite(classes)):
                    raise PhysdiffError(
                        f"model.{what}_all must return finite class values of shape "
                        f"({K}, {x.shape[0]}, {self.dim}); got {classes.shape} at step "
                        f"{self.step} (t={c.t:g})"
                    )
            self.evaluation = Evaluation(c.t, c.delta, y, what, out, classes, self.model)
        return out

    def denoise(
        self, x: np.ndarray, c: Coefficients, model: ScoreModel | None = None
    ) -> np.ndarray:
        """``E[x0 | x_t = x] = denoise(x / alpha, delta)`` (a data-space point); ``model``:
        another model to evaluate under the same schedule and checks (default: the
        sampled one)."""
        return self._evaluate("denoise", x, c, model)

    def score(self, x: np.ndarray, c: Coefficients) -> np.ndarray:
        """``score_t(x) = score(x / alpha, delta) / alpha``."""
        return self._evaluate("score", x, c, None) / c.alpha

    def drift(self, x: np.ndarray, c: Coefficients, noise: float = 0.0) -> np.ndarray:
        """``f x - (1 + lambda^2)/2 g^2 score_t(x)`` with ``lambda = noise`` (Song et al. 2021,
        Eq. 6 and 13): the velocity ``dx/dt`` of the reverse dynamics without its noise."""
        return c.f * x - (0.5 * (1.0 + noise * noise) * c.g2) * self.score(x, c)


# ---------------------------------------------------------------------------------------
# methods: data plugged into the one stepper
# ---------------------------------------------------------------------------------------
class Method(Protocol):
    """What :func:`sample` needs of a method: a name, whether it draws noise, its initial
    state and one step. A method is a frozen description; everything a run changes is in
    the state, which the stepper threads through the steps and returns
    (:attr:`SampleResult.state`)."""

    name: str

    @property
    def stochastic(self) -> bool: ...

    def init(self, dyn: Dynamics, x: np.ndarray, t: float) -> Any:
        """The state of a run starting from the particles ``x`` at time ``t``."""
        ...

    def step(
        self, dyn: Dynamics, x: np.ndarray, t: float, s: float, rng: np.random.Generator, state: Any
    ) -> tuple[np.ndarray, Any]:
        """Advance the particles ``x`` from time ``t`` to the earlier time ``s < t``; returns
        the new particles and the new state."""
        ...


class _Stateless:
    """A method that keeps no state (its state is ``None``): a subclass implements
    :meth:`_advance`, the step without the state."""

    def init(self, dyn: Dynamics, x: np.ndarray, t: float) -> None:
        return None

    def step(
        self, dyn: Dynamics, x: np.ndarray, t: float, s: float, rng: np.random.Generator, state=None
    ) -> tuple[np.ndarray, None]:
        """Advance the particles ``x`` from time ``t`` to ``s < t``; the state stays ``None``."""
        return self._advance(dyn, x, t, s, rng), None

    def _advance(
        self, dyn: Dynamics, x: np.ndarray, t: float, s: float, rng: np.random.Generator
    ) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class RungeKutta(_Stateless):
    """An explicit Runge-Kutta tableau run backwards in time on the reverse dynamics.

    With ``dt = s - t < 0``, stage times ``t_i = (1 - c_i) t + c_i s`` and
    ``v(x, t) = f x - (1 + lambda^2)/2 g^2 score_t(x)``:

        k_i = v(x + dt sum_j a_ij k_j, t_i),
        x_s = x + dt sum_i b_i k_i + lambda g(t) sqrt(-dt) z.

    ``noise = lambda = 0`` integrates the probability-flow ODE (Song et al. 2021, Eq. 13);
    ``lambda = 1`` with the one-stage Euler tableau is Euler-Maruyama on the reverse SDE
    (Eq. 6). A stage whose time has ``delta = 0`` (the data end of a VP process) cannot
    query the model: that step falls back to the first stage alone (Euler), as
    Karras et al. 2022, Algorithm 1, line 6 does on its last step. ``order`` is the
    method's order (weak order for ``lambda > 0``), which the tests check.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    noise: float = 0.0

    def __post_init__(self):
        k = len(self.b)
        if k < 1 or len(self.c) != k or len(self.a) != k:
            raise InputError(
                f"a, b and c must all have one entry per stage; got {len(self.a)}, "
                f"{k} and {len(self.c)}"
            )
        if self.c[0] != 0 or any(len(row) != i for i, row in enumerate(self.a)):
            raise InputError("the tableau must be explicit: c[0] = 0 and row i of a has i entries")
        if not abs(sum(self.b) - 1.0) < 1e-12:
            raise InputError(f"the weights b must sum to 1; they sum to {sum(self.b)!r}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise InputError(f"noise must lie in [0, inf); got {self.noise!r}")
        if self.noise > 0 and k > 1:
            raise NotSupportedError("noise > 0 is only supported by one-stage (Euler) tableaux")

    @property
    def stochastic(self) -> bool:
        return self.noise > 0

    def _advance(self, dyn, x, t, s, rng):
        dt = s - t
        # stage times (1 - c) t + c s; the end points take their derivatives from inside
        coeffs = [
            dyn.at(t, s) if ci == 0 else dyn.at(s, t) if ci == 1 else dyn.at((1 - ci) * t + ci * s)
            for ci in self.c
        ]
        n_stages = len(self.b)
        b = self.b
        if any(c.delta <= 0 for c in coeffs[1:]):  # the model is undefined at delta = 0
            n_stages, b = 1, (1.0,)
        ks: list[np.ndarray] = []
        for i in range(n_stages):
            xi = x
            for aij, kj in zip(self.a[i], ks, strict=True):
                if aij != 0:
                    xi = xi + (dt * aij) * kj
            ks.append(dyn.drift(xi, coeffs[i], self.noise))
        out = x.copy()
        for bi, ki in zip(b, ks, strict=True):
            if bi != 0:
                out += (dt * bi) * ki
        if self.noise > 0:
            amp = self.noise * np.sqrt(coeffs[0].g2 * -dt)
            out += amp * rng.standard_normal(x.shape)
        return out


@dataclass(frozen=True)
class PosteriorStep(_Stateless):
    """DDIM / DDPM-ancestral step from ``t`` to ``s < t`` (Song, Meng & Ermon 2021, Eq. 12, 16).

    In the VE frame, with ``x0_hat = denoise(y_t, D_t)`` and ``r = D_s / D_t``:

        y_s = x0_hat + sqrt(r ((1 - eta^2) + eta^2 r)) (y_t - x0_hat) + sqrt(eta^2 D_s (1 - r)) z

    (``D_s - c^2 = D_s ((1 - eta^2) + eta^2 r)`` written without cancellation), then
    ``x_s = alpha_s y_s``. ``eta = 1``: the exact posterior ``q(x_s | x_t, x0_hat)``, i.e.
    DDPM ancestral sampling (Ho et al. 2020, Eq. 11 with variance ``beta~``, Eq. 7);
    ``eta = 0``: deterministic DDIM. Both are first order; on a grid uniform in the time of
    a VP process that ends at ``delta = 0`` (OU's default grid) the error behaves like
    ``h log(1/h)``, since ``sqrt(delta(t)) ~ sqrt(2 t)`` is not smooth there (observed order
    about 0.75 at 64-512 steps): prefer a grid uniform in a power of ``sqrt(delta)``.
    """

    eta: float = 0.0
    name: str = "ddim"
    order: int = 1

    def __post_init__(self):
        if not (np.isfinite(self.eta) and 0 <= self.eta <= 1):
            raise InputError(f"eta must lie in [0, 1]; got {self.eta!r}")

    @property
    def stochastic(self) -> bool:
        return self.eta > 0

    def _advance(self, dyn, x, t, s, rng):
        ct, cs = dyn.at(t), dyn.at(s)
        y = x / ct.alpha
        x0 = dyn.denoise(x, ct)
        r = cs.delta / ct.delta
        e2 = self.eta * self.eta
        ys = x0 + np.sqrt(r * ((1.0 - e2) + e2 * r)) * (y - x0)
        c2 = e2 * cs.delta * (1.0 - r)
        if c2 > 0:
            ys += np.sqrt(c2) * rng.standard_normal(x.shape)
        return cs.alpha * ys


EULER_MARUYAMA = RungeKutta("euler-maruyama", (0.0,), ((),), (1.0,), order=1, noise=1.0)
EULER = RungeKutta("euler", (0.0,), ((),), (1.0,), order=1)
HEUN = RungeKutta("heun", (0.0, 1.0), ((), (1.0,)), (0.5, 0.5), order=2)

METHODS: dict[str, Method] = {
    "euler-maruyama": EULER_MARUYAMA,
    "euler": EULER,
    "heun": HEUN,
    "ddim": PosteriorStep(0.0, "ddim"),
    "ddpm": PosteriorStep(1.0, "ddpm"),
}
"""The named methods: ``euler-maruyama`` (reverse SDE, weak order 1), ``euler`` and ``heun``
(probability-flow ODE, order 1 and 2), ``ddim`` (``eta = 0``) and ``ddpm`` (ancestral,
``eta = 1``)."""


def _method(method: Method | str) -> Method:
    if isinstance(method, str):
        try:
            return METHODS[method.lower()]
        except KeyError:
            raise InputError(
                f"method must be a Method or one of {sorted(METHODS)}; got {method!r}"
            ) from None
    if not all(callable(getattr(method, a, None)) for a in ("init", "step")) or not hasattr(
        method, "name"
    ):
        raise InputError(
            f"method must be a Method (with name, init and step) or one of "
            f"{sorted(METHODS)}; got {method!r}"
        )
    return method


# ---------------------------------------------------------------------------------------
# start distributions
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GaussianStart:
    """Draws ``x_t ~ N(alpha mu0, alpha^2 C0 + sigma^2 I)`` at time ``t`` of ``process``.

    The exact noised statistics of data with mean ``mu0`` and covariance ``C0`` (Raya &
    Ambrogioni 2023, Gaussian late initialisation; docs/theory.md section 2). Call it as
    ``start(n, rng)``; ``mean`` and ``covariance`` are those of ``x_t``. Passed to
    :func:`sample` as ``x_start``, its ``t`` is the default start time.
    """

    process: Process
    t: float
    mean: np.ndarray
    covariance: np.ndarray
    factor: np.ndarray

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        n = integer(n, "n", 0, 10**9)
        _check_rng(rng)
        return self.mean + rng.standard_normal((n, self.mean.shape[0])) @ self.factor.T

    def __repr__(self) -> str:
        return f"GaussianStart({self.process!r}, t={self.t:g}, d={self.mean.shape[0]})"


def _is_timed_start(x_start) -> bool:
    """A start sampler bound to a process and a time (``GaussianStart``,
    ``physdiff.symmetry.LowRankStart``, ...): callable with ``process`` and ``t``."""
    return (
        callable(x_start)
        and not isinstance(x_start, np.ndarray)
        and isinstance(getattr(x_start, "process", None), Process)
        and isinstance(getattr(x_start, "t", None), float)
    )


def gaussian_start(
    mean: np.ndarray | Ensemble | Sequence[float],
    cov: np.ndarray | None,
    process: Process | str,
    t: float,
) -> GaussianStart:
    """The Gaussian late-initialisation start ``N(alpha mu0, alpha^2 C0 + sigma^2 I)`` at ``t``.

    ``mean`` is the data mean ``mu0`` ``(d,)`` with ``cov`` its covariance ``C0`` ``(d, d)``
    (symmetric positive semi-definite), or an :class:`~physdiff.ensembles.Ensemble` (then
    ``cov`` is ``None`` and its ``.mean`` and ``.covariance`` are used). For Gaussian data
    this is the exact marginal at ``t``, so a sampler started from it at any ``t`` samples
    the data exactly up to its discretisation error (docs/theory.md section 2).
    """
    if isinstance(mean, Ensemble):
        if cov is not None:
            raise InputError("cov must be None when mean is an Ensemble (its .covariance is used)")
        mean, cov = mean.mean, mean.covariance
    if cov is None:
        raise InputError("cov must be given (a (d, d) covariance) unless mean is an Ensemble")
    data = Gaussian(mean, cov)  # validates shapes, symmetry and positive semi-definiteness
    process = get_process(process)
    t = float(process.check_time(t, "t"))
    a, sig = process.alpha(t), process.sigma(t)
    mu_t = a * data.mean
    cov_t = a * a * data.covariance + sig * sig * np.eye(data.dim)
    cov_t = 0.5 * (cov_t + cov_t.T)
    w, v = np.linalg.eigh(cov_t)
    factor = v * np.sqrt(np.clip(w, 0.0, None))  # cov_t = factor @ factor.T
    for arr in (mu_t, cov_t, factor):
        arr.setflags(write=False)
    return GaussianStart(process, t, mu_t, cov_t, factor)


def _check_rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise InputError(
            f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
            f"got {type(rng).__name__}"
        )
    return rng


# ---------------------------------------------------------------------------------------
# step records and recorders
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class StepRecord:
    """What the stepper hands a :class:`StepRecorder` at grid time ``times[index]``.

    ``x`` the particles there (process frame, read-only), ``coefficients`` the schedule
    there, ``state`` the method's state, and ``evaluation`` the model's evaluation at the
    previous grid state ``times[index - 1]`` that the step from there used (``None`` at the
    first grid time, or when the method did not evaluate the model at the grid state).
    """

    index: int
    t: float
    x: np.ndarray
    coefficients: Coefficients
    state: Any
    evaluation: Evaluation | None

    @property
    def denoised(self) -> np.ndarray | None:
        """``E[x0 | x]`` at the previous grid state, as the step evaluated it, or ``None``."""
        return None if self.evaluation is None else self.evaluation.denoised


class StepRecorder:
    """A recorder that receives each grid time's :class:`StepRecord` (where a plain
    ``record(t, x)`` receives the time and the particles).

    ``StepRecorder(fn)`` calls ``fn(record)``; a subclass overrides :meth:`__call__`.
    ``wants_classes``: ask the sampler to evaluate every class of a
    :class:`~physdiff.classes.ClassConditional` model along with the model
    (:attr:`Evaluation.classes`), in the same pass where the model allows it.
    """

    def __init__(
        self, fn: Callable[[StepRecord], Any] | None = None, *, wants_classes: bool = False
    ):
        if fn is not None and not callable(fn):
            raise InputError("fn must be callable as fn(record) or None")
        self._fn = fn
        self.wants_classes = bool(wants_classes)

    def __call__(self, record: StepRecord) -> Any:
        if self._fn is None:
            raise NotImplementedError("give fn or override __call__")
        return self._fn(record)


# ---------------------------------------------------------------------------------------
# the result and the generic stepper
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SampleResult:
    """What a sampler returns.

    Attributes
    ----------
    samples:
        The output, ``(n, d)``: ``x`` below, or ``denoised`` when ``final_denoise=True``.
    x:
        The particles at the last grid time ``times[-1]``, in the process frame.
    y:
        ``x / alpha(times[-1])``, the same particles in the VE frame (the data frame when
        ``delta(times[-1]) = 0``).
    denoised:
        ``E[x0 | x]`` at the last grid time when ``final_denoise=True``, else ``None``.
    times, deltas:
        The grid used, ``(n_steps + 1,)``, and ``delta`` on it.
    records:
        What the recorder returned at every grid time (a tuple of length ``n_steps + 1``),
        or ``None``.
    trajectory:
        ``(n_steps + 1, n, d)`` particles in the process frame at every grid time, when
        ``return_trajectory=True``, else ``None``.
    method, process:
        The method's name and the process.
    n_evals:
        Model evaluations per particle (the NFE), the final denoise included.
    state:
        The method's state after the last step (``None`` for a stateless method), e.g.
        the tracked posteriors of :class:`physdiff.negative_guidance.TrackedDNG`.
    """

    samples: np.ndarray
    x: np.ndarray
    y: np.ndarray
    denoised: np.ndarray | None
    times: np.ndarray
    deltas: np.ndarray
    records: tuple[Any, ...] | None
    trajectory: np.ndarray | None
    method: str
    process: Process
    n_evals: int
    state: Any = None

    def __repr__(self) -> str:
        n, d = self.samples.shape
        return (
            f"SampleResult(method={self.method!r}, process={self.process!r}, n={n}, d={d}, "
            f"steps={self.times.shape[0] - 1}, t={self.times[0]:g}->{self.times[-1]:g}, "
            f"n_evals={self.n_evals})"
        )


def _grid(process: Process, times, n_steps, t_start, t_end) -> np.ndarray:
    if times is not None:
        if n_steps is not None or t_start is not None or t_end is not None:
            raise InputError("give either times or (n_steps, t_start, t_end), not both")
        grid = finite_array(times, "times").copy()
        if grid.ndim != 1 or grid.shape[0] < 2:
            raise ShapeError(
                f"times must be a 1-D grid of at least two times; got shape {grid.shape}"
            )
    else:
        n_steps = DEFAULT_STEPS if n_steps is None else n_steps
        grid = np.asarray(process.sampling_grid(n_steps, t_start, t_end), dtype=np.float64)
    steps = np.diff(grid)
    if np.any(steps >= 0):
        i = int(np.argmax(steps >= 0))
        raise InputError(
            "times must be strictly decreasing (reverse time, from noise to data); got "
            f"times[{i}]={grid[i]:g} followed by times[{i + 1}]={grid[i + 1]:g}"
        )
    process.check_time(grid, "times")
    if not np.isfinite(process.delta(grid[0])):  # the last step of a zero-terminal-SNR table
        raise DomainError(
            f"times must start where delta is finite; delta(times[0]={grid[0]:g}) = inf for "
            f"{process!r}, where a VE-frame model is undefined: start one step earlier"
        )
    return grid


def _start(x_start, n, d: int, process: Process, t0: float, rng: np.random.Generator) -> np.ndarray:
    if x_start is None or callable(x_start):
        if n is None:
            raise InputError("n must be given unless x_start is an array")
        n = integer(n, "n", 1, 10**9)
        if x_start is None:  # the standard prior N(0, sigma(t0)^2 I)
            return process.sigma(t0) * rng.standard_normal((n, d))
        x = as_points(x_start(n, rng), d, "x_start", dtype=np.float64)
    else:
        x = as_points(x_start, d, "x_start", dtype=np.float64).copy()
        if n is not None:
            n = integer(n, "n", 1, 10**9)
    if x.shape[0] < 1:
        raise ShapeError(f"x_start must hold at least one particle; got shape {x.shape}")
    if n is not None and x.shape[0] != n:
        raise ShapeError(
            f"x_start must have shape ({n}, {d}) (n particles in R^{d}); got shape {x.shape}"
        )
    return x


def _readonly(x: np.ndarray) -> np.ndarray:
    v = x.view()
    v.flags.writeable = False
    return v


def sample(
    model: ScoreModel,
    n: int | None,
    rng: np.random.Generator,
    *,
    method: Method | str = "heun",
    process: Process | str = "ou",
    times: np.ndarray | Sequence[float] | None = None,
    n_steps: int | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    x_start: np.ndarray | StartSampler | None = None,
    record: Recorder | StepRecorder | None = None,
    return_trajectory: bool = False,
    final_denoise: bool = False,
) -> SampleResult:
    """Run ``n`` particles backwards in time with ``method`` and return a :class:`SampleResult`.

    Parameters
    ----------
    model:
        Any score model in the VE frame (``dim``, ``score(y, delta)``, ``denoise(y, delta)``).
    n:
        Number of particles (may be ``None`` when ``x_start`` is an array).
    rng:
        A ``numpy.random.Generator``; it draws the start and, for stochastic methods, the
        noise of every step (deterministic methods use it only for the start).
    method:
        A :class:`RungeKutta`, a :class:`PosteriorStep` (or any :class:`Method`), or a name in
        :data:`METHODS`.
    process:
        A :class:`~physdiff.processes.Process` or its preset name.
    times:
        A strictly decreasing 1-D grid of process times, all in ``[t_min, t_max]``. Default:
        ``process.sampling_grid(n_steps, t_start, t_end)`` with ``n_steps = 100``, from ``t_max``
        (or ``x_start.t`` for a :class:`GaussianStart` or any start sampler with ``process`` and
        ``t`` attributes) down to ``t_min``. For the
        :class:`~physdiff.processes.DDPM` process the times are step indices (integers on its
        own grids).
    x_start:
        The particles at ``times[0]`` in the process frame: an array ``(n, d)``, a callable
        ``(n, rng) -> (n, d)`` (e.g. :func:`gaussian_start`), or ``None`` for the standard
        prior ``N(0, sigma(t0)^2 I)``: ``N(0, I)`` up to ``alpha(t0)^2`` for VP processes at
        their horizon and ``N(0, sigma_max^2 I)`` for VE/EDM. The prior neglects the data's
        own spread (the exact marginal is ``alpha^2 Cov(x0) + sigma^2 I``): start from
        :func:`gaussian_start` to remove that error for Gaussian-like data.
    record:
        ``record(t, x)`` is called at every grid time with the (read-only) particles in the
        process frame; a :class:`StepRecorder` is called with the :class:`StepRecord`
        instead. Its results are returned in ``records``.
    return_trajectory:
        Keep every grid time's particles, ``(n_steps + 1, n, d)``.
    final_denoise:
        Also return ``E[x0 | x]`` at the last grid time as ``samples`` (common practice;
        on the DDPM process it is the last line of Ho et al. 2020, Algorithm 2). At
        ``delta = 0`` this is the identity on the VE-frame ``y``.

    Raises
    ------
    InputError, DomainError, ShapeError
        For a bad argument (named in the message).
    PhysdiffError
        When the model returns non-finite values or the particles become non-finite; the
        message names the step and its time.
    """
    if not isinstance(model, ScoreModel):
        raise InputError(
            "model must have dim, score(y, delta) and denoise(y, delta) "
            f"(physdiff.ensembles.ScoreModel); got {type(model).__name__}"
        )
    d = integer(model.dim, "model.dim", 1, 10**9)
    rng = _check_rng(rng)
    meth = _method(method)
    process = get_process(process)
    timed = _is_timed_start(x_start)
    if timed:
        if x_start.process != process:
            raise InputError(
                f"x_start was built for {x_start.process!r}, but process is {process!r}"
            )
        if times is None and t_start is None:
            t_start = x_start.t
    grid = _grid(process, times, n_steps, t_start, t_end)
    if timed and not np.isclose(grid[0], x_start.t, rtol=1e-12, atol=1e-12):
        raise InputError(
            f"x_start was built at t={x_start.t:g} but the grid starts at "
            f"t={grid[0]:g}; build it at the grid's first time"
        )
    x = _start(x_start, n, d, process, float(grid[0]), rng)

    steps = isinstance(record, StepRecorder)
    if record is not None and not callable(record):
        raise InputError("record must be callable as record(t, x) or a StepRecorder")
    dyn = Dynamics(model, process, keep_classes=steps and record.wants_classes)
    state = meth.init(dyn, x, float(grid[0]))
    records: list[Any] | None = [] if record is not None else None
    traj: list[np.ndarray] | None = [x] if return_trajectory else None

    def observe(i: int, t: float) -> None:
        if records is None:
            return
        if steps:
            ev = dyn.evaluation if i > 0 else None
            records.append(record(StepRecord(i, t, _readonly(x), dyn.at(t), state, ev)))
        else:
            records.append(record(t, _readonly(x)))

    fused = None  # an exact isotropic / shared-covariance mixture: one fused kernel a step
    try:
        if not steps and state is None:
            from .ensembles._mixture_sampler import plan

            fused = plan(model, meth, dyn, grid, x, rng, reuse=records is None and traj is None)
        observe(0, float(grid[0]))
        first = 0
        if fused is not None and fused.whole:  # no noise, nothing to see between steps
            x = fused.run(x)
            first = grid.shape[0] - 1
        for i in range(first, grid.shape[0] - 1):
            t, s = float(grid[i]), float(grid[i + 1])
            if fused is not None:
                x = fused.advance(i, x)  # checked finite there
            else:
                dyn.begin(i, t, x)
                x, state = meth.step(dyn, x, t, s, rng, state)
                if not np.all(np.isfinite(x)):
                    raise PhysdiffError(
                        f"{meth.name} produced non-finite particles at step {i} (t={t:g} -> {s:g})"
                    )
            observe(i + 1, s)
            if traj is not None:
                traj.append(x)
    finally:
        if fused is not None:
            fused.close()

    last = dyn.at(float(grid[-1]))
    y = x / last.alpha
    denoised = None
    if final_denoise:
        dyn.begin(grid.shape[0] - 1, float(grid[-1]), x)
        denoised = dyn.denoise(x, last) if last.delta > 0 else y.copy()
    deltas = np.asarray(process.delta(grid), dtype=np.float64).reshape(grid.shape)
    return SampleResult(
        samples=denoised if denoised is not None else x,
        x=x,
        y=y,
        denoised=denoised,
        times=grid,
        deltas=deltas,
        records=tuple(records) if records is not None else None,
        trajectory=np.stack(traj) if traj is not None else None,
        method=meth.name,
        process=process,
        n_evals=dyn.n_evals,
        state=state,
    )


# ---------------------------------------------------------------------------------------
# the named samplers
# ---------------------------------------------------------------------------------------
def euler_maruyama(
    model: ScoreModel, n: int | None, rng: np.random.Generator, **options: Any
) -> SampleResult:
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021, Eq. 6), weak order 1:

        x_s = x_t - h [f x_t - g^2 score_t(x_t)] + g sqrt(h) z,   h = t - s.

    ``options`` are those of :func:`sample`.
    """
    return sample(model, n, rng, method=EULER_MARUYAMA, **options)


def euler_ode(
    model: ScoreModel, n: int | None, rng: np.random.Generator, **options: Any
) -> SampleResult:
    """Euler on the probability-flow ODE ``dx/dt = f x - g^2/2 score_t(x)`` (Song et al. 2021,
    Eq. 13), order 1. ``options`` are those of :func:`sample`."""
    return sample(model, n, rng, method=EULER, **options)


def heun(
    model: ScoreModel, n: int | None, rng: np.random.Generator, **options: Any
) -> SampleResult:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022,
    Algorithm 1, for any ``alpha``, ``delta``):

        d_t = v(x_t, t),  x' = x_t + (s - t) d_t,  x_s = x_t + (s - t) (d_t + v(x', s)) / 2,

    with ``v = f x - g^2/2 score_t``; a step that ends at ``delta = 0`` stays Euler.
    ``options`` are those of :func:`sample`.
    """
    return sample(model, n, rng, method=HEUN, **options)


def ddim(
    model: ScoreModel, n: int | None, rng: np.random.Generator, *, eta: float = 0.0, **options: Any
) -> SampleResult:
    """DDIM (Song, Meng & Ermon 2021, Eq. 12 with Eq. 16's ``sigma(eta)``) on any grid:

        x_s = alpha_s x0_hat + alpha_s sqrt(delta_s - c^2) eps_hat + c alpha_s z,
        eps_hat = (x_t - alpha_t x0_hat) / sigma_t,
        c^2 = eta^2 delta_s (delta_t - delta_s) / delta_t,

    (``c`` is the noise scale in the VE frame ``y = x / alpha``, so the process-frame noise is
    ``alpha_s c`` and ``alpha_s sqrt(delta_s - c^2) = sqrt(sigma_s^2 - alpha_s^2 c^2)``);
    ``eta = 0`` deterministic, ``eta = 1`` DDPM ancestral. ``options`` are those of
    :func:`sample`.
    """
    return sample(
        model,
        n,
        rng,
        method=PosteriorStep(eta, "ddim" if eta == 0 else f"ddim(eta={eta:g})"),
        **options,
    )


def ddpm_ancestral(
    model: ScoreModel, n: int | None, rng: np.random.Generator, **options: Any
) -> SampleResult:
    """DDPM ancestral sampling: ``x_s ~ q(x_s | x_t, x0 = x0_hat)``, the exact Gaussian
    posterior of the forward process around ``x0_hat = E[x0 | x_t]``, on any grid.

    On consecutive steps of the :class:`~physdiff.processes.DDPM` process this is
    Ho et al. 2020, Eq. 11, ``mu = (x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)``
    with variance ``beta~_k`` (Eq. 7); with ``final_denoise=True`` the whole run is their
    Algorithm 2. ``options`` are those of :func:`sample`.
    """
    return sample(model, n, rng, method=METHODS["ddpm"], **options)
