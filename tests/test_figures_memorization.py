"""The memorisation figures' helpers agree with the library (the posterior covariances, the
regimes drawn); that every figure builds, deterministically, with a caption, is tested for
all of them in tests/test_atlas.py."""

from __future__ import annotations

import numpy as np

from physdiff import memorization as M
from physdiff.ensembles import Empirical


def test_posterior_covariances_equal_the_ensembles():
    from physdiff.figures.memorization import posterior_covariances

    rng = np.random.default_rng(3)
    emp = Empirical(rng.standard_normal((200, 6)) * 2.0 + 3.0)
    y = emp.points[:12] + 0.3 * rng.standard_normal((12, 6))
    for delta in (1e-2, 0.3, 10.0):
        ref = emp.posterior_covariance(y, delta)
        got = posterior_covariances(emp, y, delta)
        assert np.max(np.abs(got - ref)) < 1e-12 * max(1.0, 25.0 / delta)
        # the score Jacobian's eigenvalues, delta J = Cov/delta - I
        jac = emp.score_jacobian(y, delta) * delta
        ev_ref = np.linalg.eigvalsh(jac)
        ev = np.linalg.eigvalsh(got) / delta - 1.0
        assert np.allclose(ev, ev_ref, atol=1e-9)


def test_phase_diagram_drawing_matches_the_regimes():
    """The filled regions are the library's regimes: check the boundaries the drawing uses."""
    from matplotlib.figure import Figure

    from physdiff.figures.memorization import draw_phase_diagram

    lam = np.r_[5.0, np.ones(99)]
    alphas = np.geomspace(0.01, 1.0, 50)
    times = np.linspace(0.0, 3.0, 80)
    pdiag = M.phase_diagram(lam, alphas, times, "ou")
    fig = Figure()
    ax = fig.add_subplot()
    line = draw_phase_diagram(pdiag, ax)
    assert np.allclose(line.get_ydata(), pdiag.t_collapse)
    assert ax.get_xscale() == "log"
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"collapsed", "speciated", "Brownian"}
    for j, tc in enumerate(pdiag.t_collapse):  # the regime array agrees with the lines
        below = times < tc
        assert np.all(pdiag.regime[below, j] == 0)
        assert np.all(pdiag.regime[~below & (times >= pdiag.t_speciation), j] == 2)
