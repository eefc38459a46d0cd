"""The memorisation figures build through the atlas, deterministically, and their helpers
agree with the library (the control-variate f^e, the posterior covariances)."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff import figures
from physdiff import memorization as M
from physdiff.cli import main
from physdiff.ensembles import Empirical

NAMES = (
    "memorization-phase-diagram",
    "memorization-collapse-time",
    "memorization-excess-entropy",
    "memorization-jacobian-spectra",
    "memorization-lost-dimensions",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def registry():
    assert "physdiff.figures.memorization" not in figures.discover()
    return figures.registry


def test_registered_with_captions(registry):
    for name in NAMES:
        spec = registry.get(name)
        assert spec.module == "physdiff.figures.memorization"
        assert spec.title and len(spec.caption) > 300


@pytest.mark.parametrize("name", NAMES)
def test_builds(tmp_path, capsys, registry, name):
    argv = ["atlas", "--out", str(tmp_path), "--only", name, "--format", "png"]
    rc = main([*argv, "--dpi", "40", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    f = tmp_path / f"{name}.png"
    assert f.is_file() and f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 1000


def test_deterministic(tmp_path, capsys, registry):
    name = "memorization-phase-diagram"
    for sub in ("a", "b"):
        rc = main(["atlas", "--out", str(tmp_path / sub), "--only", name, "--format", "png"])
        assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "a" / f"{name}.png").read_bytes() == (
        tmp_path / "b" / f"{name}.png"
    ).read_bytes()


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
