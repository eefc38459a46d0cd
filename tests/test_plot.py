"""physdiff.plot: helpers return their artists, draw what the model says, leave rcParams alone."""

from __future__ import annotations

import subprocess
import sys

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.contour import QuadContourSet
from matplotlib.lines import Line2D
from matplotlib.quiver import Quiver
from matplotlib.streamplot import StreamplotSet

from physdiff import plot
from physdiff.ensembles import Gaussian, GaussianMixture
from physdiff.errors import InputError, ShapeError
from physdiff.processes import PRESETS

EXTENT = (-2.0, 2.0, -1.5, 1.5)


@pytest.fixture
def rc_snapshot():
    before = {k: v for k, v in mpl.rcParams.items()}
    yield
    after = {k: v for k, v in mpl.rcParams.items()}
    changed = [k for k in before if before[k] != after[k]]
    assert not changed, f"rcParams changed: {changed}"


@pytest.fixture
def mixture():
    return GaussianMixture(
        [0.5, 0.5], [[-1.0, 0.2], [1.0, -0.3]], [0.2 * np.eye(2), [[0.3, 0.1], [0.1, 0.1]]]
    )


def test_score_field_quiver_matches_the_model(rc_snapshot, mixture):
    ax = plot.new_axes()
    q = plot.score_field(mixture, 0.3, EXTENT, ax=ax, n=9)
    assert isinstance(q, Quiver) and q.axes is ax
    X, Y, pts = plot.grid(EXTENT, 9)
    s = mixture.score(pts, 0.3)
    unit = s / np.linalg.norm(s, axis=1, keepdims=True)
    np.testing.assert_allclose(q.U.ravel(), unit[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.V.ravel(), unit[:, 1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.X.ravel(), pts[:, 0])
    # unnormalised arrows carry the raw score
    q2 = plot.score_field(mixture, 0.3, EXTENT, ax=ax, n=9, normalize=False)
    np.testing.assert_allclose(q2.U.ravel(), s[:, 0], rtol=1e-12)


def test_score_field_coloured_and_stream(rc_snapshot, mixture):
    q = plot.score_field(mixture, 0.1, EXTENT, n=7, cmap="viridis")
    assert isinstance(q, Quiver)
    X, Y, pts = plot.grid(EXTENT, 7)
    np.testing.assert_allclose(
        q.get_array(), np.log10(np.linalg.norm(mixture.score(pts, 0.1), axis=1))
    )
    st = plot.score_field(mixture, 1.0, EXTENT, n=15, kind="stream")
    assert isinstance(st, StreamplotSet)
    with pytest.raises(InputError, match="kind"):
        plot.score_field(mixture, 1.0, EXTENT, kind="arrows")


def test_density_contours(rc_snapshot, mixture):
    cs = plot.density_contours(mixture, 0.3, EXTENT, n=41, depth=8.0, levels=9)
    assert isinstance(cs, QuadContourSet) and cs.filled
    np.testing.assert_allclose(cs.levels, np.linspace(-8, 0, 9))
    lines = plot.density_contours(mixture, 0.3, EXTENT, n=41, filled=False, colors="k")
    assert isinstance(lines, QuadContourSet) and not lines.filled
    with pytest.raises(InputError, match="depth"):
        plot.density_contours(mixture, 0.3, EXTENT, depth=0)


def test_density_contours_peak_is_at_the_model_maximum():
    g = Gaussian([0.5, -0.25], [[0.4, 0.0], [0.0, 0.2]])
    cs = plot.density_contours(g, 0.1, EXTENT, n=81)
    # the highest filled band (closest to the max) surrounds the mean
    top = cs.allsegs[-1]
    verts = np.concatenate([seg for seg in top if len(seg)])
    assert verts.min(axis=0)[0] < 0.5 < verts.max(axis=0)[0]
    assert verts.min(axis=0)[1] < -0.25 < verts.max(axis=0)[1]


def test_2d_only_and_extent_checks(mixture):
    one_d = GaussianMixture.two_deltas(1.0)
    with pytest.raises(ShapeError, match="2-D"):
        plot.score_field(one_d, 1.0)
    with pytest.raises(ShapeError, match="2-D"):
        plot.density_contours(one_d, 1.0)
    with pytest.raises(InputError, match="extent"):
        plot.score_field(mixture, 1.0, extent=(1, -1, 0, 1))
    with pytest.raises(InputError, match="n must"):
        plot.grid(EXTENT, 1)


@pytest.mark.parametrize("quantity", ["delta", "log_snr", "alpha", "sigma", "ou_time"])
@pytest.mark.parametrize("name", list(PRESETS))
def test_schedule_draws_the_process_functions(rc_snapshot, name, quantity):
    proc = PRESETS[name]
    ax = plot.new_axes()
    line = plot.schedule(proc, quantity, ax=ax)
    assert isinstance(line, Line2D) and line.axes is ax and line.get_label() == name
    x = np.asarray(line.get_xdata())
    y = np.asarray(line.get_ydata())
    assert x[0] == 0.0 and x[-1] == 1.0 and np.all(np.diff(x) > 0)
    t = proc.t_min + x * (proc.t_max - proc.t_min)
    if quantity == "ou_time":
        expect = 0.5 * np.log1p(proc.delta(t))
    else:
        with np.errstate(divide="ignore"):
            expect = np.asarray(getattr(proc, quantity)(t))
    ok = np.isfinite(expect)
    np.testing.assert_allclose(y[ok], expect[ok], rtol=1e-9, atol=1e-300)
    assert np.all(np.isnan(y[~ok]))
    assert ax.get_yscale() == ("log" if quantity in ("delta", "sigma") else "linear")


def test_schedule_by_name_and_bad_quantity():
    line = plot.schedule("ou", "delta", normalized_time=False)
    assert np.asarray(line.get_xdata())[-1] == PRESETS["ou"].t_max
    with pytest.raises(InputError, match="quantity"):
        plot.schedule("ou", "beta")


def test_ddpm_step_map(rc_snapshot):
    ddpm = PRESETS["ddpm"]
    ax = plot.new_axes()
    line = plot.ddpm_step_map(ddpm, ax=ax, landmarks=(1.0,))
    np.testing.assert_array_equal(line.get_xdata(), ddpm.ou_times)
    np.testing.assert_array_equal(line.get_ydata(), np.arange(ddpm.n_steps))
    k = ddpm.step_of_delta(1.0)
    assert any(f"k={k}" in t.get_text() for t in ax.texts)
    with pytest.raises(InputError, match="DDPM"):
        plot.ddpm_step_map(PRESETS["ou"])


def test_misc_helpers(rc_snapshot):
    pts = plot.data_points(np.zeros((3, 2)))
    assert pts.get_offsets().shape == (3, 2)
    assert plot.panel_label(plot.new_axes(), "a").get_text() == "a"
    cm = plot.truncated_cmap("Greys", 0.0, 0.5)
    assert np.allclose(cm(1.0), mpl.colormaps["Greys"](0.5), atol=1e-2)
    with pytest.raises(InputError):
        plot.truncated_cmap("Greys", 0.5, 0.5)


def test_errorbars_and_line_note(rc_snapshot):
    ax = plot.new_axes()
    cont = plot.errorbars(ax, [1.0, 2.0], [3.0, 4.0], [0.1, 0.2], color="red", label="m")
    line, caps, (bars,) = cont.lines
    assert np.allclose(line.get_ydata(), [3.0, 4.0]) and line.get_linestyle() == "None"
    assert line.get_markersize() == plot.ERRORBAR_STYLE["markersize"]
    assert bars.get_linewidth()[0] == plot.ERRORBAR_STYLE["elinewidth"] and len(caps) == 2
    # caller's keywords win over the house style
    wide = plot.errorbars(ax, [1.0], [1.0], [0.5], fmt="-o", markersize=7.0)
    assert wide.lines[0].get_markersize() == 7.0
    note = plot.line_note(ax, 1.5, "x", 0.9)
    assert note.xy == (1.5, 0.9) and note.get_ha() == "left"
    assert note.xyann == (3, 0)
    left = plot.line_note(ax, 1.5, "y", offset=-4, color="blue")
    assert left.get_ha() == "right" and left.xyann == (-4, 0) and left.xy[1] == 0.97


def test_style_is_a_context(rc_snapshot):
    before = mpl.rcParams["font.size"]
    with plot.style(**{"font.size": 31.0}):
        assert mpl.rcParams["font.size"] == 31.0
    assert mpl.rcParams["font.size"] == before


def test_plot_does_not_import_pyplot():
    code = (
        "import sys, physdiff.plot as p, numpy as np\n"
        "from physdiff.ensembles import Gaussian\n"
        "p.score_field(Gaussian([0, 0], np.eye(2)), 1.0, n=5)\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'clean')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "clean"
