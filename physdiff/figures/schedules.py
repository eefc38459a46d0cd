"""Figures: the noise schedules of the named processes, side by side (docs/theory.md section 0)."""

from __future__ import annotations

import numpy as np

from .. import plot
from ..processes import DDPM, PRESETS
from . import register

_LANDMARKS = (0.1, 1.0, 10.0)


@register(
    "schedules",
    "Noise schedules of the named processes",
    "Each process of physdiff.processes.PRESETS on its own time axis normalised to [0, 1] "
    "(DDPM: step k/999, interpolated between steps; EDM: sigma = t, linear in t). "
    "(a) noise-to-signal variance Delta = sigma^2/alpha^2 = 1/SNR, the coordinate in which "
    "every critical point of physdiff is stated; (b) log-SNR = -log Delta; (c) signal scale "
    "alpha; (d) noise scale sigma. VE and EDM keep alpha = 1, so their sigma^2 is Delta. DDPM "
    "(wide pale line) is the discretisation of VP-linear (T beta = 0.1..20), whose dashed "
    "line it carries.",
    figsize=(7.2, 5.4),
)
def schedules(fig):
    axes = fig.subplots(2, 2, sharex=True)
    panels = [("delta", "a"), ("log_snr", "b"), ("alpha", "c"), ("sigma", "d")]
    for ax, (quantity, letter) in zip(axes.ravel(), panels, strict=True):
        for name, proc in PRESETS.items():
            # DDPM is the discretisation of VP-linear (beta * T = 0.1..20): the curves
            # coincide, so DDPM is drawn wide and pale under the dashed VP-linear line
            kw = {"linewidth": 4.0, "alpha": 0.55, "zorder": 1} if name == "ddpm" else {}
            plot.schedule(proc, quantity, ax=ax, label=name, **kw)
        plot.panel_label(ax, letter)
        ax.grid(True, which="major", linewidth=0.4, alpha=0.4)
        ax.set_xlim(0, 1)
    for ax in axes[0]:
        ax.set_xlabel("")
    axes[0, 0].set_ylim(1e-6, 1e10)
    axes[0, 1].set_ylim(-23, 14)
    axes[1, 1].set_ylim(1e-3, 1e2)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)


@register(
    "ddpm-step-map",
    "DDPM steps on the OU clock",
    "Left: DDPM step k (Ho et al. 2020, linear beta from 1e-4 to 0.02, T = 1000) against its "
    "Ornstein-Uhlenbeck time t_k = -log(abar_k)/2 (horizon about 5.06), with the steps "
    "nearest to Delta = 0.1, 1 and 10 marked. Right: Delta_k = 1/abar_k - 1 per step, with "
    "the same landmarks; the OU time of Delta is log(1 + Delta)/2 in every process.",
    figsize=(7.2, 3.2),
)
def ddpm_step_map(fig):
    ddpm = PRESETS["ddpm"]
    assert isinstance(ddpm, DDPM)
    ax1, ax2 = fig.subplots(1, 2)
    plot.ddpm_step_map(ddpm, ax=ax1, landmarks=_LANDMARKS)
    plot.panel_label(ax1, "a")
    ax1.grid(True, linewidth=0.4, alpha=0.4)

    k = np.arange(ddpm.n_steps)
    ax2.plot(k, ddpm.deltas, color=plot.OKABE_ITO["black"], linewidth=1.5)
    ax2.set_yscale("log")
    colors = [plot.OKABE_ITO[c] for c in ("blue", "vermillion", "green")]
    for d, c in zip(_LANDMARKS, colors, strict=True):
        step = int(ddpm.step_of_delta(d, "nearest"))
        ax2.axhline(d, color=c, linewidth=0.8, linestyle=":")
        ax2.axvline(step, color=c, linewidth=0.8, linestyle=":")
        ax2.plot(
            [step],
            [ddpm.deltas[step]],
            "o",
            color=c,
            markersize=4.5,
            label=rf"$\Delta={d:g}$: $k={step}$",
        )
    ax2.set_xlim(0, ddpm.n_steps)
    ax2.set_xlabel("DDPM step $k$")
    ax2.set_ylabel(r"$\Delta_k = 1/\bar\alpha_k - 1$")
    ax2.legend(loc="lower right", frameon=False)
    ax2.grid(True, which="major", linewidth=0.4, alpha=0.4)
    plot.panel_label(ax2, "b")
