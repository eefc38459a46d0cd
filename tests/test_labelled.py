"""Phase diagrams and profiles over named coordinates (xarray's Dataset.from_dict layout)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from physdiff import entropy_profile as E
from physdiff import memorization as M
from physdiff.ensembles import GaussianMixture


def test_phase_diagram_is_labelled():
    alphas, times = np.linspace(0.3, 0.9, 4), np.linspace(0.01, 3.0, 5)
    pdg = M.phase_diagram(np.array([3.0, 1.0, 0.5]), alphas, times)
    d = json.loads(json.dumps(pdg.to_labelled()))
    assert d["coords"]["t"]["data"] == times.tolist()
    assert d["coords"]["alpha_n"]["data"] == alphas.tolist()
    assert d["data_vars"]["regime"]["dims"] == ["t", "alpha_n"]
    np.testing.assert_array_equal(d["data_vars"]["regime"]["data"], pdg.regime)
    np.testing.assert_array_equal(d["data_vars"]["log_n"]["data"], pdg.log_n)
    assert d["attrs"]["t_speciation"] == pdg.t_speciation and d["attrs"]["d"] == 3
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset.from_dict(d)
    assert ds["regime"].sel(t=times[0], alpha_n=alphas[-1]) == pdg.regime[0, -1]


def test_entropy_profile_is_labelled():
    mix = GaussianMixture.isotropic([0.5, 0.5], [[-1.0], [1.0]], [0.1, 0.1])
    ep = E.entropy_profile(mix, levels=40)
    d = ep.to_labelled()
    assert d["coords"]["delta"]["data"] == ep.profile["delta"]
    assert d["data_vars"]["H"] == {"dims": ["delta"], "data": ep.profile["H"]}
    assert "step" in d["data_vars"]  # the default process is DDPM
    json.dumps(d)
