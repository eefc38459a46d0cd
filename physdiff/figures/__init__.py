"""The figure registry behind ``physdiff atlas``.

A figure is a function decorated with :func:`register`; it lives in a module of this
package, one module per phenomenon (``physdiff/figures/<phenomenon>.py``). The atlas
imports every module of the package (:func:`discover`), so adding a phenomenon's figures
means adding one module: neither :mod:`physdiff.cli` nor :mod:`physdiff.atlas` changes.

A figure function either draws into a :class:`matplotlib.figure.Figure` it is given::

    @register("two-delta-score", "Two-delta score", "The exact score ...", figsize=(7, 3))
    def two_delta_score(fig):
        ax = fig.subplots()
        ...

or takes no argument and returns a ``Figure``. It must be deterministic: randomness
comes from an explicit ``np.random.default_rng(seed)`` inside the function. This module
imports no matplotlib; figure modules do (through :mod:`physdiff.plot`).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import DuplicateFigureError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "FigureSpec",
    "Registry",
    "registry",
    "register",
    "discover",
    "DuplicateFigureError",
    "DEFAULT_FIGSIZE",
]

DEFAULT_FIGSIZE: tuple[float, float] = (7.0, 4.5)
"""Size in inches of the ``Figure`` handed to a figure function that takes one."""


@dataclass(frozen=True)
class FigureSpec:
    """One registered figure.

    ``make`` is ``Callable[[], Figure]`` or ``Callable[[Figure], None]``; :meth:`render`
    calls it either way and returns the ``Figure``. ``module`` is the module that made it
    (shown in the gallery index).
    """

    name: str
    title: str
    caption: str
    make: Callable[..., Any] = field(repr=False)
    module: str
    figsize: tuple[float, float] | None = None

    @property
    def takes_figure(self) -> bool:
        """Whether ``make`` draws into a Figure it is given (one positional parameter)."""
        params = [
            p
            for p in inspect.signature(self.make).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        return len(params) == 1

    def render(self) -> Figure:
        """Build the figure (a fresh ``Figure`` with an Agg canvas; no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if self.takes_figure:
            fig = Figure(figsize=self.figsize or DEFAULT_FIGSIZE, layout="constrained")
            FigureCanvasAgg(fig)
            out = self.make(fig)
            if out is not None and out is not fig:
                raise TypeError(
                    f"figure {self.name!r}: a function given a Figure must draw "
                    f"into it and return None; got {type(out).__name__}"
                )
        else:
            fig = self.make()
            if not isinstance(fig, Figure):
                raise TypeError(
                    f"figure {self.name!r} must return a matplotlib Figure; "
                    f"got {type(fig).__name__}"
                )
            if self.figsize is not None:
                fig.set_size_inches(*self.figsize)
            if not isinstance(fig.canvas, FigureCanvasAgg):
                FigureCanvasAgg(fig)
        return fig


class Registry:
    """Figures by name, in registration order. Names are unique."""

    def __init__(self) -> None:
        self.specs: dict[str, FigureSpec] = {}

    def add(self, spec: FigureSpec) -> FigureSpec:
        """Register ``spec``; a second, different function under the same name raises.

        Re-running the same function's registration (a module imported twice, e.g. by
        ``importlib.reload``) replaces the entry instead.
        """
        if not isinstance(spec.name, str) or not spec.name.strip():
            raise InputError(f"figure name must be a non-empty string; got {spec.name!r}")
        if any(c in spec.name for c in "/\\ \t\n") or spec.name.startswith("."):
            raise InputError(
                f"figure name must be usable as a file name (no '/', '\\', "
                f"spaces or leading '.'); got {spec.name!r}"
            )
        old = self.specs.get(spec.name)
        if old is not None and _key(old.make) != _key(spec.make):
            raise DuplicateFigureError(
                f"figure name {spec.name!r} is already registered by "
                f"{old.module}.{getattr(old.make, '__qualname__', old.make)!s}"
            )
        self.specs[spec.name] = spec
        return spec

    def register(
        self, name: str, title: str, caption: str, *, figsize: tuple[float, float] | None = None
    ):
        """Decorator: register the decorated function as figure ``name``; returns it unchanged."""

        def deco(func: Callable[..., Any]) -> Callable[..., Any]:
            module = getattr(func, "__module__", None) or "<unknown>"
            self.add(
                FigureSpec(
                    name=name,
                    title=title,
                    caption=caption,
                    make=func,
                    module=module,
                    figsize=figsize,
                )
            )
            return func

        return deco

    def get(self, name: str) -> FigureSpec:
        try:
            return self.specs[name]
        except KeyError:
            raise InputError(
                f"unknown figure {name!r}; registered: {', '.join(self.specs) or '(none)'}"
            ) from None

    def names(self) -> list[str]:
        return list(self.specs)

    def __iter__(self) -> Iterator[FigureSpec]:
        return iter(list(self.specs.values()))

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self.specs


def _key(func: Callable[..., Any]) -> tuple[str, str]:
    return (getattr(func, "__module__", ""), getattr(func, "__qualname__", repr(func)))


registry = Registry()
"""The registry that ``physdiff atlas`` builds from."""


def register(name: str, title: str, caption: str, *, figsize: tuple[float, float] | None = None):
    """Register a figure function in :data:`registry` (see the module docstring)."""
    return registry.register(name, title, caption, figsize=figsize)


def discover() -> dict[str, BaseException]:
    """Import every module of this package so that their figures register.

    Returns the modules that failed to import, with their exception (the atlas reports
    them and carries on with the rest).
    """
    failed: dict[str, BaseException] = {}
    for info in sorted(pkgutil.iter_modules(__path__, prefix=f"{__name__}."), key=lambda m: m.name):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # reported, never hidden
            failed[info.name] = exc
    return failed
