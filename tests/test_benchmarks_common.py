"""benchmarks._common: the pieces every benchmark script shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks._common import MACHINE_NOTE, arguments, publish, table, with_machine_note


def test_arguments_out_and_quick(tmp_path):
    ap = arguments("First line.\n\nMore.", tmp_path / "r.md", "fewer repetitions")
    assert ap.description == "First line."
    args = ap.parse_args([])
    assert args.out == tmp_path / "r.md" and args.quick is False
    args = ap.parse_args(["--quick", "--out", str(tmp_path / "x.md")])
    assert args.quick is True and args.out == Path(tmp_path / "x.md")
    assert "fewer repetitions" in ap.format_help()


def test_results_end_with_the_machine_note_and_are_written(tmp_path, capsys):
    text = with_machine_note(["# title", "| a |"])
    assert text == "# title\n| a |\n\n" + MACHINE_NOTE + "\n"
    assert publish(tmp_path / "sub" / "r.md", text) == 0
    assert (tmp_path / "sub" / "r.md").read_text() == text
    assert "written:" in capsys.readouterr().out


def test_table_header_rule_and_rows():
    rows = [["x", 1, 2.5], "y | - | 3"]
    assert table("name | n | t", rows, "lrr") == [
        "| name | n | t |",
        "|---|---:|---:|",
        "| x | 1 | 2.5 |",
        "| y | - | 3 |",
    ]
    assert table("a | b", [])[1] == "|---|---|"  # default: every column left-aligned
    for align in ("lrr", "lx"):
        with pytest.raises(ValueError, match="align"):
            table("a | b", [], align)
