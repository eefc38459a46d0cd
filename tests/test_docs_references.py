"""The repository is self-contained: no file points at notes outside it, and every citation
of docs/theory.md or docs/design.md finds the section it names."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
DESIGN = ROOT / "docs" / "design.md"

# built from pieces so that this file does not match itself
OUTSIDE = [re.compile(p) for p in ("THEORY" + r"\.md", "DESIGN" + r"\.md", r"\bshared" + "/")]
SEP = r"[\s#*]+"  # a citation may wrap onto a comment or docstring line
SECTION = re.compile(
    r"theory\.md\)?,?" + SEP + r"sections?" + SEP + r"(\d+)"
    r"(?:" + SEP + r"(?:and|-|to)" + SEP + r"(\d+)|-(\d+))?"
    r"(?:," + SEP + r"([a-z][a-z -]*[a-z])(?=[:).;]))?"  # a named part ends the citation
)
HEADING = re.compile(r"design\.md,?" + SEP + r'"([^"]+)"')
NOTES = re.compile(r"design\.md,?" + SEP + r"([a-z]+ notes)")


@cache
def tracked_files() -> tuple[Path, ...]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = []
    for name in out.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file() and not path.is_symlink():
            paths.append(path)
    return tuple(paths)


@cache
def texts() -> dict[str, str]:
    out = {}
    for path in tracked_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary (figures, checkpoints)
        out[str(path.relative_to(ROOT))] = data.decode("utf-8", errors="replace")
    return out


def theory_sections() -> dict[int, str]:
    parts = re.split(r"^## (\d+)\. ", THEORY.read_text(), flags=re.M)
    return {int(parts[i]): parts[i + 1].lower() for i in range(1, len(parts) - 1, 2)}


def design_headings() -> list[str]:
    text = DESIGN.read_text()
    heads = [h.strip().lower() for h in re.findall(r"^#+ (.+)$", text, flags=re.M)]
    items = [i.lower() for i in re.findall(r"^- `([^`]+)`", text, flags=re.M)]
    return heads + items


def test_no_file_points_outside_the_repository():
    hits = [
        f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for name, text in texts().items()
        for pattern in OUTSIDE
        for m in pattern.finditer(text)
    ]
    assert not hits, "references to notes outside the repository:\n" + "\n".join(hits)


def test_theory_sections_are_numbered_0_to_8():
    assert sorted(theory_sections()) == list(range(9))


def citations():
    for name, text in texts().items():
        for m in SECTION.finditer(text):
            first = int(m.group(1))
            last = m.group(2) or m.group(3)
            numbers = range(first, int(last) + 1) if last else [first]
            yield name, text.count("\n", 0, m.start()) + 1, list(numbers), m.group(4)


def test_every_cited_theory_section_exists():
    sections = theory_sections()
    found = list(citations())
    assert len(found) > 50  # the pattern does find the docstrings' citations
    missing = [
        f"{n}:{line}: section {k}" for n, line, ks, _ in found for k in ks if k not in sections
    ]
    assert not missing, "citations of missing sections:\n" + "\n".join(missing)


def test_named_parts_of_theory_sections_exist():
    sections = theory_sections()
    named = [(n, line, ks[0], part) for n, line, ks, part in citations() if part]
    assert any(part == "empirical score" for *_, part in named)
    wrong = [
        f"{n}:{line}: section {k}, {part}"
        for n, line, k, part in named
        if part.lower() not in sections.get(k, "")
    ]
    assert not wrong, "named parts that the cited section lacks:\n" + "\n".join(wrong)


def test_cited_design_headings_exist():
    heads = design_headings()
    cited = [
        (name, m.group(1).lower())
        for name, text in texts().items()
        for pattern in (HEADING, NOTES)
        for m in pattern.finditer(text)
    ]
    assert any(h == "one convention for noise" for _, h in cited)
    wrong = [f"{n}: {h!r}" for n, h in cited if not any(h in head for head in heads)]
    assert not wrong, "docs/design.md headings cited but absent:\n" + "\n".join(wrong)
