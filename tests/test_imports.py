"""`import physdiff` stays light: no torch, sympy, matplotlib (docs/design.md), numba lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "sympy", "matplotlib", "numba")


@pytest.mark.parametrize(
    "module",
    ["physdiff", "physdiff.cli", "physdiff.sampling", "physdiff.symmetry", "physdiff.data"],
)
def test_import_pulls_no_heavy_module(module):
    code = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"import {module} also imported: {out}"
