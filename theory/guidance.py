"""Guidance (docs/theory.md section 7), derived symbolically.

1. The exact negative-conditional score. For a mixture ``p(x) = w_c p(x | c) + r(x)``
   (``r`` the other classes, weighted), ``p(x | not c) ∝ p(x) - w_c p(x | c)`` and
   ``p(c | x) = w_c p(x | c) / p(x)``, so

       d/dx log(p - w_c p_c) = s - p(c|x) / (1 - p(c|x)) (s_c - s)

   (Koulischer et al., ICLR 2025, Eq. 5), proved here for arbitrary positive functions
   (:func:`negative_score_identity`) and checked on a concrete 1-D Gaussian mixture
   against the score of the mixture with class ``c`` removed and the weights
   renormalised (:func:`mixture_negative_score`).
2. DNG without cancellation: ``s - lambda p/(1-p) (s_c - s) = s - lambda p (s_c - s_rest)``
   with ``s_rest`` the score of the other classes (:func:`dng_rest_form`); at
   ``lambda = 1`` it is ``s_rest`` (the form physdiff.negative_guidance evaluates on mixtures).
3. The reverse kernel of a posterior step in the VE frame equals Ho et al. 2020's Eq. 11
   mean ``(x_k - beta_k / sqrt(1 - abar_k) eps) / sqrt(1 - beta_k)`` and variance
   ``beta~_k`` (Eq. 7) on consecutive DDPM steps (:func:`ddpm_kernel_mean`).
4. The tracked DNG update with ``tau = 1``, offset 0 is the Bayes ratio of two Gaussian
   kernels with equal variance (:func:`bayes_update_exponent`).

Run ``python -m theory.guidance`` to print the derivations.
"""

from __future__ import annotations

import sympy as sp

x = sp.Symbol("x", real=True)
delta = sp.Symbol("Delta", positive=True)
lam = sp.Symbol("lambda", nonnegative=True)
w_c = sp.Symbol("w_c", positive=True)


