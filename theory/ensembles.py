"""Exact ensembles in 1-D: the noised Gaussian-mixture density, its score, Tweedie's
formula and the score Jacobian (docs/theory.md section 1), derived symbolically.

``p_delta(y) = sum_k w_k N(y; m_k, s_k^2 + delta)``; the score is ``d log p/dy``; Tweedie
states ``E[x0 | y] = y + delta * score``; the Jacobian is ``-1/delta + Var(x0|y)/delta^2``.
"""

from __future__ import annotations

import sympy as sp

y = sp.Symbol("y", real=True)
delta = sp.Symbol("Delta", positive=True)
m = sp.Symbol("m", positive=True)


def normal_pdf(x, mean, var):
    return sp.exp(-((x - mean) ** 2) / (2 * var)) / sp.sqrt(2 * sp.pi * var)


def mixture_density(weights, means, variances):
    """Noised density of ``sum_k w_k N(m_k, s_k^2)`` at noise-to-signal variance Delta."""
    return sum(
        w * normal_pdf(y, mu, v + delta) for w, mu, v in zip(weights, means, variances, strict=True)
    )


def score(density):
    return sp.diff(sp.log(density), y)


def posterior_moments(weights, means, variances):
    """E[x0 | y] and Var(x0 | y) of the mixture, from the joint density of (x0, y)."""
    num1, num2, den = 0, 0, 0
    for w, mu, v in zip(weights, means, variances, strict=True):
        lik = w * normal_pdf(y, mu, v + delta)
        # x0 | y, k is Gaussian with mean mu + v/(v + Delta) (y - mu), variance v Delta/(v + Delta)
        mk = mu + v / (v + delta) * (y - mu)
        vk = v * delta / (v + delta)
        num1 += lik * mk
        num2 += lik * (vk + mk**2)
        den += lik
    mean = num1 / den
    return mean, num2 / den - mean**2


def two_delta_score():
    """Two point masses at +-m: the score simplifies to (m tanh(m y/Delta) - y)/Delta."""
    s = score(mixture_density([sp.Rational(1, 2)] * 2, [m, -m], [0, 0]))
    target = (m * sp.tanh(m * y / delta) - y) / delta
    return s, target


def two_delta_centre_curvature():
    """d score/dy at y = 0 for two deltas: (m^2 - Delta)/Delta^2, zero at Delta = m^2."""
    s, _ = two_delta_score()
    return sp.simplify(sp.diff(s, y).subs(y, 0))
