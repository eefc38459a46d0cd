"""Helpers of the ``physdiff`` command tests (tests/test_cli*.py): run a command in-process,
read its strict-JSON envelope, check a usage error."""

from __future__ import annotations

import json

from physdiff.cli import main


def strict_json(text: str):
    """``json.loads`` refusing ``NaN``, ``Infinity`` and ``-Infinity``."""

    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")

    return json.loads(text, parse_constant=bad)


def run_command(capsys, *argv) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``physdiff ARGV``."""
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def json_result(capsys, *argv, quiet: bool = True):
    """The ``result`` of ``physdiff ARGV --json``: exit status 0, the envelope's command
    is ``ARGV[0]``, nothing on stderr (where ``quiet``)."""
    rc, out, err = run_command(capsys, *argv, "--json")
    assert rc == 0, err
    if quiet:
        assert err == ""
    env = strict_json(out)
    assert env["command"] == argv[0]
    return env["result"]


def assert_usage_error(rc: int, out: str, err: str, flag: str) -> None:
    """Exit status 2, nothing on stdout, one line on stderr naming ``flag``, no traceback."""
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert flag in lines[0] and "error" in lines[0]
    assert "Traceback" not in err
