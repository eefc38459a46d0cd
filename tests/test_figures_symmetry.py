"""The symmetry figures build through the atlas, deterministically, and draw library values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physdiff import figures
from physdiff import symmetry as S
from physdiff.cli import main
from physdiff.ensembles import GaussianMixture

NAMES = (
    "symmetry-potentials",
    "symmetry-bifurcation",
    "symmetry-critical-time",
    "symmetry-cloning",
    "symmetry-late-start",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def registry():
    assert "physdiff.figures.symmetry" not in figures.discover()
    return figures.registry


def test_registered_with_captions(registry):
    for name in NAMES:
        spec = registry.get(name)
        assert spec.module == "physdiff.figures.symmetry"
        assert spec.title and len(spec.caption) > 200


@pytest.mark.parametrize("name", NAMES)
def test_builds(tmp_path, capsys, registry, name):
    argv = ["atlas", "--out", str(tmp_path), "--only", name, "--format", "png"]
    rc = main([*argv, "--dpi", "40", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    f = tmp_path / f"{name}.png"
    assert f.is_file() and f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 1000


def test_deterministic(tmp_path, capsys, registry):
    name = "symmetry-critical-time"
    for sub in ("a", "b"):
        rc = main(["atlas", "--out", str(tmp_path / sub), "--only", name, "--format", "png"])
        assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "a" / f"{name}.png").read_bytes() == (
        tmp_path / "b" / f"{name}.png"
    ).read_bytes()


def test_bifurcation_helpers_give_the_closed_forms():
    from physdiff.figures import symmetry as FS

    two = GaussianMixture.two_deltas(1.0)
    assert FS._centre_critical(two, "log-density") == pytest.approx(1.0, rel=1e-10)
    assert FS._centre_critical(two, "sde-drift") == pytest.approx(math.sqrt(2), rel=1e-10)
    # the number of stable points drops from 2 to 1 at the pitchfork
    assert FS._stable_count_change(two, "log-density", 0.1, 10.0, 1) == pytest.approx(1.0, rel=1e-6)
    # the branches of a pitchfork: two stable arms joined to the centre, one unstable centre
    deltas = np.geomspace(0.1, 10.0, 50)
    diag = S.bifurcation_diagram(two, deltas)
    branches = list(FS._branches(diag))
    assert len(branches) == 4  # 3 below Delta_c, 1 above
    for dk, yk, _sk in branches[:3]:
        assert dk[-1] > 1.0 and yk[-1] == pytest.approx(0.0, abs=1e-12)  # joined to the centre
    assert np.all(branches[3][2])  # stable above Delta_c
