"""The symmetry figures draw library values (that every figure builds, deterministically,
with a caption, is tested for all of them in tests/test_atlas.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from physdiff import symmetry as S
from physdiff.ensembles import GaussianMixture


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
