"""Labelled arrays without xarray: the plain-data layout of ``xarray.Dataset.from_dict``.

A phase diagram, a profile or any other grid result is a set of variables over named
coordinates; :func:`labelled` writes it as ``{"coords", "data_vars", "attrs"}`` of JSON
values, which ``xarray.Dataset.from_dict(d)`` turns into a Dataset (and ``json.dumps``
into a file), so results carry their coordinate names without physdiff depending on
xarray. Used by :meth:`physdiff.memorization.PhaseDiagram.to_labelled` and
:meth:`physdiff.entropy_profile.EntropyProfile.to_labelled`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["labelled"]


def labelled(
    coords: Mapping[str, Any],
    data_vars: Mapping[str, tuple[Sequence[str], Any]],
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A labelled dataset as plain data, in the layout ``xarray.Dataset.from_dict`` reads:
    ``{"coords": {name: {"dims": [name], "data": [...]}}, "data_vars": {name: {"dims": dims,
    "data": nested lists}}, "attrs": {...}}``. Each variable's shape must match its named
    coordinates' lengths (a ``ValueError`` names the variable)."""
    sizes = {k: int(np.asarray(v).shape[0]) for k, v in coords.items()}
    out_c = {k: {"dims": [k], "data": np.asarray(v).tolist()} for k, v in coords.items()}
    out_v = {}
    for name, (dims, data) in data_vars.items():
        arr = np.asarray(data)
        unknown = [d for d in dims if d not in sizes]
        if unknown:
            raise ValueError(f"data_vars[{name!r}] names unknown coordinates {unknown}")
        want = tuple(sizes[d] for d in dims)
        if arr.shape != want:
            raise ValueError(
                f"data_vars[{name!r}] must have shape {want} (dims {tuple(dims)}); got {arr.shape}"
            )
        out_v[name] = {"dims": list(dims), "data": arr.tolist()}
    return {"coords": out_c, "data_vars": out_v, "attrs": dict(attrs or {})}
