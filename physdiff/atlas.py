"""Build the figure gallery: every registered figure as PNG and PDF, plus an index.

:func:`build_atlas` imports every module of :mod:`physdiff.figures` (so a new phenomenon
adds figures by adding a module there), renders each figure on a pyplot-free Agg
``Figure`` inside the house style (:func:`physdiff.plot.style`), and writes each file
atomically (:func:`physdiff.atomic.atomic_write`: a synced temporary file in the output
folder, then ``os.replace``). A figure that raises is reported and skipped; the others are
still built, and the result says which failed (the CLI then exits non-zero).
"""

from __future__ import annotations

import html
import sys
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write, output_folder  # atomic_write re-exported: public here
from .errors import InputError

__all__ = ["FORMATS", "FigureResult", "AtlasResult", "build_atlas", "atomic_write"]

FORMATS = ("png", "pdf", "svg")


@dataclass
class FigureResult:
    """What became of one figure."""

    name: str
    title: str
    caption: str
    module: str
    files: dict[str, str] = field(default_factory=dict)  # format -> file name in the folder
    seconds: float = 0.0
    error: str | None = None  # the traceback's last line when it failed
    traceback: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class AtlasResult:
    """The figures built (or failed), the modules that did not import, the index files."""

    out: Path
    figures: list[FigureResult]
    import_errors: dict[str, str]
    index_files: list[Path]

    @property
    def failed(self) -> list[FigureResult]:
        return [f for f in self.figures if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.import_errors


def _select(registry, only: Sequence[str] | None):
    if not only:
        return list(registry)
    unknown = [n for n in only if n not in registry]
    if unknown:
        raise InputError(
            f"unknown figure name(s) {', '.join(map(repr, unknown))}; "
            f"registered: {', '.join(registry.names()) or '(none)'}"
        )
    seen: dict[str, None] = dict.fromkeys(only)
    return [registry.get(n) for n in seen]


def build_atlas(
    out,
    only: Sequence[str] | None = None,
    formats: Iterable[str] = ("png", "pdf"),
    dpi: int = 150,
    *,
    progress: bool | None = None,
    registry=None,
    log=None,
) -> AtlasResult:
    """Render the registered figures into folder ``out`` and write ``index.html``/``index.md``.

    ``only`` restricts the build to those figure names (unknown names raise
    :class:`~physdiff.errors.InputError` before anything is built). ``progress`` is the
    tqdm bar (``None``: shown when stderr is a terminal). ``registry`` defaults to
    :data:`physdiff.figures.registry` after :func:`physdiff.figures.discover`. ``log``
    receives one-line reports (default: stderr).
    """
    from tqdm.auto import tqdm

    from . import plot
    from .figures import discover
    from .figures import registry as default_registry

    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"formats must be a non-empty selection of {FORMATS}; got {formats}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 2400:
        raise InputError(f"dpi must be an integer in [10, 2400]; got {dpi!r}")
    log = log or (lambda msg: print(msg, file=sys.stderr))

    import_errors: dict[str, str] = {}
    if registry is None:
        registry = default_registry
        for mod, exc in discover().items():
            import_errors[mod] = f"{type(exc).__name__}: {exc}"
            log(
                f"physdiff atlas: could not import figure module {mod}: {type(exc).__name__}: {exc}"
            )
    specs = _select(registry, only)

    # one run at a time per folder, so the set of files is always one run's
    with output_folder(out, log=log) as out:
        results: list[FigureResult] = []
        bar = tqdm(
            specs, desc="atlas", unit="fig", disable=None if progress is None else not progress
        )
        for spec in bar:
            bar.set_postfix_str(spec.name)
            res = FigureResult(spec.name, spec.title, spec.caption, spec.module)
            t0 = time.perf_counter()
            fig = None
            try:
                with plot.style():
                    fig = spec.render()
                    for fmt in formats:
                        fname = f"{spec.name}.{fmt}"
                        plot.save_figure(fig, out / fname, fmt, dpi)
                        res.files[fmt] = fname
            except Exception as exc:
                res.error = f"{type(exc).__name__}: {exc}"
                res.traceback = traceback.format_exc()
                log(f"physdiff atlas: figure {spec.name!r} ({spec.module}) failed: {res.error}")
            finally:
                if fig is not None:
                    fig.clear()
            res.seconds = time.perf_counter() - t0
            results.append(res)
        bar.close()

        entries = _index_entries(registry, results, out, formats)
        index_files = [out / "index.html", out / "index.md"]
        atomic_write(index_files[0], lambda fh: fh.write(_html(entries).encode()))
        atomic_write(index_files[1], lambda fh: fh.write(_markdown(entries).encode()))
        return AtlasResult(out, results, import_errors, index_files)


def _index_entries(registry, results: list[FigureResult], out: Path, formats) -> list:
    """This run's figures plus registered figures already built in ``out`` by an earlier
    run (so that ``--only`` does not drop the rest of the gallery from the index)."""
    built = {r.name: r for r in results}
    entries = []
    for spec in registry:
        if spec.name in built:
            entries.append(built[spec.name])
            continue
        files = {f: f"{spec.name}.{f}" for f in FORMATS if (out / f"{spec.name}.{f}").is_file()}
        if files:
            entries.append(FigureResult(spec.name, spec.title, spec.caption, spec.module, files))
    # names built now but no longer in the registry (a test's temporary figure) come last
    entries += [r for r in results if r.name not in registry]
    return entries


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 2rem auto;
       padding: 0 1rem; color: #111; line-height: 1.45; }
figure { margin: 2.5rem 0; border-top: 1px solid #ddd; padding-top: 1rem; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.95rem; }
.meta { color: #555; font-size: 0.85rem; }
.failed { color: #b00; }
code { font-size: 0.9em; }
"""


def _html(entries: list[FigureResult]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>physdiff figure atlas</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>physdiff figure atlas</h1>",
        f"<p>{len(entries)} figure(s). Rebuild with <code>physdiff atlas --out DIR</code>.</p>",
        "<ul>",
    ]
    parts += [
        f'<li><a href="#{e(r.name)}">{e(r.title)}</a> (<code>{e(r.name)}</code>)'
        + (' <span class="failed">failed</span>' if not r.ok else "")
        + "</li>"
        for r in entries
    ]
    parts.append("</ul>")
    for r in entries:
        parts.append(f'<figure id="{e(r.name)}">')
        parts.append(f"<h2>{e(r.title)}</h2>")
        if r.ok and "png" in r.files:
            parts.append(
                f'<a href="{e(r.files["png"])}"><img src="{e(r.files["png"])}" '
                f'alt="{e(r.title)}" loading="lazy"></a>'
            )
        elif r.ok and "svg" in r.files:
            parts.append(f'<img src="{e(r.files["svg"])}" alt="{e(r.title)}" loading="lazy">')
        if not r.ok:
            parts.append(f'<p class="failed">This figure failed to build: {e(r.error or "")}</p>')
        parts.append(f"<figcaption>{e(r.caption)}</figcaption>")
        links = " | ".join(f'<a href="{e(f)}">{e(fmt.upper())}</a>' for fmt, f in r.files.items())
        parts.append(
            f'<p class="meta">name <code>{e(r.name)}</code>; made by '
            f"<code>{e(r.module)}</code>" + (f"; {links}" if links else "") + "</p>"
        )
        parts.append("</figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _markdown(entries: list[FigureResult]) -> str:
    lines = [
        "# physdiff figure atlas",
        "",
        f"{len(entries)} figure(s). Rebuild with `physdiff atlas --out DIR`.",
        "",
    ]
    for r in entries:
        lines += [f"## {r.title}", ""]
        if not r.ok:
            lines += [f"**Failed to build:** {r.error}", ""]
        elif "png" in r.files:
            lines += [f"![{r.title}]({r.files['png']})", ""]
        lines += [r.caption, ""]
        links = ", ".join(f"[{fmt.upper()}]({f})" for fmt, f in r.files.items())
        lines += [f"*Name `{r.name}`; made by `{r.module}`*" + (f"; {links}" if links else ""), ""]
    return "\n".join(lines)
