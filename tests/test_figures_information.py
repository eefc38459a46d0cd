"""The information and guidance figures draw library values (that every figure builds,
deterministically, with a caption, is tested for all of them in tests/test_atlas.py)."""

from __future__ import annotations

import numpy as np

from physdiff import information as I
from physdiff.processes import DDPM


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
