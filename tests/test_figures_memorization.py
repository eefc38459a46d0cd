"""The memorisation figures' helpers agree with the library (the posterior covariances, the
regimes drawn); that every figure builds, deterministically, with a caption, is tested for
all of them in tests/test_atlas.py."""

from __future__ import annotations

import numpy as np
import pytest

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


def test_finite_size_figure_draws_the_library_curves():
    """memorization-finite-size: the solid curves are finite_size_entropy at their points,
    the dashed ones the large-d closed form, the points the figure's measurement, which lies
    within 4 standard errors of the exact curve next to the log 2 crossing; the marked
    crossings are where the curves reach log 2."""
    from physdiff.figures import memorization as FM
    from physdiff.figures import registry
    from physdiff.finite_size import finite_size_collapse, finite_size_entropy

    fig = registry.get("memorization-finite-size").render()
    lines = {ln.get_gid(): ln for ln in fig.axes[0].lines if ln.get_gid()}
    d = FM._FS_D
    for n in FM._FS_NS:
        curve = lines[f"fs-{n}"]
        x, y = curve.get_xdata(), curve.get_ydata()
        assert x.size == FM._FS_REL.size
        assert np.allclose(y, finite_size_entropy(x, n, d), rtol=1e-12, atol=0)
        deltas, _, mean, se = FM.finite_size_figure_data(n)
        pts = lines[f"measured-{n}"]
        assert np.allclose(pts.get_xdata(), deltas[FM._FS_MEASURED])
        assert np.allclose(pts.get_ydata(), mean)
        # the measured point nearest the log 2 crossing (0.8 delta_C) against the curve
        k = int(np.argmin(np.abs(np.log(pts.get_xdata() / (0.8 * deltas[0] / FM._FS_REL[0])))))
        ref = float(finite_size_entropy(pts.get_xdata()[k], n, d))
        assert abs(mean[k] - ref) < 4 * se[k]
        # the closed form's crossing: log n - d/2 log(1 + 1/delta) = log 2 at n/2's collapse
        dc2 = float(M.collapse_delta_isotropic(n / 2, d, 1.0))
        assert d * float(M.excess_entropy_gaussian(dc2, n, np.ones(d))) == pytest.approx(
            np.log(2.0), rel=1e-10
        )
    # the interpolated finite-size crossing against the library's root
    deltas, curve, _, _ = FM.finite_size_figure_data(1000)
    ref = finite_size_collapse(1000, d).delta
    assert FM._log2_crossing(deltas, curve) == pytest.approx(ref, rel=0.02)
