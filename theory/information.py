"""Class information along the noising (docs/theory.md section 6), derived symbolically.

* Two point masses at +-m with equal weights (the binary channel): given ``y``, the
  posterior is ``p(+ | y) = sigma(2 m y / Delta)``, and the conditional entropy is
  ``H(C | y) = E_y[h(sigma(2 m y/Delta))]`` with ``h`` the binary entropy.
* The score-gap identity ``dH(C | y)/d Delta = 1/2 E |s(y | c) - s(y)|^2``: for the binary
  channel ``s(y | +) - s(y) = (m - E[x0 | y]) / Delta = m (1 - tanh(m y/Delta)) / Delta``.
  We verify the identity symbolically for the integrands after the change of variable
  ``y = m + sqrt(Delta) z`` (conditioned on ``C = +``; the other class is its mirror).
"""

from __future__ import annotations

import sympy as sp

y, z = sp.symbols("y z", real=True)
m, delta = sp.symbols("m Delta", positive=True)


def posterior_plus():
    """p(+ | y) for two equal point masses at +-m, from Bayes' rule."""
    lik_p = sp.exp(-((y - m) ** 2) / (2 * delta))
    lik_m = sp.exp(-((y + m) ** 2) / (2 * delta))
    return sp.simplify(lik_p / (lik_p + lik_m))


def posterior_is_logistic():
    """p(+ | y) - 1/(1 + exp(-2 m y/Delta)): simplifies to 0."""
    return sp.simplify(posterior_plus() - 1 / (1 + sp.exp(-2 * m * y / delta)))


def binary_entropy(p):
    return -p * sp.log(p) - (1 - p) * sp.log(1 - p)


def conditional_entropy_integrand():
    """h(p(+ | y)) at y = m + sqrt(Delta) z (class +; by symmetry the class - term is the same)."""
    p = 1 / (1 + sp.exp(-2 * m * y / delta))
    return binary_entropy(p).subs(y, m + sp.sqrt(delta) * z)


def score_gap_integrand():
    """1/2 E_{c|y} |s(y|c) - s(y)|^2 at y = m + sqrt(Delta) z; for two classes
    E_{c|y} |s_c - s|^2 = p (1-p) |s_+ - s_-|^2 and s_+ - s_- = 2 m / Delta."""
    p = 1 / (1 + sp.exp(-2 * m * y / delta))
    return (sp.Rational(1, 2) * p * (1 - p) * (2 * m / delta) ** 2).subs(y, m + sp.sqrt(delta) * z)
