"""Exception types that physdiff raises and users may catch.

Every error names the argument at fault and the range it must lie in. All of them
derive from :class:`PhysdiffError`; the input errors also derive from ``ValueError`` so
that code written against plain numpy conventions keeps working.
"""

from __future__ import annotations

__all__ = [
    "PhysdiffError",
    "InputError",
    "DomainError",
    "ShapeError",
    "NotSupportedError",
    "NoSymmetryBreaking",
    "DuplicateFigureError",
    "ConvergenceWarning",
]


class PhysdiffError(Exception):
    """Base class of every error raised on purpose by physdiff."""


class InputError(PhysdiffError, ValueError):
    """An argument has an invalid value (NaN, inf, wrong sign, weights not summing to 1...)."""


class DomainError(InputError):
    """A number lies outside the range where the quantity is defined (delta <= 0, t > t_max)."""


class ShapeError(InputError):
    """Array shapes do not match (dimension of the query vs the model, say)."""


class NotSupportedError(PhysdiffError, NotImplementedError):
    """The model has no exact form of the requested quantity (said, never approximated silently)."""


class NoSymmetryBreaking(PhysdiffError, ValueError):
    """The model has no symmetry to break under the criterion (e.g. log-concave data).

    Raised by :func:`physdiff.symmetry.critical_point` (also importable from there)."""


class DuplicateFigureError(InputError):
    """Two different functions registered under one figure name.

    Raised by :meth:`physdiff.figures.Registry.register` (also importable from
    :mod:`physdiff.figures`)."""


class ConvergenceWarning(UserWarning):
    """An iteration stopped before meeting its tolerance; the answer it returns is flagged
    (``converged`` is ``False``) and should not be read as converged.

    Warned by :func:`physdiff.symmetry.find_fixed_point` and
    :func:`physdiff.association.find_attractors`."""
