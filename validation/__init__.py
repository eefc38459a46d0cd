"""Trained score networks against physdiff's theory (run from a checkout, not installed).

``python -m validation list | run NAME | run-all | report``: see :mod:`validation.cli`
and docs/validation.md. An experiment is one module of :mod:`validation.experiments` with
a frozen config dataclass per preset (``PRESETS = {"smoke": ..., "cpu": ..., "gpu": ...}``)
and ``run(config, *, device, out_dir, seed, engine) -> Result``. Results
(:mod:`validation.result`) hold the prediction, the measurement with its uncertainty and
the verdict with its rule; :mod:`validation.report` collects them into ``REPORT.md``.
Independent trainings of a sweep run through :mod:`validation.sweep` (local processes, or
SLURM through submitit).

Importing this package is light (no torch); torch is imported when an experiment runs.
"""

__all__: list[str] = []