def normal_pdf(v, mean, var):
    return sp.exp(-((v - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def _pieces():
    """Arbitrary positive class density ``f_c`` and weighted rest ``r``: p = w_c f_c + r."""
    f_c = sp.Function("f_c", positive=True)(x)
    r = sp.Function("r", positive=True)(x)
    p = w_c * f_c + r
    s = sp.diff(sp.log(p), x)
    s_c = sp.diff(sp.log(f_c), x)
    s_rest = sp.diff(sp.log(r), x)
    post = w_c * f_c / p
    return p, s, s_c, s_rest, post, f_c, r


def negative_score_identity():
    """``(formula, target)``: the DNG formula at lambda = 1 and d/dx log(p - w_c p_c)
    for arbitrary positive ``p_c`` and rest; their difference simplifies to 0."""
    p, s, s_c, _, post, f_c, _ = _pieces()
    formula = s - post / (1 - post) * (s_c - s)
    target = sp.diff(sp.log(p - w_c * f_c), x)
    return formula, target


def dng_rest_form():
    """``(formula, rest_form)``: ``s - lambda p/(1-p) (s_c - s)`` and
    ``s - lambda p (s_c - s_rest)``, equal for any lambda."""
    _, s, s_c, s_rest, post, _, _ = _pieces()
    formula = s - lam * post / (1 - post) * (s_c - s)
    rest_form = s - lam * post * (s_c - s_rest)
    return formula, rest_form


def mixture_density(weights, means, variances):
    """Noised 1-D mixture ``sum_k w_k N(x; m_k, v_k + Delta)`` (components as sympy terms)."""
    return [
        w * normal_pdf(x, m, v + delta) for w, m, v in zip(weights, means, variances, strict=True)
    ]


def mixture_negative_score(weights, means, variances, c: int):
    """``(formula, kept_score, log_difference_score)`` for a concrete 1-D Gaussian mixture:
    the negative-conditional formula built from the mixture, its class ``c`` and the
    posterior; the score of the mixture with class ``c`` removed (weights renormalised);
    and ``d/dx log(p - w_c p(x|c))``."""
    terms = mixture_density(weights, means, variances)
    p = sum(terms)
    p_c = terms[c] / weights[c]
    s = sp.diff(sp.log(p), x)
    s_c = sp.diff(sp.log(p_c), x)
    post = terms[c] / p
    formula = s - post / (1 - post) * (s_c - s)
    kept_w = [w for k, w in enumerate(weights) if k != c]
    total = sum(kept_w)
    kept = sum(
        w / total * normal_pdf(x, m, v + delta)
        for k, (w, m, v) in enumerate(zip(weights, means, variances, strict=True))
        if k != c
    )
    kept_score = sp.diff(sp.log(kept), x)
    log_diff = sp.diff(sp.log(p - terms[c]), x)
    return formula, kept_score, log_diff


def ddpm_kernel_mean():
    """``(mean_ve, mean_ho, var_ve, beta_tilde)`` for a step k -> k-1 of DDPM.

    ``abar_k = abar_{k-1} (1 - beta_k)``; the posterior-step kernel of physdiff.sampling,
    written in the VE frame (``y = x / alpha_k``, ``D = 1/abar - 1``, ``r = D_{k-1}/D_k``,
    ``x0 = (x - sigma_k eps)/alpha_k``) has mean ``alpha_{k-1} (x0 + r (y - x0))`` and variance
    ``alpha_{k-1}^2 D_{k-1} (1 - r)``; Ho et al. 2020: Eq. 11 and Eq. 7.
    """
    ab, beta, xk, eps = sp.symbols("abar_prev beta x_k epsilon", positive=True)
    abk = ab * (1 - beta)
    a_t, a_s = sp.sqrt(abk), sp.sqrt(ab)
    sig_t = sp.sqrt(1 - abk)
    D_t, D_s = (1 - abk) / abk, (1 - ab) / ab
    r = D_s / D_t
    y = xk / a_t
    x0 = (xk - sig_t * eps) / a_t
    mean_ve = a_s * (x0 + r * (y - x0))
    mean_ho = (xk - beta / sp.sqrt(1 - abk) * eps) / sp.sqrt(1 - beta)
    var_ve = a_s**2 * D_s * (1 - r)
    beta_tilde = (1 - ab) * beta / (1 - abk)
    return mean_ve, mean_ho, var_ve, beta_tilde


def bayes_update_exponent():
    """``(log_ratio, dng_exponent)``: ``log N(x; mu_c, v) - log N(x; mu, v)`` and the tracked
    DNG exponent ``-(|x - mu_c|^2 - |x - mu|^2) / (2 v)`` at tau = 1, offset 0 (1-D)."""
    mu, mu_c = sp.symbols("mu mu_c", real=True)
    v = sp.Symbol("v", positive=True)
    log_ratio = sp.log(normal_pdf(x, mu_c, v)) - sp.log(normal_pdf(x, mu, v))
    dng = -((x - mu_c) ** 2 - (x - mu) ** 2) / (2 * v)
    return log_ratio, dng


if __name__ == "__main__":  # pragma: no cover - a printed derivation
    f, t = negative_score_identity()
    print("negative-conditional score - d/dx log(p - w_c p_c) =", sp.simplify(f - t))
    f, r = dng_rest_form()
    print("DNG formula - rest form =", sp.simplify(f - r))
    m_ve, m_ho, v_ve, bt = ddpm_kernel_mean()
    print("kernel mean - Ho Eq. 11 =", sp.simplify(m_ve - m_ho))
    print("kernel variance - beta~ =", sp.simplify(v_ve - bt))
    lr, dng = bayes_update_exponent()
    print("Bayes log ratio - DNG exponent =", sp.simplify(sp.expand_log(lr - dng, force=True)))
