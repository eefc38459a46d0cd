"""The figure registry and ``physdiff atlas``: discovery, files, index, failures."""

from __future__ import annotations

import importlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from physdiff import figures
from physdiff.atlas import atomic_write, build_atlas
from physdiff.cli import main
from physdiff.errors import InputError
from physdiff.figures import DuplicateFigureError, FigureSpec, Registry

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PDF_MAGIC = b"%PDF-"
EXPECTED = {  # module -> the figures it registers (the atlas of every phenomenon)
    "physdiff.figures.schedules": {"schedules", "ddpm-step-map"},
    "physdiff.figures.ensembles": {
        "score-field-gaussian",
        "score-field-mixture",
        "score-field-two-deltas",
        "score-field-empirical",
        "score-field-manifold",
        "two-delta-score-1d",
    },
    "physdiff.figures.symmetry": {
        "symmetry-potentials",
        "symmetry-bifurcation",
        "symmetry-critical-time",
        "symmetry-cloning",
        "symmetry-late-start",
    },
    "physdiff.figures.memorization": {
        "memorization-phase-diagram",
        "memorization-collapse-time",
        "memorization-excess-entropy",
        "memorization-finite-size",
        "memorization-jacobian-spectra",
        "memorization-lost-dimensions",
    },
    "physdiff.figures.association": {
        "association-energy",
        "association-fractions",
        "association-basins",
    },
    "physdiff.figures.information": {
        "information-posterior-trajectories",
        "information-entropy-profiles",
        "information-per-class",
        "guidance-tradeoff",
    },
}
FAST = "ddpm-step-map"


@pytest.fixture(scope="module")
def registry():
    assert figures.discover() == {}
    return figures.registry


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.hrefs, self.srcs = set(), set(), set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.add(a["href"])
        if "src" in a:
            self.srcs.add(a["src"])


def _check_files(out: Path, names, formats=("png", "pdf")):
    for name in names:
        for fmt in formats:
            f = out / f"{name}.{fmt}"
            assert f.is_file() and f.stat().st_size > 1000, f
            head = f.read_bytes()[:8]
            assert head.startswith(PNG_MAGIC if fmt == "png" else PDF_MAGIC), f
    assert not list(out.glob(".*.tmp")), "temporary files left behind"


# -- the registry ------------------------------------------------------------------------


def test_discovery_registers_the_figures(registry):
    for module, names in EXPECTED.items():
        assert {s.name for s in registry if s.module == module} >= names, module
    for spec in registry:
        assert spec.module.startswith("physdiff.figures.")
        # a caption says what is drawn, from which function, and the source: not a label
        assert spec.title and len(spec.caption) > 300, spec.name


def test_duplicate_name_raises(registry):
    with pytest.raises(DuplicateFigureError, match="already registered"):

        @figures.register("schedules", "Another", "A different function, same name")
        def impostor(fig):  # pragma: no cover - never built
            pass

    reg = Registry()

    @reg.register("x", "X", "first")
    def first(fig):  # pragma: no cover
        pass

    with pytest.raises(DuplicateFigureError):
        reg.register("x", "X again", "second")(lambda: None)
    assert len(reg) == 1 and reg.get("x").make is first
    assert isinstance(DuplicateFigureError("x"), InputError)


def test_reimporting_a_figure_module_is_idempotent(registry):
    n = len(registry)
    importlib.reload(importlib.import_module("physdiff.figures.schedules"))
    assert len(registry) == n


@pytest.mark.parametrize("bad", ["", "a/b", "with space", ".hidden"])
def test_figure_names_must_be_file_names(bad):
    with pytest.raises(InputError, match="figure name"):
        Registry().register(bad, "t", "c")(lambda fig: None)


def test_spec_renders_both_conventions():
    from matplotlib.figure import Figure

    def draws(fig):
        fig.subplots().plot([0, 1])

    def returns():
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1])
        return fig

    a = FigureSpec("a", "A", "c", draws, __name__, figsize=(3, 2))
    b = FigureSpec("b", "B", "c", returns, __name__)
    assert a.takes_figure and not b.takes_figure
    fa, fb = a.render(), b.render()
    assert tuple(fa.get_size_inches()) == (3, 2) and len(fa.axes) == 1
    assert isinstance(fb, Figure) and len(fb.axes) == 1
    with pytest.raises(TypeError, match="matplotlib Figure"):
        FigureSpec("c", "C", "c", lambda: 42, __name__).render()


