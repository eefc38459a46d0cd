"""The result objects behind the ``physdiff`` commands: frozen, ``to_dict()`` strict JSON,
numbers equal to the library functions they summarise."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from physdiff import memorization as M
from physdiff import symmetry as S
from physdiff.conversion import convert
from physdiff.spectra import model_spectrum, spectrum_summary


def _frozen(obj) -> None:
    field = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, field, None)


def test_conversion():
    res = convert(delta=1.0, to=["ou", "edm"])
    _frozen(res)
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["ou_time"] == pytest.approx(math.log(2) / 2, rel=1e-15)
    assert d["targets"]["edm"]["time"] == pytest.approx(1.0, rel=1e-14)  # sigma = sqrt(delta)
    d["targets"]["ou"]["time"] = -1.0  # a copy: the result keeps its own
    assert res.to_dict()["targets"]["ou"]["time"] > 0


def test_critical_table_rows_are_the_library_points():
    tab = S.critical_table(top_eigenvalue=3.0, process="ou")
    _frozen(tab)
    for crit in S.CRITERIA:
        lib = S.critical_from_eigenvalue(3.0, crit, "ou" if crit == "sde-drift" else None)
        assert tab.criteria[crit]["delta"] == pytest.approx(lib.delta, rel=1e-15)
    json.dumps(tab.to_dict(), allow_nan=False)


def test_spectrum_and_its_summary():
    spec, src = model_spectrum(d=5, variance=2.0, intrinsic_dim=3, top_eigenvalue=4.0)
    np.testing.assert_array_equal(spec, [4.0, 2.0, 2.0, 0.0, 0.0])
    assert src == {"d": 5, "variance": 2.0, "intrinsic_dim": 3, "top_eigenvalue": 4.0}
    s = spectrum_summary(spec)
    _frozen(s)
    assert (s.d, s.intrinsic_dim, s.trace, s.sum_of_squares) == (5, 3, 8.0, 24.0)
    assert s.geometric_mean_positive == pytest.approx(16.0 ** (1 / 3), rel=1e-15)
    assert not s.isotropic


def test_collapse_asymptotics_reduce_to_the_isotropic_ones():
    log_n = np.log([1e3, 1e6])
    small, large = M.collapse_asymptotics(log_n, np.full(50, 1.5))
    for regime, got in (("small", small), ("large", large)):
        lib = M.collapse_delta_asymptotic(log_n / 50, 1.5, regime)
        np.testing.assert_allclose(got, lib, rtol=1e-12)


def test_collapse_table_and_phase_diagram_data():
    tab = M.collapse_table(n=[1e4], d=20, process="ddpm")
    _frozen(tab)
    (row,) = tab.to_dict()["results"]
    assert row["delta"] == pytest.approx(float(M.collapse_delta(1e4, np.ones(20))), rel=1e-15)
    pdd = M.phase_diagram_data(d=20, n_alpha=4, n_t=5)
    _frozen(pdd)
    arr = pdd.arrays()
    assert arr["regime"].shape == (5, 4) and np.isnan(arr["t_speciation"])  # no speciation
    json.dumps(pdd.to_dict(), allow_nan=False)
