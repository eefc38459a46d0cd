"""Faults: killed runs, concurrent runs into one output folder, stray output on stderr.

Every file is written atomically (tests/test_atomic.py); these tests check the set of
files an output folder holds when runs are killed or overlap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from physdiff.atomic import atomic_write_text, output_folder
from physdiff.errors import InputError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock and signals are POSIX")

_HOLD = textwrap.dedent(
    """
    import sys, time
    from physdiff.atomic import output_folder, atomic_write_text
    with output_folder(sys.argv[1], log=lambda m: print("WAIT", flush=True)) as out:
        print("HELD", flush=True)
        atomic_write_text(out / "set.txt", sys.argv[2])
        time.sleep(float(sys.argv[3]))
        atomic_write_text(out / "set-part2.txt", sys.argv[2])
    """
)


def _holder(folder: Path, tag: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), tag, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_second_writer_waits_for_the_first(tmp_path):
    first = _holder(tmp_path, "first", 1.5)
    assert first.stdout.readline().strip() == "HELD"
    second = _holder(tmp_path, "second", 0.0)
    assert second.stdout.readline().strip() == "WAIT"  # it saw the folder taken
    first.wait(timeout=60)
    assert second.stdout.readline().strip() == "HELD"
    second.wait(timeout=60)
    assert first.returncode == second.returncode == 0
    # the folder holds one run's whole set: the later one
    assert (tmp_path / "set.txt").read_text() == "second"
    assert (tmp_path / "set-part2.txt").read_text() == "second"


def test_a_killed_writer_releases_the_folder_and_its_temporaries_are_cleared(tmp_path):
    first = _holder(tmp_path, "first", 60.0)
    assert first.stdout.readline().strip() == "HELD"
    stale = tmp_path / ".set.txt.abcd1234.tmp"  # what a writer killed mid-write leaves
    stale.write_text("half")
    keep = tmp_path / ".hidden-but-not-ours"
    keep.write_text("user file")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    t0 = time.monotonic()
    with output_folder(tmp_path) as out:
        assert time.monotonic() - t0 < 30  # the kernel released the dead writer's lock
        assert not stale.exists()
        assert keep.exists()
        atomic_write_text(out / "set.txt", "after")
    assert (tmp_path / "set.txt").read_text() == "after"


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(InputError, match="out .* exists and is not a folder"):
        with output_folder(target):
            pass


_MAIN = "import sys; from physdiff.cli import main; sys.exit(main(sys.argv[1:]))"


def _atlas(out: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, "-c", _MAIN, "atlas", "--out", str(out), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.slow
def test_atlas_pdf_writes_print_nothing_on_stderr_and_leave_no_temporaries(tmp_path):
    proc = _atlas(tmp_path, "--only", "score-field-gaussian", "--format", "png", "pdf")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    # the one line is the summary; fontTools' time-stamp warnings used to come first
    assert err.strip().splitlines() == [l for l in err.strip().splitlines() if "atlas:" in l]
    assert "timestamp" not in err
    assert (tmp_path / "score-field-gaussian.pdf").stat().st_size > 0
    assert _hidden(tmp_path) == []


@pytest.mark.slow
def test_atlas_killed_mid_run_then_rerun_leaves_a_whole_set(tmp_path):
    names = ["score-field-gaussian", "score-field-mixture"]
    proc = _atlas(tmp_path, "--only", *names, "--format", "png")
    time.sleep(2.0)  # interpreter start and the first figure under way
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    rerun = _atlas(tmp_path, "--only", *names, "--format", "png")
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert _hidden(tmp_path) == []
    for name in names:
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_TERM = textwrap.dedent(
    """
    import sys, time
    from physdiff.atomic import atomic_write
    from physdiff.cli import _terminate_as_interrupt
    _terminate_as_interrupt()
    def slow(fh):
        fh.write(b"part")
        fh.flush()
        print("WRITING", flush=True)
        time.sleep(60)
    try:
        atomic_write(sys.argv[1], slow)
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def test_sigterm_mid_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "figure.png"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TERM, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "WRITING"
    assert len(_hidden(tmp_path)) == 1  # the temporary file, mid-write
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert _hidden(tmp_path) == []
    assert not target.exists()
