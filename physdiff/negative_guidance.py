"""Dynamic negative guidance: removing a class by a push scaled by its posterior
(Koulischer, Deleu, Raya, Demeester, Ambrogioni, ICLR 2025, arXiv 2410.14398;
docs/theory.md section 7).

Writing ``s = score(y)`` (unconditional) and ``s_c = score(y | c)`` (class ``c``) in the VE
frame, the exact score of ``p(y | not c) = (p(y) - w_c p(y | c)) / (1 - w_c)`` (Koulischer
et al. 2025, Eq. 5; proved in ``theory/guidance.py``) is::

    s_notc = s - p(c | y) / (1 - p(c | y)) (s_c - s),

and dynamic negative guidance (DNG, their Eq. 7-8) is the same with a scale ``lambda`` and
an estimate ``p^`` of the class posterior::

    s_dng = s - lambda p^ / (1 - p^) (s_c - s),

so that ``lambda = 1`` with the exact posterior samples ``p(x | not c)``, and negative
prompting (:class:`physdiff.guidance.NegativePrompt`) is DNG with ``p^`` held at ``1/2``
(or any constant, with ``lambda`` rescaled by ``p/(1-p)``). In the eps language of DDPM
this is ``eps~ = eps - lambda p^/(1 - p^) (eps_c - eps)`` followed by a DDPM step.

* :class:`DynamicNegativeGuidance`: the transform as a score model, with the exact
  posterior of a mixture, a classifier's estimate or a constant;
* :class:`TrackedDNG`: for a network the posterior ``p(c | x_t)`` is not available in
  closed form, and DNG tracks it along each trajectory by the online Bayes update of two
  Gaussian reverse kernels (:func:`reverse_kernel`). That makes it a property of a chain
  rather than of a score: :class:`TrackedDNG` is a sampler method
  (:class:`physdiff.sampling.Method`), a frozen configuration whose per-run state
  (:class:`TrackedDNGState`: ``p^`` of each particle and its history) is threaded through
  the steps and returned with the run, so runs never share or overwrite results.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

import numpy as np

from ._validate import finite_array, positive
from .classes import ClassConditional, Posterior, _check_posteriors, as_conditional
from .ensembles.base import ScoreModel
from .errors import DomainError, InputError, NotSupportedError, PhysdiffError, ShapeError
from .guidance import GuidedModel
from .processes import Process, get_process
from .sampling import Dynamics, SampleResult, sample

__all__ = [
    "negative_conditional_score",
    "DynamicNegativeGuidance",
    "reverse_kernel",
    "TrackedDNG",
    "TrackedDNGState",
]


# ---------------------------------------------------------------------------------------
# the exact negative-conditional score and its transform
# ---------------------------------------------------------------------------------------
def negative_conditional_score(s, s_c, p) -> np.ndarray:
    """The score of ``p(y | not c)``: ``s - p / (1 - p) (s_c - s)``.

    ``s`` the unconditional score, ``s_c`` the score of class ``c`` (both ``(n, d)``), ``p``
    the posterior ``p(c | y)`` ``(n,)`` in ``[0, 1)``. Exact: ``p(y | not c) ∝ p(y) - w_c
    p(y | c)`` and ``w_c p(y | c) = p(c | y) p(y)`` (Koulischer et al. 2025, Eq. 5;
    docs/theory.md section 7; ``theory.guidance.negative_score_identity``). The form cancels
    when ``p -> 1``; :class:`DynamicNegativeGuidance` on a mixture avoids that.
    """
    s = finite_array(s, "s")
    s_c = finite_array(s_c, "s_c")
    p = finite_array(p, "p").reshape(-1)
    if s.ndim != 2 or s.shape != s_c.shape or p.shape[0] != s.shape[0]:
        raise ShapeError(
            f"s and s_c must have the same shape (n, d) and p shape (n,); got "
            f"{s.shape}, {s_c.shape} and {p.shape}"
        )
    if np.any(p < 0) or np.any(p >= 1):
        raise DomainError(
            "p must lie in [0, 1) (the score of p(y | not c) is undefined where p(c | y) = 1)"
        )
    return s - (p / (1.0 - p))[:, None] * (s_c - s)


class DynamicNegativeGuidance(GuidedModel):
    """Dynamic negative guidance as a score transform (Koulischer et al. 2025, Eq. 7-8):

        s_dng = s - lambda p~ / (1 - p~) (s_c - s),        p~ = clip(p(c | y), p_min, p_max).

    ``posterior``: ``None`` uses the model's exact class posterior (an exact mixture); a
    callable ``posterior(y, delta) -> (n, C)`` any other estimate (a noisy classifier); a
    number a constant ``p`` (``1/2`` gives :class:`NegativePrompt`). With ``scale = 1``, the
    exact posterior and no clipping, this is the exact score of ``p(y | not c)``.

    On a mixture (:class:`MixtureClasses`) with its exact posterior, the transform is
    evaluated through ``s_c - s = q (s_c - s_rest)`` (``q = 1 - p`` summed over the other
    classes, ``s_rest`` the score of the kept classes) as
    ``s - lambda p~ q / (1 - p~) (s_c - s_rest)``: no cancellation where ``p(c | y) -> 1``,
    and ``lambda = 1`` gives ``s_rest`` to rounding. Elsewhere the form above is used, and a
    posterior of exactly 1 without ``p_max < 1`` is an error.
    """

    def __init__(
        self,
        model: Any,
        label: int,
        scale: float = 1.0,
        *,
        posterior: Posterior | float | None = None,
        p_min: float = 0.0,
        p_max: float = 1.0,
    ):
        super().__init__(model, label, scale)
        if self.conditional.n_classes < 2:
            raise InputError("the model has a single class: nothing is left to sample")
        w = self.conditional.class_weights
        if w is not None and not 1.0 - w[self.label] > 0:
            raise InputError(f"the classes other than {self.label} have zero probability")
        self.p_min, self.p_max = _clip_range(p_min, p_max, strict=False)
        self._const: float | None = None
        self._callable: Posterior | None = None
        if callable(posterior):
            self._callable = posterior
        elif posterior is not None:
            v = float(finite_array(posterior, "posterior"))
            if not 0 <= v < 1:
                raise DomainError(f"posterior (a constant p) must lie in [0, 1); got {v!r}")
            self._const = v
        elif not self.conditional.has_exact_posterior:
            raise NotSupportedError(
                f"{type(self.conditional).__name__} has no exact class posterior: pass "
                "posterior= (a classifier) or use TrackedDNG, which tracks it along the chain"
            )

    def _eval(self, y: np.ndarray, dl: np.ndarray) -> np.ndarray:
        exact = self._const is None and self._callable is None
        s, s_c, p, q, s_rest = self.conditional._parts(self.label, y, dl, exact)
        if self._const is not None:
            p = np.full(y.shape[0], self._const)
            q = np.full(y.shape[0], 1.0 - self._const)
        elif self._callable is not None:
            post = _check_posteriors(
                self._callable(y, dl[:, 0]), y.shape[0], self.conditional.n_classes, "posterior"
            )
            p = post[:, self.label]
            q = np.sum(np.delete(post, self.label, axis=1), axis=1)
            s_rest = None
        assert p is not None and q is not None
        # p~ = clip(p), and 1 - p~ equal to q (no cancellation) where nothing was clipped
        pc = np.clip(p, self.p_min, self.p_max)
        qc = np.where(
            p > self.p_max, 1.0 - self.p_max, np.where(p < self.p_min, 1.0 - self.p_min, q)
        )
        if s_rest is not None and self._const is None:
            # s_c - s = q (s_c - s_rest): lambda p~/(1 - p~) (s_c - s) = lambda p~ q/(1 - p~) ...
            return s - (self.scale * pc * (q / qc))[:, None] * (s_c - s_rest)
        if np.any(qc <= 0):
            raise PhysdiffError(
                "p(c | y) = 1 at some points, where p/(1 - p) is infinite: set p_max < 1"
            )
        return s - (self.scale * pc / qc)[:, None] * (s_c - s)


def _clip_range(p_min, p_max, *, strict: bool) -> tuple[float, float]:
    lo = float(finite_array(p_min, "p_min"))
    hi = float(finite_array(p_max, "p_max"))
    if strict:
        if not 0 < lo < 1:
            raise DomainError(f"p_min must lie in (0, 1); got {lo!r}")
        if not 0 < hi < 1:
            raise DomainError(f"p_max must lie in (0, 1); got {hi!r}")
    else:
        if not 0 <= lo < 1:
            raise DomainError(f"p_min must lie in [0, 1); got {lo!r}")
        if not 0 < hi <= 1:
            raise DomainError(f"p_max must lie in (0, 1]; got {hi!r}")
    if not lo < hi:
        raise DomainError(f"p_min must be below p_max; got p_min={lo!r} >= p_max={hi!r}")
    return lo, hi


# ---------------------------------------------------------------------------------------
# the reverse kernel
# ---------------------------------------------------------------------------------------
def _kernel(
    a_t: float, d_t: float, a_s: float, d_s: float, y: np.ndarray, x0: np.ndarray, e2: float
) -> tuple[np.ndarray, float]:
    """Mean (process frame) and variance of the posterior-step kernel from ``t`` to ``s``
    around the estimate ``x0``; ``y = x_t / alpha_t`` (see :func:`reverse_kernel`)."""
    r = d_s / d_t
    mean = a_s * (x0 + np.sqrt(r * ((1.0 - e2) + e2 * r)) * (y - x0))
    var = a_s**2 * e2 * d_s * (1.0 - r)
    return mean, var


def reverse_kernel(
    process: Process | str, x, x0_hat, t: float, s: float, eta: float = 1.0
) -> tuple[np.ndarray, float]:
    """Mean and variance of the reverse kernel ``x_s | x_t`` around ``x0_hat`` (process frame).

    The kernel of :class:`physdiff.sampling.PosteriorStep` (Song, Meng & Ermon 2021, Eq. 12
    and 16), written in the VE frame (``y = x / alpha``, ``D = delta``, ``r = D_s / D_t``)::

        mean = alpha_s (x0_hat + sqrt(r ((1 - eta^2) + eta^2 r)) (y_t - x0_hat)),
        var  = alpha_s^2 eta^2 D_s (1 - r).

    On consecutive steps ``k -> k-1`` of the DDPM process with ``eta = 1`` this is Ho et al.
    2020, Eq. 11: ``mean = (x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)`` with
    ``eps = (x_k - sqrt(abar_k) x0_hat) / sqrt(1 - abar_k)``, and ``var = beta~_k`` (Eq. 7)
    (``theory.guidance.ddpm_kernel_mean``).
    """
    process = get_process(process)
    t, s = float(process.check_time(t, "t")), float(process.check_time(s, "s"))
    if not s < t:
        raise InputError(f"s must be earlier than t (reverse time); got t={t:g}, s={s:g}")
    eta = float(finite_array(eta, "eta"))
    if not 0 <= eta <= 1:
        raise DomainError(f"eta must lie in [0, 1]; got {eta!r}")
    x = finite_array(x, "x")
    x0 = finite_array(x0_hat, "x0_hat")
    if x.shape != x0.shape or x.ndim != 2:
        raise ShapeError(
            f"x and x0_hat must have the same shape (n, d); got {x.shape} and {x0.shape}"
        )
    a_t, a_s = process.alpha(t), process.alpha(s)
    return _kernel(a_t, process.delta(t), a_s, process.delta(s), x / a_t, x0, eta * eta)


@dataclass(frozen=True, eq=False)
class TrackedDNGState:
    """The state of one :class:`TrackedDNG` run (what :attr:`SampleResult.state` holds).

    ``log_posterior``: ``log p^`` of each particle after the last step, ``(n,)``;
    ``log_history`` and ``times``: ``log p^`` at every grid time so far and those times
    (empty without ``keep_history``). A step returns a new state and never changes one.
    """

    log_posterior: np.ndarray
    log_history: tuple[np.ndarray, ...] = ()
    times: tuple[float, ...] = ()

    @property
    def posterior(self) -> np.ndarray:
        """``p^`` of each particle after the last step, ``(n,)``."""
        return np.exp(self.log_posterior)

    @property
    def history(self) -> np.ndarray:
        """``p^`` at every grid time of the run, ``(steps + 1, n)`` (``keep_history``)."""
        if not self.log_history:
            raise InputError("no history: this run did not keep it (keep_history=False)")
        return np.exp(np.stack(self.log_history))

    @property
    def history_times(self) -> np.ndarray:
        """The grid times of :attr:`history`."""
        return np.asarray(self.times)

    def _then(self, log_posterior: np.ndarray, t: float, keep: bool) -> TrackedDNGState:
        if not keep:
            return TrackedDNGState(log_posterior)
        return TrackedDNGState(log_posterior, (*self.log_history, log_posterior), (*self.times, t))


@dataclass(frozen=True, eq=False)
class TrackedDNG:
    """Dynamic negative guidance with the class posterior tracked along the chain: a sampler
    method (:class:`physdiff.sampling.Method`) for trained networks (Koulischer et al. 2025,
    Sec. 4 and their code; docs/theory.md section 7).

    At every step ``t -> s`` of a posterior (DDPM-ancestral) chain, with ``x0 = D(y_t)``,
    ``x0_c = D(y_t | c)`` and the current ``p^`` of each particle::

        x0~ = x0 - lambda p^/(1 - p^) (x0_c - x0)            (eps~ in the eps language)
        x_s ~ N(mu~, v),                    mu~, v = reverse_kernel(x0~),
        p^ <- clip(p^ exp((-tau (|x_s - mu_c|^2 - |x_s - mu|^2) + offset) / (2 v)),
                   p_min, p_max),

    with ``mu_c``, ``mu`` the kernel means of the conditional and unconditional predictions.
    On consecutive DDPM steps ``v = beta~_k`` and the means are Ho et al.'s
    ``(x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)``; on any other grid ``v`` is
    the posterior variance ``alpha_s^2 eta^2 delta_s (1 - delta_s / delta_t)``. With
    ``tau = 1``, ``offset = 0`` and no clipping the update is the Bayes rule
    ``p(c | x_s) = p(c | x_t) q(x_s | x_t, c) / q(x_s | x_t)`` for Gaussian kernels
    (docs/theory.md section 6), exact for any pair of states when the kernels are. A step
    whose kernel variance is zero (the last step of a VP process ending at ``delta = 0``, or
    ``eta = 0``) leaves ``p^`` unchanged. ``offset`` is the authors' ``delta`` (renamed:
    delta is the noise variance here).

    The right ``tau`` depends on the dimension: the log-update's noise has variance
    ``|mu - mu_c|^2 / v`` per step, which grows with ``d`` for a network's errors, so large
    images need ``tau < 1``. The defaults are the authors': prior 0.2, tau 1, offset 0,
    p_min 1e-6, p_max 0.99.

    The method is a frozen configuration; a run's ``p^`` lives in its
    :class:`TrackedDNGState` (``init``/``step``), returned as the run's
    :attr:`~physdiff.sampling.SampleResult.state` (``res.state.posterior``,
    ``res.state.history``), so one method serves any number of runs, interleaved or nested.
    Use it as ``sample(dng.unconditional, n, rng, method=dng, process="ddpm")`` (or
    :meth:`sample`): the model passed to the sampler is the unconditional one, and the
    method evaluates the class model itself (both count in ``n_evals``).
    """

    model: Any
    """The model with classes (anything :func:`physdiff.classes.as_conditional` takes); held
    as its :class:`~physdiff.classes.ClassConditional` view."""
    label: int
    scale: float = 1.0
    _: KW_ONLY
    prior: float = 0.2
    tau: float = 1.0
    offset: float = 0.0
    p_min: float = 1e-6
    p_max: float = 0.99
    eta: float = 1.0
    keep_history: bool = True
    negative: ScoreModel = field(init=False, repr=False)
    """The model of the removed class, ``p(y | c)``."""

    name: ClassVar[str] = "dng-tracked"

    def __post_init__(self):
        conditional = as_conditional(self.model)
        set_ = object.__setattr__
        set_(self, "model", conditional)
        set_(self, "label", conditional.check_label(self.label))
        set_(self, "scale", float(positive(self.scale, "scale", allow_zero=True)))
        p_min, p_max = _clip_range(self.p_min, self.p_max, strict=True)
        set_(self, "p_min", p_min)
        set_(self, "p_max", p_max)
        prior = float(finite_array(self.prior, "prior"))
        if not 0 < prior < 1:
            raise DomainError(f"prior must lie in (0, 1); got {prior!r}")
        if not p_min <= prior <= p_max:
            raise DomainError(
                f"prior must lie in [p_min, p_max] = [{p_min:g}, {p_max:g}]; got {prior!r}"
            )
        set_(self, "prior", prior)
        set_(self, "tau", float(positive(self.tau, "tau", allow_zero=True)))
        set_(self, "offset", float(finite_array(self.offset, "offset")))
        eta = float(finite_array(self.eta, "eta"))
        if not 0 < eta <= 1:
            raise DomainError(
                f"eta must lie in (0, 1] (the update needs a stochastic kernel); got {eta!r}"
            )
        set_(self, "eta", eta)
        set_(self, "keep_history", bool(self.keep_history))
        set_(self, "negative", conditional.class_model(self.label))

    @property
    def conditional(self) -> ClassConditional:
        """The model with classes (:attr:`model`)."""
        return self.model

    @property
    def stochastic(self) -> bool:
        return True

    @property
    def unconditional(self) -> ScoreModel:
        """The model to pass to the sampler."""
        return self.model.unconditional

    @property
    def dim(self) -> int:
        return self.model.dim

    def init(self, dyn: Dynamics, x: np.ndarray, t: float) -> TrackedDNGState:
        """The state at the start of a run: ``p^`` at the prior for each particle of ``x``."""
        if int(dyn.dim) != int(self.negative.dim):
            raise ShapeError(
                f"the sampled model has dim {dyn.dim} but the class model has "
                f"dim {self.negative.dim}"
            )
        logp = np.full(x.shape[0], np.log(self.prior))
        return TrackedDNGState(logp)._then(logp, float(t), self.keep_history)

    def step(
        self,
        dyn: Dynamics,
        x: np.ndarray,
        t: float,
        s: float,
        rng: np.random.Generator,
        state: TrackedDNGState,
    ) -> tuple[np.ndarray, TrackedDNGState]:
        """One guided posterior step from ``t`` to ``s`` and the Bayes update of ``p^``."""
        if not isinstance(state, TrackedDNGState):
            raise InputError(
                f"state must be a TrackedDNGState (from init); got {type(state).__name__}"
            )
        logp = state.log_posterior
        if x.shape[0] != logp.shape[0]:
            raise ShapeError(
                f"the number of particles changed during a run: {x.shape[0]} vs {logp.shape[0]}"
            )
        ct, cs = dyn.at(t), dyn.at(s)
        y = x / ct.alpha
        x0 = dyn.denoise(x, ct)
        x0c = dyn.denoise(x, ct, model=self.negative)
        p = np.exp(logp)
        ratio = p / -np.expm1(logp)  # p / (1 - p), p <= p_max < 1
        x0g = x0 - (self.scale * ratio)[:, None] * (x0c - x0)
        e2 = self.eta * self.eta
        sched = (ct.alpha, ct.delta, cs.alpha, cs.delta)
        mean, var = _kernel(*sched, y, x0g, e2)
        xs = mean + np.sqrt(var) * rng.standard_normal(x.shape) if var > 0 else mean
        if var > 0:
            mu, _ = _kernel(*sched, y, x0, e2)
            mu_c, _ = _kernel(*sched, y, x0c, e2)
            # |x - mu_c|^2 - |x - mu|^2 = (mu - mu_c) . (2 x - mu - mu_c), without cancellation
            gap = np.einsum("nd,nd->n", mu - mu_c, 2.0 * xs - mu - mu_c)
            logp = logp + (-self.tau * gap + self.offset) / (2.0 * var)
            logp = np.clip(logp, np.log(self.p_min), np.log(self.p_max))
        return xs, state._then(logp, float(s), self.keep_history)

    def sample(
        self,
        n: int | None,
        rng: np.random.Generator,
        *,
        process: Process | str = "ddpm",
        **options: Any,
    ) -> SampleResult:
        """``physdiff.sampling.sample(self.unconditional, n, rng, method=self, ...)``;
        ``options`` are those of :func:`physdiff.sampling.sample`. The run's
        :class:`TrackedDNGState` is the result's ``state``."""
        return sample(self.unconditional, n, rng, method=self, process=process, **options)

    def __repr__(self) -> str:
        return (
            f"TrackedDNG({self.model!r}, label={self.label}, scale={self.scale:g}, "
            f"prior={self.prior:g}, tau={self.tau:g}, offset={self.offset:g}, "
            f"p_min={self.p_min:g}, p_max={self.p_max:g})"
        )
