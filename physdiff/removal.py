"""Removing a class by guidance, measured: sample a named mixture with a guidance method
and report what was removed and what was kept (docs/theory.md section 7; ``physdiff
guide``).

The methods (:mod:`physdiff.guidance`, :mod:`physdiff.negative_guidance`): ``cfg``
(classifier-free guidance toward the class, ``s + w (s_c - s)``), ``np`` (negative
prompting, ``s - lambda (s_c - s)``),
``dng-exact`` (dynamic negative guidance with the exact posterior: ``lambda = 1`` samples
the mixture without the class) and ``dng`` (tracked DNG, the posterior followed along the
chain: the method for networks). The sampler is DDPM ancestral steps; the measurements are
:func:`physdiff.metrics.guidance_metrics` against exact samples of the kept classes, with
the sliced W2 distance between two exact samples as its floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .classes import MixtureClasses
from .errors import InputError
from .examples import MIXTURES, mixture
from .guidance import ClassifierFreeGuidance, NegativePrompt
from .metrics import guidance_metrics, sliced_wasserstein
from .negative_guidance import DynamicNegativeGuidance, TrackedDNG
from .processes import Process, get_process
from .sampling import sample

__all__ = ["METHODS", "GuidedRemoval", "guided_removal"]

METHODS = ("cfg", "np", "dng", "dng-exact")
"""The guidance methods of :func:`guided_removal`."""


@dataclass(frozen=True)
class GuidedRemoval:
    """The samples ``x`` ``(n, d)`` of one guided run and its measurements (``summary``,
    JSON-ready: class counts and shares, the removed share with its standard error, the
    KL divergence over the kept classes, the sliced W2 quality and its exact floor)."""

    x: np.ndarray
    summary: dict

    def to_dict(self) -> dict:
        return dict(self.summary)


def _kept_shares(weights, removed: int) -> list[float]:
    """The class distribution a removal aims at: the weights without ``removed``,
    renormalised."""
    w = [0.0 if k == removed else float(x) for k, x in enumerate(weights)]
    total = sum(w)
    return [x / total for x in w]


def _finite_or_none(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def guided_removal(
    name: str,
    method: str,
    remove: int,
    scale: float = 1.0,
    *,
    n: int = 2000,
    seed: int = 0,
    process: Process | str = "ddpm",
    steps: int = 500,
    prior: float | None = None,
    tau: float = 1.0,
    p_max: float = 0.99,
) -> GuidedRemoval:
    """Sample ``n`` points of the named mixture (:data:`physdiff.examples.MIXTURES`) with
    ``method`` (:data:`METHODS`) at ``scale`` by DDPM ancestral steps on ``process``
    (``steps`` steps), then measure the removal of class ``remove`` against ``n`` exact
    samples of the kept classes. ``prior``, ``tau`` and ``p_max`` configure ``dng``
    (:class:`~physdiff.negative_guidance.TrackedDNG`; the prior defaults to the class weight). The
    generator is ``numpy.random.default_rng([seed, 0])``, spawned four ways."""
    mix = mixture(name)
    cond = MixtureClasses(mix)
    proc = get_process(process)
    times = proc.time_grid(steps)
    rng = np.random.default_rng([seed, 0])
    r_sample, r_ref, r_floor, r_metric = rng.spawn(4)
    if method == "cfg":
        model = ClassifierFreeGuidance(cond, remove, scale)
    elif method == "np":
        model = NegativePrompt(cond, remove, scale)
    elif method == "dng-exact":
        model = DynamicNegativeGuidance(cond, remove, scale)
    elif method == "dng":
        p0 = float(cond.class_weights[remove]) if prior is None else prior
        p0 = min(max(p0, 1e-6), p_max)
        model = TrackedDNG(cond, remove, scale, prior=p0, tau=tau, p_max=p_max)
    else:
        raise InputError(f"method: unknown method {method!r}; choose from {', '.join(METHODS)}")
    if isinstance(model, TrackedDNG):
        res = model.sample(n, r_sample, process=proc, times=times)
    else:
        res = sample(model, n, r_sample, method="ddpm", process=proc, times=times)
    x = res.y
    kept = cond.kept_model(remove)
    reference = kept.sample(n, r_ref)
    m = guidance_metrics(
        x,
        classify=cond.classify,
        removed=remove,
        target=cond.class_weights,
        reference=reference,
        rng=r_metric,
    )
    floor, floor_se = sliced_wasserstein(kept.sample(n, r_floor), reference, r_metric)
    counts = np.bincount(cond.classify(x), minlength=cond.n_classes)
    out = {
        "mixture": name,
        "about": MIXTURES[name].about,
        "dim": int(mix.dim),
        "class_weights": cond.class_weights.tolist(),
        "target_shares": None if method == "cfg" else _kept_shares(cond.class_weights, remove),
        "method": method,
        "remove": int(remove),
        "scale": float(scale),
        "n": int(n),
        "seed": int(seed),
        "process": proc.name,
        "steps": int(len(times) - 1),
        "sampler": "ddpm ancestral" + (" with the tracked posterior" if method == "dng" else ""),
        "class_counts": counts.tolist(),
        "class_shares": (counts / n).tolist(),
        "removed_share": m.removed_share,
        "removed_share_se": m.removed_share_se,
        "kl_kept": m.balance.kl,
        "kl_kept_plugin": _finite_or_none(m.balance.kl_plugin),
        "kl_floor": _finite_or_none(m.balance.floor),
        "missing_classes": list(m.balance.missing),
        "quality_w2": m.quality,
        "quality_w2_se": m.quality_se,
        "quality_w2_exact": floor,
        "quality_w2_exact_se": floor_se,
        "mean": np.mean(x, axis=0).tolist(),
    }
    if method == "dng":
        out["dng"] = {"prior": model.prior, "tau": model.tau, "p_max": model.p_max}
        out["final_posterior_mean"] = float(np.mean(res.state.posterior))
    return GuidedRemoval(x, out)
