"""Measure an existing diffusers model: a UNet and its scheduler as a physdiff score model.

:func:`load_diffusers` takes a UNet with its scheduler, a pipeline (anything with
``.unet`` and ``.scheduler``) or a local folder written by ``save_pretrained`` (a
pipeline's, with ``model_index.json``, or a model's, with ``config.json``; nothing is
downloaded). The returned :class:`DiffusersModel` carries ``.process``, the scheduler's
own process, so every sampler and estimator of physdiff runs on ``model.process``.

**DDPM-family schedulers** (any with ``alphas_cumprod``: DDPM, DDIM, Euler, DPM-Solver,
PNDM, UniPC, ...). The process is :meth:`physdiff.processes.DDPM.from_alphas_cumprod` of
the scheduler's own (float32) table, so its ``delta_k`` are the scheduler's. A VE-frame
query ``(y, delta)`` is served by the real step ``t = model.process.time_of_delta(delta)``
(``log abar`` linear between integer steps: integer steps are exact, and the UNet's
sinusoidal time embedding takes real timesteps). Then (docs/theory.md section 0,
docs/design.md "One convention for noise"):

    alpha = 1/sqrt(1 + delta),  sigma_t = alpha sqrt(delta),  x_t = alpha y,
    eps   = unet(x_t as an image, t).sample,
    score_VE(y) = alpha score_t(alpha y) = -alpha eps / sigma_t = -eps / sqrt(delta),
    D(y)  = y + delta score_VE(y) = y - sqrt(delta) eps.

``prediction_type`` "sample" (``x0`` directly) and "v_prediction" (``v = alpha eps -
sigma_t x0``, so ``eps = sigma_t x_t + alpha v``; Salimans & Ho 2022) are converted too; a
UNet with a learned variance (``2 C`` output channels) contributes its first ``C``.

**EDM schedulers** (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``): the process
is :class:`physdiff.processes.EDM` of the scheduler's ``sigma_min``, ``sigma_max`` and
``rho``, ``sigma = sqrt(delta)``, and ``D(y) = precondition_outputs(y, unet(
precondition_inputs(y, sigma), precondition_noise(sigma)), sigma)`` by the scheduler's own
preconditioning (Karras et al. 2022, Table 1). Any other scheduler (a flow-matching or a
score-SDE-VE one, say) is refused with :class:`~physdiff.errors.NotSupportedError`.

**Inference steps.** :meth:`DiffusersModel.timesteps` gives the scheduler's
``timestep_spacing`` (``"leading"``, ``"trailing"``, ``"linspace"``, with ``steps_offset``
for leading; Lin et al. 2024, Table 2) and :meth:`DiffusersModel.sampling_options` the
matching physdiff grid: ``sampling.ddim(model, n, rng, **model.sampling_options(50))``
reproduces diffusers' ``DDIMScheduler`` loop with ``eta = 0`` (tested to 1e-6 on a
float64 UNet). Its last step goes to ``abar = 1`` (``set_alpha_to_one``, the default),
which is the final denoise; with ``set_alpha_to_one=False`` it goes to step 0.
diffusers' DDIM always steps from ``t`` to ``t - T // n``: on a spacing whose timesteps
are not ``T // n`` apart (``linspace``, or ``trailing`` when ``n`` does not divide ``T``)
its loop is not a DDIM step between consecutive timesteps, and physdiff's (which is) differs.

**Clipping.** diffusers' schedulers clip the predicted ``x0`` to ``[-r, r]``
(``clip_sample``, ``clip_sample_range = r``; DDPM's and DDIM's default) in their own loop.
physdiff does not clip unless asked: ``load_diffusers(..., clip_sample=True)`` clips the
denoiser's output (and so the score ``(clip(D) - y)/delta``), which is the scheduler's
step with ``use_clipped_model_output=True`` (``eps`` re-derived from the clipped ``x0``,
as in GLIDE). diffusers' default step (clipped ``x0`` beside the unclipped ``eps``) uses
two predictions that no single denoiser gives, so no physdiff sampler reproduces it. With
``clip_sample=False`` (default) a scheduler that clips gets a warning. ``thresholding``
(dynamic thresholding) is not mapped.

**Class labels.** A UNet built with ``num_class_embeds = K`` is taken to hold ``K - 1``
classes and a null label (classifier-free guidance), by default the last index ``K - 1``
as in :class:`physdiff.nn.ScoreUNet`; ``null_label=j`` names another index, the other
indices are then classes ``0..K-2`` in order. ``model.conditional(c)`` conditions on
class ``c``, ``model.unconditional()`` on the null label.

diffusers is imported only to load a folder: any objects with the same attributes work
(``unet.config.sample_size``, ``unet.config.in_channels``, ``unet(x, t).sample``,
``scheduler.alphas_cumprod``, ``scheduler.config.prediction_type``).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._ddpm_tables import spaced_steps
from .._validate import integer
from ..errors import InputError, NotSupportedError
from ..processes import DDPM, EDM, Process
from .adapter import NetworkScoreModel

__all__ = ["DiffusersDenoiser", "DiffusersModel", "load_diffusers"]

_PREDICTIONS = ("epsilon", "sample", "v_prediction")


def _config(obj) -> Any:
    return getattr(obj, "config", None)


def _cfg(obj, name: str, default: Any = None) -> Any:
    cfg = _config(obj)
    if isinstance(cfg, dict):
        return cfg.get(name, default)
    return getattr(cfg, name, default)


def scheduler_process(scheduler) -> Process:
    """The physdiff process of a diffusers scheduler: :class:`DDPM` of its
    ``alphas_cumprod`` for the DDPM family, :class:`EDM` for the EDM schedulers."""
    if getattr(scheduler, "alphas_cumprod", None) is not None:
        return DDPM.from_diffusers(scheduler)
    if _is_edm(scheduler):
        return EDM(
            float(_cfg(scheduler, "sigma_min")),
            float(_cfg(scheduler, "sigma_max")),
            float(_cfg(scheduler, "rho", 7.0)),
        )
    raise NotSupportedError(
        f"scheduler {type(scheduler).__name__} is not supported: physdiff maps schedulers "
        "with alphas_cumprod (DDPM, DDIM, Euler, DPM-Solver, PNDM, UniPC, ...) and the EDM "
        "schedulers (EDMEulerScheduler, EDMDPMSolverMultistepScheduler); flow-matching and "
        "score-SDE schedulers have no mapping here"
    )


def _is_edm(scheduler) -> bool:
    return (
        all(
            callable(getattr(scheduler, m, None))
            for m in ("precondition_inputs", "precondition_noise", "precondition_outputs")
        )
        and _cfg(scheduler, "sigma_min") is not None
    )


class DiffusersDenoiser(nn.Module):
    """A diffusers UNet and its scheduler as a VE-frame denoiser ``D(y, delta, labels)``."""

    def __init__(self, unet, scheduler, *, null_label: int | None = None, clip_sample=False):
        super().__init__()
        size, c = _cfg(unet, "sample_size"), _cfg(unet, "in_channels")
        if size is None or c is None:
            raise InputError(
                "unet must have .config.sample_size and .config.in_channels "
                f"(a diffusers UNet2DModel); got {type(unet).__name__}"
            )
        h, w = (int(size), int(size)) if np.ndim(size) == 0 else (int(size[0]), int(size[1]))
        self.image_shape = (int(c), h, w)
        self.dim = int(c) * h * w
        if getattr(scheduler, "alphas_cumprod", None) is None and _config(scheduler) is None:
            raise InputError(
                "scheduler must have .alphas_cumprod (a diffusers DDPM-family scheduler) "
                f"or EDM preconditioning; got {type(scheduler).__name__}"
            )
        self.process = scheduler_process(scheduler)
        self.edm = isinstance(self.process, EDM)
        pred = _cfg(scheduler, "prediction_type", "epsilon")
        allowed = ("epsilon", "v_prediction") if self.edm else _PREDICTIONS
        if pred not in allowed:
            raise InputError(f"prediction_type must be one of {allowed}; got {pred!r}")
        self.prediction_type = pred
        object.__setattr__(self, "scheduler", scheduler)
        self._labels(unet, null_label)
        self.clip = self._clip_range(scheduler, clip_sample)
        if isinstance(unet, nn.Module):
            self.unet = unet  # registered: moves with .to(device)
        else:
            object.__setattr__(self, "unet", unet)

    def _labels(self, unet, null_label) -> None:
        k = _cfg(unet, "num_class_embeds")
        kind = _cfg(unet, "class_embed_type")
        if k is None:
            if kind is not None:
                raise NotSupportedError(
                    f"class_embed_type={kind!r} without num_class_embeds is not supported "
                    "(only an embedding table of class indices is)"
                )
            if null_label is not None:
                raise InputError("null_label was given but the unet is unconditional")
            self.n_classes, self.null_label = None, None
            return
        k = integer(k, "unet.config.num_class_embeds", 2, 1 << 24)
        self.n_classes = k - 1
        self.null_label = (
            k - 1 if null_label is None else integer(null_label, "null_label", 0, k - 1)
        )

    @staticmethod
    def _clip_range(scheduler, clip_sample) -> float | None:
        if not isinstance(clip_sample, bool):
            raise InputError(f"clip_sample must be True or False; got {clip_sample!r}")
        clips = bool(_cfg(scheduler, "clip_sample", False))
        r = float(_cfg(scheduler, "clip_sample_range", 1.0))
        if clip_sample:
            if not r > 0:
                raise InputError(f"scheduler.config.clip_sample_range must be > 0; got {r!r}")
            return r
        if clips:
            warnings.warn(
                f"the scheduler clips its predicted x0 to [-{r:g}, {r:g}] in its own loop "
                "(clip_sample=True); physdiff's model does not: pass clip_sample=True to "
                "load_diffusers to reproduce the scheduler's clipping",
                stacklevel=4,
            )
        return None

    @property
    def n_steps(self) -> int:
        """Number T of scheduler steps (DDPM family)."""
        return int(self.process.n_steps)

    def timestep(self, delta: torch.Tensor) -> torch.Tensor:
        """Real step ``t = process.time_of_delta(delta)`` (float64, on ``delta``'s device);
        ``delta`` outside the process's range raises DomainError."""
        d = delta.detach().double().reshape(-1).cpu().numpy()
        t = np.atleast_1d(self.process.time_of_delta(d))
        return torch.from_numpy(t).to(delta.device)

    def _class_index(self, labels, batch: int, device) -> torch.Tensor | None:
        if self.n_classes is None:
            if labels is not None:
                raise InputError("labels were given to an unconditional unet")
            return None
        if labels is None:
            return torch.full((batch,), self.null_label, dtype=torch.long, device=device)
        labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        return labels + (labels >= self.null_label).long()  # skip the null index

    def _unet(self, x: torch.Tensor, t: torch.Tensor, labels) -> torch.Tensor:
        lab = self._class_index(labels, x.shape[0], x.device)
        kwargs = {} if lab is None else {"class_labels": lab}
        out = self.unet(x, t, **kwargs)
        out = getattr(out, "sample", out)
        c = self.image_shape[0]
        if out.shape[1] == 2 * c:  # learned variance: first half is the prediction
            out = out[:, :c]
        return out

    def _x0(self, y: torch.Tensor, delta, labels) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E[x0 | y], delta)`` before any clipping, flat ``(B, d)``."""
        delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device).reshape(-1)
        if delta.numel() == 1:
            delta = delta.expand(y.shape[0])
        b = y.shape[0]
        if self.edm:
            sigma = torch.sqrt(delta).reshape(b, 1, 1, 1)
            self.process.check_delta(delta.detach().double().cpu().numpy())
            img = y.reshape(b, *self.image_shape)
            s = self.scheduler
            c_noise = s.precondition_noise(sigma.reshape(b)).reshape(b)
            out = self._unet(s.precondition_inputs(img, sigma), c_noise, labels)
            x0 = s.precondition_outputs(img, out.to(y.dtype), sigma)
            return x0.reshape(b, self.dim).to(y.dtype), delta
        t = self.timestep(delta)
        alpha = torch.rsqrt(1 + delta)[:, None]
        out = self._unet((alpha * y).reshape(b, *self.image_shape), t.to(y.dtype), labels)
        out = out.reshape(b, self.dim).to(y.dtype)
        if self.prediction_type == "sample":
            return out, delta
        if self.prediction_type == "v_prediction":
            sigma_t = alpha * torch.sqrt(delta)[:, None]
            out = sigma_t * alpha * y + alpha * out  # eps = sigma_t x_t + alpha v
        return y - torch.sqrt(delta)[:, None] * out, delta

    def forward(self, y: torch.Tensor, delta, labels=None) -> torch.Tensor:
        """``D(y, delta) = y - sqrt(delta) eps`` (or the predicted sample), clipped to
        ``[-r, r]`` only with ``clip_sample=True``."""
        x0, _ = self._x0(y, delta, labels)
        return x0 if self.clip is None else x0.clamp(-self.clip, self.clip)

    def score(self, y: torch.Tensor, delta, labels=None) -> torch.Tensor:
        """``score_VE(y) = -eps / sqrt(delta)`` computed without cancellation for an eps
        network, else ``(D - y)/delta``."""
        if self.edm or self.clip is not None or self.prediction_type != "epsilon":
            x0, delta = self._x0(y, delta, labels)
            if self.clip is not None:
                x0 = x0.clamp(-self.clip, self.clip)
            return (x0 - y) / delta[:, None]
        delta = torch.as_tensor(delta, dtype=y.dtype, device=y.device).reshape(-1)
        if delta.numel() == 1:
            delta = delta.expand(y.shape[0])
        t = self.timestep(delta)
        alpha = torch.rsqrt(1 + delta)[:, None]
        b = y.shape[0]
        eps = self._unet((alpha * y).reshape(b, *self.image_shape), t.to(y.dtype), labels)
        return -eps.reshape(b, self.dim).to(y.dtype) / torch.sqrt(delta)[:, None]


class DiffusersModel(NetworkScoreModel):
    """:class:`NetworkScoreModel` of a diffusers UNet, with the scheduler's ``process``,
    its ``scheduler`` and its inference ``timesteps``."""

    @property
    def scheduler(self):
        """The diffusers scheduler this model was loaded with."""
        return self.denoiser.scheduler

    def timesteps(self, num_inference_steps: int) -> np.ndarray:
        """The scheduler's inference timesteps (decreasing): its ``timestep_spacing`` for the
        DDPM family (as ``set_timesteps`` computes them, without touching the scheduler), the
        Karras et al. 2022 (Eq. 5) ``sigma`` grid of ``num_inference_steps`` points for EDM."""
        proc = self.process
        n = integer(num_inference_steps, "num_inference_steps", 1, 10**7)
        if isinstance(proc, EDM):
            if n < 2:
                raise InputError(f"num_inference_steps must be >= 2 for EDM; got {n}")
            return proc.time_grid(n - 1)
        spacing = _cfg(self.scheduler, "timestep_spacing", "leading")
        offset = int(_cfg(self.scheduler, "steps_offset", 0)) if spacing == "leading" else 0
        return spaced_steps(proc.n_steps, n, spacing, offset).astype(np.float64)

    def sampling_options(self, num_inference_steps: int) -> dict[str, Any]:
        """``process``, ``times`` and ``final_denoise`` for :func:`physdiff.sampling.sample`
        that follow the scheduler's own loop: its timesteps, then the final step to
        ``abar = 1`` (a final denoise; ``set_alpha_to_one=False``: to step 0 instead) or to
        ``sigma = 0`` for EDM."""
        times = self.timesteps(num_inference_steps)
        final = True
        if _cfg(self.scheduler, "set_alpha_to_one", True) is False:
            final = False
            if times[-1] > 0:
                times = np.append(times, 0.0)
        if times.shape[0] < 2:
            raise InputError(
                f"num_inference_steps={num_inference_steps} gives a grid of one time; a "
                "sampler needs at least two"
            )
        return {"process": self.process, "times": times, "final_denoise": final}


def _load_folder(path: Path, scheduler, dtype):
    try:
        import diffusers
    except ImportError as err:
        raise InputError("loading a saved folder needs diffusers: pip install diffusers") from err

    def cls_of(name: str):
        cls = getattr(diffusers, str(name), None)
        if cls is None or not hasattr(cls, "from_pretrained"):
            raise InputError(f"{path}: {name!r} is not a diffusers class")
        return cls

    kw = {"local_files_only": True}
    index = path / "model_index.json"
    if index.is_file():
        spec = json.loads(index.read_text())
        if "unet" not in spec or "scheduler" not in spec:
            raise InputError(f"{index} names no unet and scheduler")
        unet = cls_of(spec["unet"][1]).from_pretrained(path, subfolder="unet", **kw)
        if scheduler is None:
            sched_cls = cls_of(spec["scheduler"][1])
            scheduler = sched_cls.from_pretrained(path, subfolder="scheduler", **kw)
    elif (path / "config.json").is_file():
        name = json.loads((path / "config.json").read_text()).get("_class_name")
        unet = cls_of(name).from_pretrained(path, **kw)
        if scheduler is None:
            for cand in (path / "scheduler_config.json", path / "scheduler/scheduler_config.json"):
                if cand.is_file():
                    name = json.loads(cand.read_text()).get("_class_name")
                    scheduler = cls_of(name).from_pretrained(cand.parent, **kw)
                    break
            else:
                raise InputError(
                    f"{path} holds a model but no scheduler_config.json: pass scheduler="
                )
    else:
        raise InputError(
            f"model path {str(path)!r} must be a folder written by save_pretrained (with "
            "model_index.json or config.json)"
        )
    if dtype is not None:
        unet = unet.to(dtype)
    return unet, scheduler


def load_diffusers(
    model,
    scheduler=None,
    *,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    label: int | None = None,
    null_label: int | None = None,
    clip_sample: bool = False,
    dtype: torch.dtype | None = None,
) -> DiffusersModel:
    """A diffusers model as a :class:`DiffusersModel` (a physdiff score model).

    ``model``: a UNet (``UNet2DModel``, with ``scheduler``), a pipeline (its ``.unet`` and
    ``.scheduler``; ``scheduler`` overrides the latter) or the path of a local folder
    written by ``save_pretrained``. ``label``: the class every call conditions on;
    ``null_label``: the null-label index of a class-conditional UNet (default the last);
    ``clip_sample``: clip ``E[x0 | y]`` as the scheduler does (see the module docstring);
    ``dtype``: the UNet's dtype for a loaded folder (``torch.float64`` for exact checks).
    Queries are in physdiff's VE frame on flattened images ``(n, C*H*W)``.
    """
    if isinstance(model, str | os.PathLike):
        model, scheduler = _load_folder(Path(model), scheduler, dtype)
    elif hasattr(model, "unet"):  # a pipeline
        scheduler = scheduler if scheduler is not None else getattr(model, "scheduler", None)
        model = model.unet
    if scheduler is None:
        raise InputError(
            "scheduler must be given with a bare unet (or pass a pipeline or a saved folder)"
        )
    den = DiffusersDenoiser(model, scheduler, null_label=null_label, clip_sample=clip_sample)
    return DiffusersModel(
        den, device=device, batch_size=batch_size, label=label, process=den.process
    )
