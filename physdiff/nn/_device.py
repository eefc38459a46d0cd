"""Device selection and small tensor helpers shared by :mod:`physdiff.nn`."""

from __future__ import annotations

import torch

from ..errors import InputError

__all__ = ["default_device", "module_dtype"]


def default_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device to run on.

    ``"auto"`` gives ``cuda`` when ``torch.cuda.is_available()`` and ``cpu`` otherwise;
    ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (or a :class:`torch.device`) are checked to exist.
    Asking for a device that is not there raises :class:`physdiff.errors.InputError` with
    the reason, never a late CUDA error halfway through a run.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}"
        ) from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                f"device {str(device)!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); "
                "use device='auto' or 'cpu'"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise InputError(
                f"device {str(device)!r} was requested but only {n} CUDA device(s) exist"
            )
        return dev
    raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")


def module_dtype(module: torch.nn.Module, default: torch.dtype = torch.float64) -> torch.dtype:
    """The floating dtype of a module's first floating parameter or buffer (``default`` if none:
    a module without weights, such as an exact score wrapped for a test, runs in float64)."""
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return default


def module_device(module: torch.nn.Module) -> torch.device | None:
    """The device of a module's first parameter or buffer (``None`` if it holds none)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None
