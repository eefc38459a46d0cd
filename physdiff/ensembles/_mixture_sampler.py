"""Fused sampler steps for an exact Gaussian mixture whose components are isotropic (point
masses included) or share one covariance: the model and the update of a step in one
compiled pass over blocks of particles (issue #15 item 6).

:func:`physdiff.sampling.sample` hands a run to :func:`plan` first; where it returns a
:class:`FusedRun` (the model is such a :class:`~physdiff.ensembles.GaussianMixture`, the
method one of the built-in :class:`~physdiff.sampling.RungeKutta` tableaux Euler,
Euler-Maruyama (any ``noise``) and Heun, or any :class:`~physdiff.sampling.PosteriorStep`
(DDIM, DDPM ancestral), on any process, with no :class:`~physdiff.sampling.StepRecorder`)
each step runs here; otherwise the generic stepper runs unchanged.

The formulas (docs/theory.md section 1, "Gaussian mixture"; the closed forms of
:mod:`._mixture_fast`, whose centred means, weights and eigenbasis are reused). In the
VE frame ``y = x / alpha`` centred at the mean ``m`` of the component means
(``yc = y - m``, ``mu_k`` centred), ``p = softmax_k(l_k)`` and

    isotropic, v_k = s_k^2 + delta:
        l_k    = log w_k - d/2 log v_k - |yc - mu_k|^2 / (2 v_k)
        D - m  = sum_k p_k (delta / v_k) mu_k + (sum_k p_k s_k^2 / v_k) yc     (denoiser)
        score  = sum_k (p_k / v_k) mu_k - (sum_k p_k / v_k) yc
    shared C = U diag(lam) U^T, v_j = lam_j + delta, z = U^T yc, nu_k = U^T mu_k,
    yc_perp = yc - U z, mu_k,perp = mu_k - U nu_k:
        l_k    = log w_k - 1/2 [sum_j (z_j - nu_kj)^2 / v_j + |yc_perp - mu_k,perp|^2 / delta]
        D - m  = sum_k p_k mu_k + U diag(lam / v) (z - sum_k p_k nu_k)
        score  = -U diag(1 / v) (z - sum_k p_k nu_k) - (yc_perp - sum_k p_k mu_k,perp) / delta

(terms common to all k dropped from ``l_k``). Unlike the fast path the squared distances
are taken from direct differences, so no row needs the error bound and hand-back of
:mod:`._mixture_fast`: the cost is the same ``O(K d)`` a particle (``O(d r)`` more for the
basis, by BLAS on a block), and the block is in cache. The steps are those of
:mod:`physdiff.sampling` with the schedule ``alpha``, ``delta``, ``f``, ``g^2`` taken from
the same :class:`~physdiff.sampling.Dynamics` (so any process):

    Runge-Kutta, v(x, t) = f x - (1 + lambda^2)/2 g^2 score(x / alpha, delta) / alpha:
        Euler(-Maruyama)  x_s = x + dt v(x, t) + lambda sqrt(g^2 (-dt)) z
        Heun              x_s = x + dt/2 v(x, t) + dt/2 v(x + dt v(x, t), s)
    posterior (eta):      x_s = alpha_s [x0 + rho (y - x0) + c z],  x0 = D(y, delta_t)

(Song et al. 2021, Eq. 6 and 13; Karras et al. 2022, Algorithm 1; Song, Meng & Ermon 2021,
Eq. 12 and 16; ``rho``, ``c`` as in :class:`~physdiff.sampling.PosteriorStep`).

The fusion. The generic stepper makes, a step, about ten passes over ``(n, d)`` arrays
(``x / alpha``, the centring, the two matrix products, the update's temporaries, the
finiteness checks) plus validation and an ``Evaluation``; here one compiled kernel
(:func:`_step_task`, ``numba.njit(nogil=True, cache=True)``, compiled on first use by
:func:`_jit`) takes a block of rows of ``x``, forms ``yc``, the log joints, the posterior,
the denoiser or score and the update (both stages of Heun) while the block is in cache,
writes the new rows and flags a row whose result is not finite (the squared distances
four rows at a time, so that one load of ``mu_k`` serves four rows; the block's
exponentials in one vectorised pass). A run without noise and with nothing that needs
the particles between steps (no recorder, no trajectory) goes further: one call
(:func:`_run_task`) keeps each block in cache through *all* the steps and writes it once,
so that no step moves ``(n, d)`` arrays through memory at all. Blocks run on the thread
pool of :mod:`physdiff._kernels._threads` (two tasks per core). The noise of a stochastic
method is drawn by the caller's generator exactly as the generic stepper draws it (one
``standard_normal`` of shape ``(n, d)`` per noisy step, in step order) on a helper thread
one step ahead, overlapping the kernel of the step before, so the particles are the
generic path's to rounding; drawing it is sequential (one generator) and, at about 10 ns a
number here, bounds the stochastic methods (benchmarks/results/sampling.md). A flagged
step (a particle so far out that its log joints overflow, or a non-finite result) is
redone by the generic method with the same noise, which handles far particles or raises
its error naming the step (a flagged run without noise is taken again step by step
from its start). Side effect of the look-ahead: when a run stops with an error,
the generator may have drawn one step's noise more than the generic stepper.

``PHYSDIFF_SAMPLER=generic`` in the environment (or :data:`MODE` = ``"generic"``) forces
the generic stepper; ``"fused"`` uses this path for every eligible run, however small
(by default runs under :data:`_MIN_WORK` particle-coordinate-steps stay generic, where the
compiled kernel's first load would dominate).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .._kernels import _compiled
from .._kernels._threads import _BLAS, _NUM_THREADS, _parallel
from ._mixture_fast import IsotropicFast, SharedFast

MODE = "auto"
"""``"auto"`` (fused where eligible and large enough), ``"fused"`` or ``"generic"``; the
environment variable ``PHYSDIFF_SAMPLER`` overrides it."""

_SPARE_CORE = True  # steps overlapping a noise draw run on one thread fewer
_MIN_WORK = 1 << 18  # n * d * steps below which "auto" keeps the generic stepper
_FM = {"nsz", "contract", "reassoc", "arcp"}  # sums vectorise; no nnan/ninf (finite checks)

_EULER, _HEUN, _POSTERIOR = 0, 1, 2  # the step kinds of _step_task

# ======================================================================================
# numba kernels: plain functions, compiled on first use by _jit()
# ======================================================================================


def _softmax_block(P, nb):  # pragma: no cover - compiled
    """``P[i] <- softmax(P[i])`` for the rows ``i < nb`` (NaN where every entry of a row is
    -inf: the row is flagged). The exponentials of the whole block go through one
    vectorised pass (:func:`physdiff._kernels._compiled._exp_into`, relative error 2e-16;
    weights below ``e^-708`` of the row's largest are zero)."""
    K = P.shape[1]
    for i in range(nb):
        m = P[i, 0]
        for k in range(1, K):
            if P[i, k] > m:
                m = P[i, k]
        for k in range(K):
            P[i, k] -= m
    flat = P.reshape(-1)
    _compiled._exp_into(flat, nb * K, 0.0, -708.0, flat, False)
    for i in range(nb):
        tot = 0.0
        for k in range(K):
            tot += P[i, k]
        inv = 1.0 / tot
        for k in range(K):
            P[i, k] *= inv


def _sqdist_rows(Y, i0, nb, mu, kp, P):  # pragma: no cover - compiled
    """``P[i, k] = kp[0, k] - kp[1, k] |Y_i - mu_k|^2`` for ``i0 <= i < nb``, four rows at a
    time (each ``mu_k`` load serves four rows; direct differences, float64 sums)."""
    K, d = mu.shape
    i = i0
    while i + 4 <= nb:
        y0, y1, y2, y3 = Y[i], Y[i + 1], Y[i + 2], Y[i + 3]
        for k in range(K):
            mk = mu[k]
            s0 = s1 = s2 = s3 = 0.0
            for j in range(d):
                m = mk[j]
                t0 = y0[j] - m
                t1 = y1[j] - m
                t2 = y2[j] - m
                t3 = y3[j] - m
                s0 += t0 * t0
                s1 += t1 * t1
                s2 += t2 * t2
                s3 += t3 * t3
            c, h = kp[0, k], kp[1, k]
            P[i, k] = c - h * s0
            P[i + 1, k] = c - h * s1
            P[i + 2, k] = c - h * s2
            P[i + 3, k] = c - h * s3
        i += 4
    for r in range(i, nb):
        yi = Y[r]
        for k in range(K):
            mk = mu[k]
            s = 0.0
            for j in range(d):
                t = yi[j] - mk[j]
                s += t * t
            P[r, k] = kp[0, k] - kp[1, k] * s


def _isotropic(Y, nb, O, P, mu, kp):  # pragma: no cover - compiled
    """Rows ``O[:nb]``: ``sum_k p_k kp[3, k] mu_k + (sum_k p_k kp[2, k]) yc`` (the centred
    denoiser or the score, module docstring) of the centred rows ``Y[:nb]``;
    ``kp = (log w_k - d/2 log v_k, 1 / (2 v_k), e_k, f_k)``; ``P[i]`` the posterior."""
    K, d = mu.shape
    _sqdist_rows(Y, 0, nb, mu, kp, P)
    _softmax_block(P, nb)
    for i in range(nb):
        yi = Y[i]
        lp = P[i]
        oi = O[i]
        a = 0.0
        for k in range(K):
            a += lp[k] * kp[2, k]
        for j in range(d):
            oi[j] = a * yi[j]
        for k in range(K):
            b = lp[k] * kp[3, k]
            mk = mu[k]
            for j in range(d):
                oi[j] += b * mk[j]


def _shared(Y, nb, O, P, denoise, delta, kp, jp, mu, nu, muperp, U, UT):  # pragma: no cover
    """Rows ``O[:nb]``: the centred denoiser (``denoise``) or the score of the centred rows
    ``Y[:nb]`` for components sharing ``U diag(lam) U^T``; ``kp[0] = log w``,
    ``jp = (1 / (2 v_j), lam_j / v_j or -1 / v_j)``; ``muperp`` is empty without a
    complement. ``P[i]`` the posterior."""
    K, d = mu.shape
    r = U.shape[1]
    perp = muperp.shape[0] > 0
    Yb = Y[:nb]
    Z = np.dot(Yb, U)  # (nb, r)
    if perp:
        Yp = Yb - np.dot(Z, UT)  # the complement part, (nb, d)
    else:
        Yp = Yb[:, :0]
    half = 0.5 / delta
    W = np.empty((nb, r))
    for i in range(nb):
        zi = Z[i]
        lp = P[i]
        for k in range(K):
            nk = nu[k]
            s = 0.0
            for j in range(r):
                t = zi[j] - nk[j]
                s += t * t * jp[0, j]
            if perp:
                yp = Yp[i]
                mp = muperp[k]
                s2 = 0.0
                for j in range(d):
                    t = yp[j] - mp[j]
                    s2 += t * t
                s += half * s2
            lp[k] = kp[0, k] - s
    _softmax_block(P, nb)
    for i in range(nb):
        zi = Z[i]
        lp = P[i]
        wi = W[i]
        for j in range(r):
            wi[j] = zi[j]
        for k in range(K):
            pk = lp[k]
            nk = nu[k]
            for j in range(r):
                wi[j] -= pk * nk[j]
        for j in range(r):
            wi[j] *= jp[1, j]
    back = np.dot(W, UT)  # (nb, d)
    inv = 1.0 / delta
    for i in range(nb):
        oi = O[i]
        bi = back[i]
        for j in range(d):
            oi[j] = bi[j]
        if denoise:
            for k in range(K):
                pk = P[i, k]
                mk = mu[k]
                for j in range(d):
                    oi[j] += pk * mk[j]
        elif perp:
            yp = Yp[i]
            for j in range(d):
                oi[j] -= inv * yp[j]
            for k in range(K):
                pk = inv * P[i, k]
                mp = muperp[k]
                for j in range(d):
                    oi[j] += pk * mp[j]


def _model(Y, nb, O, P, denoise, delta, kp, jp, mu, nu, muperp, U, UT):  # pragma: no cover
    """The mixture's centred denoiser or score on ``Y[:nb]`` into ``O[:nb]`` (isotropic
    when ``U`` has no columns)."""
    if U.shape[1] == 0:
        _isotropic(Y, nb, O, P, mu, kp)
    else:
        _shared(Y, nb, O, P, denoise, delta, kp, jp, mu, nu, muperp, U, UT)


def _step_block(
    x,
    out,
    o,
    nb,
    z,
    noisy,
    bad,
    ob,
    kind,
    sc,
    kp1,
    jp1,
    kp2,
    jp2,
    mu,
    nu,
    muperp,
    U,
    UT,
    center,
    Y,
    O,
    X2,
    K1,
    P,
):  # pragma: no cover - compiled
    """One step for the rows ``o .. o + nb - 1`` of ``x`` into the same rows of ``out``
    (noise: the same rows of ``z`` when ``noisy``); ``bad[ob + i]`` is set where the new row
    is not finite (and kept where it was set). ``sc``: the step's scalars

    * Euler: ``alpha, delta, f, h = (1 + lambda^2) g^2 / 2, dt, amp`` (``amp`` the noise
      scale); Heun: those of ``t`` then ``alpha, delta, f, h`` of ``s``;
    * posterior: ``alpha_t, delta_t, rho, alpha_s, c``.

    ``Y``, ``O``, ``X2``, ``K1`` ``(block, d)`` and ``P`` ``(block, K)``: scratch."""
    d = x.shape[1]
    inv_a = 1.0 / sc[0]
    for i in range(nb):
        xi = x[o + i]
        yi = Y[i]
        for j in range(d):
            yi[j] = xi[j] * inv_a - center[j]
    if kind == _POSTERIOR:
        _model(Y, nb, O, P, True, sc[1], kp1, jp1, mu, nu, muperp, U, UT)
        rho, a_s, c = sc[2], sc[3], sc[4]
        for i in range(nb):
            xi = x[o + i]
            oi = O[i]
            ri = out[o + i]
            s = 0.0
            for j in range(d):
                x0 = oi[j] + center[j]
                v = x0 + rho * (xi[j] * inv_a - x0)
                if noisy:
                    v += c * z[o + i, j]
                v *= a_s
                ri[j] = v
                s += v
            bad[ob + i] |= not np.isfinite(s)
        return
    _model(Y, nb, O, P, False, sc[1], kp1, jp1, mu, nu, muperp, U, UT)
    f, h, dt = sc[2], sc[3], sc[4]
    if kind == _EULER:
        amp = sc[5]
        for i in range(nb):
            xi = x[o + i]
            oi = O[i]
            ri = out[o + i]
            s = 0.0
            for j in range(d):
                v = xi[j] + dt * (f * xi[j] - h * (oi[j] * inv_a))
                if noisy:
                    v += amp * z[o + i, j]
                ri[j] = v
                s += v
            bad[ob + i] |= not np.isfinite(s)
        return
    # Heun: the first stage, then the model at x' = x + dt k1 and time s
    a_s, f_s, h_s = sc[6], sc[8], sc[9]
    inv_s = 1.0 / a_s
    for i in range(nb):
        xi = x[o + i]
        oi = O[i]
        for j in range(d):
            k1 = f * xi[j] - h * (oi[j] * inv_a)
            K1[i, j] = k1
            x2 = xi[j] + dt * k1
            X2[i, j] = x2
            Y[i, j] = x2 * inv_s - center[j]
    _model(Y, nb, O, P, False, sc[7], kp2, jp2, mu, nu, muperp, U, UT)
    hd = 0.5 * dt
    for i in range(nb):
        xi = x[o + i]
        oi = O[i]
        ri = out[o + i]
        s = 0.0
        for j in range(d):
            k2 = f_s * X2[i, j] - h_s * (oi[j] * inv_s)
            v = (xi[j] + hd * K1[i, j]) + hd * k2
            ri[j] = v
            s += v
        bad[ob + i] |= not np.isfinite(s)


def _step_task(
    lo, hi, x, out, z, bad, kind, sc, kp1, jp1, kp2, jp2, mu, nu, muperp, U, UT, center, block
):  # pragma: no cover - compiled
    """One step (:func:`_step_block`) for the rows ``[lo, hi)``, ``block`` rows at a time;
    ``z``: the step's noise ``(n, d)``, or no rows for a step without noise."""
    d = x.shape[1]
    noisy = z.shape[0] > 0
    Y = np.empty((block, d))
    O = np.empty((block, d))
    X2 = np.empty((block, d))
    K1 = np.empty((block, d))
    P = np.empty((block, mu.shape[0]))
    for b0 in range(lo, hi, block):
        nb = min(block, hi - b0)
        _step_block(
            x,
            out,
            b0,
            nb,
            z,
            noisy,
            bad,
            b0,
            kind,
            sc,
            kp1,
            jp1,
            kp2,
            jp2,
            mu,
            nu,
            muperp,
            U,
            UT,
            center,
            Y,
            O,
            X2,
            K1,
            P,
        )


def _run_task(
    lo, hi, x, out, bad, kinds, scs, kp1s, jp1s, kp2s, jp2s, mu, nu, muperp, U, UT, center, block
):  # pragma: no cover - compiled
    """Every step of a run without noise for the rows ``[lo, hi)``: a block of ``block``
    rows stays in cache through all the steps (step ``s`` with ``kinds[s]``, ``scs[s]``,
    ``kp1s[s]``, ...) and is written to ``out`` once; ``bad[i]`` is set where a row was
    not finite at some step."""
    d = x.shape[1]
    A = np.empty((block, d))
    B = np.empty((block, d))
    Y = np.empty((block, d))
    O = np.empty((block, d))
    X2 = np.empty((block, d))
    K1 = np.empty((block, d))
    P = np.empty((block, mu.shape[0]))
    z = np.empty((0, d))
    for b0 in range(lo, hi, block):
        nb = min(block, hi - b0)
        for i in range(nb):
            for j in range(d):
                A[i, j] = x[b0 + i, j]
        for st in range(kinds.shape[0]):
            _step_block(
                A,
                B,
                0,
                nb,
                z,
                False,
                bad,
                b0,
                kinds[st],
                scs[st],
                kp1s[st],
                jp1s[st],
                kp2s[st],
                jp2s[st],
                mu,
                nu,
                muperp,
                U,
                UT,
                center,
                Y,
                O,
                X2,
                K1,
                P,
            )
            A, B = B, A
        for i in range(nb):
            for j in range(d):
                out[b0 + i, j] = A[i, j]


_KERNELS = (
    "_softmax_block",
    "_sqdist_rows",
    "_isotropic",
    "_shared",
    "_model",
    "_step_block",
    "_step_task",
    "_run_task",
)
# compiled on first use, after the kernel module's vectorised exponential (_softmax_block
# calls it)
_jit = _compiled.LazyJit(
    globals(), ((name, _FM) for name in _KERNELS), first=_compiled._jit, error_model="numpy"
)


# ======================================================================================
# the driver
# ======================================================================================
_noise_lock = threading.Lock()
_noise_pool: ThreadPoolExecutor | None = None


def _noise_thread() -> ThreadPoolExecutor:
    global _noise_pool
    with _noise_lock:
        if _noise_pool is None:
            _noise_pool = ThreadPoolExecutor(1, thread_name_prefix="physdiff-noise")
        return _noise_pool


def _forget_noise_thread() -> None:  # in a forked child the thread is gone
    global _noise_pool, _noise_lock
    _noise_pool = None
    _noise_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_noise_thread)


