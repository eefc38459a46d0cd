"""The information and guidance figures build through the atlas, deterministically, from
library values."""

from __future__ import annotations

import numpy as np
import pytest

from physdiff import figures
from physdiff import information as I
from physdiff.cli import main
from physdiff.processes import DDPM

NAMES = (
    "information-posterior-trajectories",
    "information-entropy-profiles",
    "information-per-class",
    "guidance-tradeoff",
)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def registry():
    assert "physdiff.figures.information" not in figures.discover()
    return figures.registry


def test_registered_with_captions(registry):
    for name in NAMES:
        spec = registry.get(name)
        assert spec.module == "physdiff.figures.information"
        assert spec.title and len(spec.caption) > 300


def test_all_build(tmp_path, capsys, registry):
    argv = ["atlas", "--out", str(tmp_path), "--only", *NAMES, "--format", "png"]
    rc = main([*argv, "--dpi", "40", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    for name in NAMES:
        f = tmp_path / f"{name}.png"
        assert f.is_file() and f.read_bytes()[:8] == PNG_MAGIC and f.stat().st_size > 1000


def test_deterministic(tmp_path, capsys, registry):
    name = "information-posterior-trajectories"  # the one with random trajectories
    for sub in ("a", "b"):
        rc = main(
            [
                "atlas",
                "--out",
                str(tmp_path / sub),
                "--only",
                name,
                "--format",
                "png",
                "--dpi",
                "40",
            ]
        )
        assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "a" / f"{name}.png").read_bytes() == (
        tmp_path / "b" / f"{name}.png"
    ).read_bytes()


def test_maxima_helper_drops_rounding_noise_and_keeps_both_decisions():
    from physdiff.figures import information as FI

    model = FI._four()
    proc = DDPM()
    kh = FI._half_steps(proc)
    rate = FI._rate_per_step(model, None, proc, kh)
    xs, _ = FI._maxima(kh, rate)
    # the four-way rate: member decisions near step 304, side decision near 572
    np.testing.assert_allclose(xs, [304.0, 571.7], atol=1.0)
    # per unit log delta the quadrature has rounding-noise maxima at tiny noise levels,
    # which the helper drops (as does local_maxima's default filter; rel_height=0 keeps them)
    dl = np.geomspace(1e-2, 1e3, 2000)
    r = I.entropy_rate_quadrature(model, dl, I.pairwise(0, 1, 4)) * dl
    assert I.local_maxima(np.log(dl), r, rel_height=0)[0].size > 1
    assert I.local_maxima(np.log(dl), r)[0].size == 1
    xs, _ = FI._maxima(np.log(dl), r)
    assert xs.size == 1 and abs(np.exp(xs[0]) / 4.0 - 0.663) < 0.01  # 0.663 m^2, m = 2