def test_list_figures(capsys, registry):
    assert main(["list-figures"]) == 0
    out = capsys.readouterr().out
    assert set(registry.names()) <= {ln.split()[0] for ln in out.splitlines()}
    assert main(["atlas", "--list"]) == 0
    assert capsys.readouterr().out == out


# -- building ------------------------------------------------------------------------------


def test_build_one_figure(tmp_path, capsys, registry):
    rc = main(["atlas", "--out", str(tmp_path), "--only", FAST, "--dpi", "40", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    _check_files(tmp_path, [FAST])
    html = (tmp_path / "index.html").read_text()
    spec = registry.get(FAST)
    assert spec.title in html and spec.module in html
    assert f"{FAST}.png" in html and f"{FAST}.pdf" in html


def test_build_all_registered_figures_deterministically(tmp_path, capsys, registry):
    rc = main(["atlas", "--out", str(tmp_path), "--dpi", "30", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    names = registry.names()
    _check_files(tmp_path, names)
    parser = _Links()
    parser.feed((tmp_path / "index.html").read_text())
    assert parser.ids == set(names)
    for name in names:
        assert f"{name}.png" in parser.srcs and f"{name}.pdf" in parser.hrefs
    md = (tmp_path / "index.md").read_text()
    for spec in registry:
        assert f"## {spec.title}" in md and f"`{spec.module}`" in md and spec.caption in md
    # the index links only files that exist
    for ref in parser.hrefs | parser.srcs:
        if not ref.startswith("#"):
            assert (tmp_path / ref).is_file(), ref
    # deterministic, every figure: random data come from seeds fixed in the figure
    # functions, and PNG metadata carry no time stamp
    again = tmp_path / "again"
    res = build_atlas(again, formats=["png"], dpi=30, progress=False)
    assert res.ok, [f.traceback for f in res.failed] or res.import_errors
    for name in names:
        png = f"{name}.png"
        assert (again / png).read_bytes() == (tmp_path / png).read_bytes(), name


def test_a_failing_figure_is_reported_and_the_others_still_build(
    tmp_path, capsys, monkeypatch, registry
):
    def boom(fig):
        raise RuntimeError("deliberate failure")

    monkeypatch.setitem(
        registry.specs, "boom", FigureSpec("boom", "Boom", "Always fails.", boom, __name__)
    )
    rc = main(
        ["atlas", "--out", str(tmp_path), "--only", "boom", FAST, "--dpi", "30", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "boom" in err and "deliberate failure" in err
    _check_files(tmp_path, [FAST])
    assert not (tmp_path / "boom.png").exists()
    html = (tmp_path / "index.html").read_text()
    assert "failed to build" in html and FAST in html


def test_only_keeps_earlier_figures_in_the_index(tmp_path, registry):
    build_atlas(tmp_path, only=["two-delta-score-1d"], formats=["png"], dpi=30, progress=False)
    build_atlas(tmp_path, only=[FAST], formats=["png"], dpi=30, progress=False)
    html = (tmp_path / "index.html").read_text()
    assert "two-delta-score-1d.png" in html and f"{FAST}.png" in html


def test_svg_format(tmp_path, registry):
    res = build_atlas(tmp_path, only=[FAST], formats=["svg"], progress=False)
    assert res.ok and (tmp_path / f"{FAST}.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    ("argv", "arg"),
    [
        (["--only", "no-such-figure"], "--only"),
        (["--format", "gif"], "--format"),
        (["--dpi", "0"], "--dpi"),
        (["--dpi", "5"], "--dpi"),
        (["--dpi", "1.5"], "--dpi"),
        ([], "--out"),
    ],
)
def test_atlas_usage_errors(tmp_path, capsys, argv, arg, registry):
    if arg != "--out":
        argv = ["--out", str(tmp_path / "g"), *argv]
    rc = main(["atlas", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and arg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g" / "index.html").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fails(fh):
        fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, fails)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"


def test_build_does_not_use_pyplot(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\nfrom physdiff.cli import main\n"
        f"rc = main(['atlas', '--out', {str(tmp_path)!r}, '--only', {FAST!r}, "
        "'--dpi', '20', '--format', 'png', '--no-progress'])\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'clean', rc)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"clean 0", r.stdout.strip().splitlines()[-1])