def _mode() -> str:
    return os.environ.get("PHYSDIFF_SAMPLER", "") or MODE


class _Replay:
    """Stands for the generator in a generic redo of a step: hands back the noise the
    fused step drew for it (the same numbers the generic stepper would have drawn)."""

    def __init__(self, z: np.ndarray | None):
        self._z = z

    def standard_normal(self, shape):
        if self._z is None or tuple(shape) != self._z.shape:
            raise RuntimeError("the generic redo of a fused step asked for other noise")
        z, self._z = self._z, None
        return z.copy()


class _Step:
    """One step's kernel arguments: its kind, scalars, per-stage model constants, whether
    it draws noise and how many model evaluations it counts."""

    __slots__ = ("kind", "sc", "stages", "noisy", "n_evals")

    def __init__(self, kind, sc, stages, noisy):
        self.kind = kind
        self.sc = np.asarray(sc, dtype=np.float64)
        self.stages = stages
        self.noisy = noisy
        self.n_evals = len(stages)


class FusedRun:
    """The steps of one :func:`physdiff.sampling.sample` run on the fused kernel.

    Built by :func:`plan` after the start is drawn; :meth:`advance` takes the particles of
    grid time ``i`` to grid time ``i + 1``; :meth:`close` waits for the noise look-ahead
    (the sampler calls it however the run ends)."""

    def __init__(self, fast, meth, dyn, grid, x, rng, reuse: bool):
        self._meth = meth
        self._dyn = dyn
        self._grid = grid
        self._rng = rng
        self._reuse = reuse
        n, d = x.shape
        self._shape = (n, d)
        self._mu = fast.mu
        self._center = np.ascontiguousarray(fast.center, dtype=np.float64)
        self._logw = fast.logw
        if isinstance(fast, IsotropicFast):
            self._s2 = fast.s2
            self._U = np.zeros((d, 0))
            self._UT = np.zeros((0, d))
            self._nu = np.zeros((self._mu.shape[0], 0))
            self._muperp = np.zeros((0, d))
            self._lam = None
        else:
            self._s2 = None
            self._U = fast.U
            self._UT = np.ascontiguousarray(fast.U.T)
            self._nu = np.ascontiguousarray(fast.nu)
            self._lam = fast.lam
            self._muperp = (
                np.ascontiguousarray(fast.mu - fast.nu @ fast.U.T)
                if fast.perp
                else np.zeros((0, d))
            )
        self._steps = [self._plan_step(i) for i in range(grid.shape[0] - 1)]
        self._block = int(max(4, min(128, (1 << 14) // max(1, d))))
        self._bad = np.zeros(n, dtype=np.bool_)
        self._no_noise = np.empty((0, d))
        self._spare = None  # the other buffer of the ping-pong (reuse)
        self._bufs = (
            [np.empty((n, d)), np.empty((n, d))] if any(s.noisy for s in self._steps) else []
        )
        self._drawn = 0  # noisy steps drawn so far
        self._pending: Future | None = None
        self._next_noisy = self._noisy_after(-1)
        self._prefetch()

    # -- the schedule ------------------------------------------------------------------
    def _stage(self, delta: float, denoise: bool):
        """``kp`` ``(4, K)`` and ``jp`` ``(2, r)``: the model's constants at ``delta``."""
        d = self._shape[1]
        K = self._mu.shape[0]
        kp = np.zeros((4, K))
        if self._s2 is not None:
            v = self._s2 + delta
            kp[0] = self._logw - 0.5 * d * np.log(v)
            kp[1] = 0.5 / v
            kp[2] = self._s2 / v if denoise else -1.0 / v
            kp[3] = delta / v if denoise else 1.0 / v
            return kp, np.zeros((2, 0))
        v = self._lam + delta
        kp[0] = self._logw
        jp = np.empty((2, v.shape[0]))
        jp[0] = 0.5 / v
        jp[1] = self._lam / v if denoise else -1.0 / v
        return kp, jp

    def _plan_step(self, i: int) -> _Step:
        """Step ``i`` with the schedule the generic method would use (the same
        :meth:`Dynamics.at` calls, so the same one-sided derivatives)."""
        from ..sampling import RungeKutta

        dyn, meth = self._dyn, self._meth
        t, s = float(self._grid[i]), float(self._grid[i + 1])
        if isinstance(meth, RungeKutta):
            dt = s - t
            c0 = dyn.at(t, s)
            lam2 = 0.5 * (1.0 + meth.noise * meth.noise)
            first = self._stage(c0.delta, False)
            sc = [c0.alpha, c0.delta, c0.f, lam2 * c0.g2, dt]
            if len(meth.b) == 2:
                c1 = dyn.at(s, t)
                if c1.delta > 0:  # else the last step stays Euler, as the generic method
                    sc += [0.0, c1.alpha, c1.delta, c1.f, lam2 * c1.g2]
                    return _Step(_HEUN, sc, (first, self._stage(c1.delta, False)), False)
            amp = meth.noise * np.sqrt(c0.g2 * -dt) if meth.noise > 0 else 0.0
            return _Step(_EULER, sc + [amp], (first,), meth.noise > 0)
        ct, cs = dyn.at(t), dyn.at(s)
        r = cs.delta / ct.delta
        e2 = meth.eta * meth.eta
        rho = np.sqrt(r * ((1.0 - e2) + e2 * r))
        c2 = e2 * cs.delta * (1.0 - r)
        c = np.sqrt(c2) if c2 > 0 else 0.0
        stage = self._stage(ct.delta, True)
        return _Step(_POSTERIOR, [ct.alpha, ct.delta, rho, cs.alpha, c], (stage,), c2 > 0)

    # -- noise, one noisy step ahead ---------------------------------------------------
    def _noisy_after(self, i: int) -> int | None:
        for j in range(i + 1, len(self._steps)):
            if self._steps[j].noisy:
                return j
        return None

    def _prefetch(self) -> None:
        """Start drawing the noise of the next noisy step into the free buffer."""
        if self._next_noisy is None:
            return
        buf = self._bufs[self._drawn % 2]
        self._drawn += 1
        rng = self._rng
        self._pending = _noise_thread().submit(lambda: rng.standard_normal(out=buf))

    def _noise(self, i: int) -> np.ndarray | None:
        if not self._steps[i].noisy:
            return None
        assert self._next_noisy == i
        self._pending.result()
        self._pending = None
        z = self._bufs[(self._drawn - 1) % 2]
        self._next_noisy = self._noisy_after(i)
        self._prefetch()  # into the other buffer, while this step runs
        return z

    def close(self) -> None:
        """Wait for a noise draw in flight (so the generator is idle when the run ends)."""
        if self._pending is not None:
            try:
                self._pending.result()
            finally:
                self._pending = None

    # -- one step ------------------------------------------------------------------------
    def advance(self, i: int, x: np.ndarray) -> np.ndarray:
        """The particles at grid time ``i + 1`` from those ``x`` at grid time ``i``."""
        st = self._steps[i]
        z = self._noise(i)
        if self._reuse and self._spare is not None and self._spare is not x:
            out = self._spare
        else:
            out = np.empty(self._shape)
        (kp1, jp1) = st.stages[0]
        kp2, jp2 = st.stages[1] if len(st.stages) > 1 else st.stages[0]
        zz = z if z is not None else self._no_noise
        args = (x, out, zz, self._bad, st.kind, st.sc, kp1, jp1, kp2, jp2, self._mu, self._nu)
        args += (self._muperp, self._U, self._UT, self._center, self._block)
        self._bad[:] = False
        # while the next noise is drawn, leave its core to the drawing thread
        pieces = max(1, _NUM_THREADS - 1) if self._pending is not None and _SPARE_CORE else None
        if self._U.shape[1]:
            with _BLAS.one_thread():
                _parallel(_step_task, self._shape[0], args, pieces=pieces)
        else:
            _parallel(_step_task, self._shape[0], args, pieces=pieces)
        self._dyn.n_evals += st.n_evals
        if self._bad.any():  # redo generically: far particles, or the generic error
            out = self._redo(i, x, z)
        if self._reuse:
            self._spare = x
        return out

    @property
    def whole(self) -> bool:
        """Whether :meth:`run` may take every step at once: no noise, and no recorder or
        trajectory that needs the particles between steps."""
        return self._reuse and not any(st.noisy for st in self._steps)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The particles at the last grid time from those ``x`` at the first, every step
        in one kernel call (:func:`_run_task`: a block stays in cache through the run).
        Where some row was not finite at some step, the run is taken again step by step
        (:meth:`advance`, which redoes such a step generically), from the same ``x``."""
        steps = self._steps
        S, K = len(steps), self._mu.shape[0]
        r = self._U.shape[1]
        kinds = np.array([st.kind for st in steps], dtype=np.int64)
        scs = np.zeros((S, 10))
        kps = np.zeros((2, S, 4, K))
        jps = np.zeros((2, S, 2, r))
        for i, st in enumerate(steps):
            scs[i, : st.sc.shape[0]] = st.sc
            for k in range(2):
                kps[k, i], jps[k, i] = st.stages[min(k, len(st.stages) - 1)]
        out = np.empty(self._shape)
        self._bad[:] = False
        args = (x, out, self._bad, kinds, scs, kps[0], jps[0], kps[1], jps[1], self._mu)
        args += (self._nu, self._muperp, self._U, self._UT, self._center, self._block)
        if r:
            with _BLAS.one_thread():
                _parallel(_run_task, self._shape[0], args)
        else:
            _parallel(_run_task, self._shape[0], args)
        if not self._bad.any():
            self._dyn.n_evals += sum(st.n_evals for st in steps)
            return out
        for i in range(S):
            x = self.advance(i, x)
        return x

    def _redo(self, i: int, x: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        from ..errors import PhysdiffError

        dyn, meth = self._dyn, self._meth
        t, s = float(self._grid[i]), float(self._grid[i + 1])
        dyn.n_evals -= self._steps[i].n_evals
        dyn.begin(i, t, x)
        out, _ = meth.step(dyn, x, t, s, _Replay(z), None)
        if not np.all(np.isfinite(out)):
            raise PhysdiffError(
                f"{meth.name} produced non-finite particles at step {i} (t={t:g} -> {s:g})"
            )
        return out


def eligible(model, meth) -> object | None:
    """The fast-path structure of ``model`` when the fused kernel can run ``model`` with
    ``meth``, else ``None``."""
    from ..sampling import EULER, HEUN, PosteriorStep, RungeKutta
    from .mixture import GaussianMixture

    if not isinstance(model, GaussianMixture):
        return None
    cls = type(model)
    if cls._score is not GaussianMixture._score or cls._denoise is not GaussianMixture._denoise:
        return None  # a subclass with its own model
    fast = model._fast
    if not isinstance(fast, IsotropicFast | SharedFast):
        return None
    if type(meth) is RungeKutta:
        one_stage = (meth.c, meth.a, meth.b) == (EULER.c, EULER.a, EULER.b)
        if not (one_stage or (meth.c, meth.a, meth.b, meth.noise) == (HEUN.c, HEUN.a, HEUN.b, 0.0)):
            return None
    elif type(meth) is not PosteriorStep:
        return None
    return fast


def plan(model, meth, dyn, grid, x, rng, *, reuse: bool) -> FusedRun | None:
    """A :class:`FusedRun` for this run, or ``None`` for the generic stepper.

    ``reuse``: the particles of one step may be overwritten two steps later (no recorder
    and no trajectory keeps them)."""
    mode = _mode()
    if mode == "generic" or grid.shape[0] < 2:
        return None
    fast = eligible(model, meth)
    if fast is None:
        return None
    if mode != "fused" and x.size * (grid.shape[0] - 1) < _MIN_WORK:
        return None
    try:
        _jit()
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return FusedRun(fast, meth, dyn, grid, x, rng, reuse)
