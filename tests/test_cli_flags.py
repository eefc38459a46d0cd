"""One spelling per flag across the commands (issue #16): the real parser, walked.

(a) a flag that two or more commands have means the same in each: same attribute, type,
number of values, metavar and help text (so a second meaning cannot creep in under one
spelling); (b) the table of shared concepts (``physdiff.cli._args.SHARED``) is what the
parser uses, and no attribute is spelled two ways across the commands (one concept, one
spelling); (c) each renamed spelling (``RENAMED``) still parses, hidden, to the new
attribute and says so on stderr.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import pytest
from cli_helpers import assert_usage_error, json_result, run_command

from physdiff.cli import build_parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _documented(parser: argparse.ArgumentParser):
    """``(spelling, action)`` for each flag that ``--help`` shows (not -h, not aliases)."""
    for a in parser._actions:
        if a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction):
            continue
        for s in a.option_strings:
            yield s, a


def _meaning(a: argparse.Action) -> tuple:
    choices = None if a.choices is None else tuple(a.choices)
    return (a.dest, a.type, a.nargs, a.metavar, choices, type(a), a.help)


def _by_spelling() -> dict[str, dict[str, argparse.Action]]:
    out: dict[str, dict[str, argparse.Action]] = defaultdict(dict)
    for cmd, parser in _commands().items():
        for s, a in _documented(parser):
            out[s][cmd] = a
    return out


# -- (a) one spelling, one meaning ------------------------------------------------------
def test_a_flag_shared_by_commands_means_the_same_in_each():
    differ = {}
    for spelling, per_cmd in _by_spelling().items():
        if len({_meaning(a) for a in per_cmd.values()}) > 1:
            differ[spelling] = {
                cmd: (a.dest, getattr(a.type, "__qualname__", a.type), a.nargs, a.help)
                for cmd, a in per_cmd.items()
            }
    assert not differ, "one spelling, several meanings:\n" + "\n".join(
        f"{s}: {v}" for s, v in differ.items()
    )


def test_every_flag_of_several_commands_is_defined_once_in_the_table():
    from physdiff.cli._args import SHARED

    shared = {s for s, per_cmd in _by_spelling().items() if len(per_cmd) >= 2}
    assert shared <= {f.spelling for f in SHARED.values()}


# -- (b) one concept, one spelling ------------------------------------------------------
def test_the_table_has_one_spelling_and_one_attribute_per_concept():
    from physdiff.cli._args import SHARED

    flags = list(SHARED.values())
    assert len({f.spelling for f in flags}) == len(flags)
    assert len({f.dest for f in flags}) == len(flags)


def test_the_parser_uses_the_table():
    from physdiff.cli._args import SHARED

    seen = _by_spelling()
    for concept, flag in SHARED.items():
        users = seen.get(flag.spelling, {})
        assert users, f"{concept}: {flag.spelling} is in no command"
        for cmd, a in users.items():
            kw = flag.kwargs()
            assert (a.dest, a.type, a.nargs, a.metavar, a.help) == (
                flag.dest,
                kw.get("type"),
                kw.get("nargs", 0 if flag.action == "store_true" else None),
                kw.get("metavar"),
                kw["help"],
            ), f"{cmd} {flag.spelling}"


def test_no_attribute_is_spelled_two_ways_across_commands():
    spellings: dict[str, set[str]] = defaultdict(set)
    for parser in _commands().values():
        for s, a in _documented(parser):
            spellings[a.dest].add(s)
    assert {d: s for d, s in spellings.items() if len(s) > 1} == {}


# -- (c) the old spellings --------------------------------------------------------------
_REQUIRED = {  # the least each command needs to parse
    "collapse": ["--d", "4"],
    "attractors": [],
    "guide": ["--method", "np", "--remove", "0"],
    "entropy": ["--means=1,2"],
}
_VALUE = {"--n-train": ["12"], "--n-samples": ["40"], "--points": ["circle"], "--out-file": ["x"]}


def _renamed():
    from physdiff.cli import _args

    table = getattr(_args, "RENAMED", {})  # (collected even where there is none)
    return [(cmd, old, new) for cmd, renames in table.items() for old, new in renames.items()]


def test_every_renamed_spelling_is_tested():
    from physdiff.cli._args import RENAMED

    assert RENAMED and set(RENAMED) <= set(_REQUIRED)
    assert {new for _, _, new in _renamed()} <= set(_VALUE)


@pytest.mark.parametrize(("cmd", "old", "new"), _renamed())
def test_an_old_spelling_parses_to_the_new_flag_and_warns(capsys, cmd, old, new):
    parser = build_parser(cmd)
    args_new = parser.parse_args([cmd, *_REQUIRED[cmd], new, *_VALUE[new]])
    assert capsys.readouterr().err == ""
    args_old = parser.parse_args([cmd, *_REQUIRED[cmd], old, *_VALUE[new]])
    err = capsys.readouterr().err
    assert vars(args_old) == vars(args_new)
    assert err.count("\n") == 1 and "DeprecationWarning" in err
    assert f"{old} is deprecated; use {new}" in err
    commands = _commands()
    assert old not in dict(_documented(commands[cmd]))  # hidden
    assert new in dict(_documented(commands[cmd]))
    rc, out, _ = run_command(capsys, cmd, "--help")
    assert rc == 0 and new in out
    assert re.search(rf"{re.escape(old)}(?![\w-])", out) is None  # not in the help text


def test_an_old_spelling_gives_the_same_result(capsys):
    new = json_result(capsys, "collapse", "--d", "16", "--n-train", "1000")
    old = json_result(capsys, "collapse", "--d", "16", "--n", "1000", quiet=False)
    assert old == new
    # and an old spelling keeps its place in a choice of two: --n with --log-n is refused
    rc, out, err = run_command(capsys, "collapse", "--d", "16", "--n", "10", "--log-n", "3")
    assert rc == 2 and "not allowed with" in err


@pytest.mark.parametrize(("cmd", "old", "new"), _renamed())
def test_an_old_and_its_new_spelling_together_are_refused(capsys, cmd, old, new):
    # never the last one silently kept
    rc, _, err = run_command(capsys, cmd, *_REQUIRED[cmd], old, *_VALUE[new], new, *_VALUE[new])
    assert rc == 2 and "not allowed with" in err


def test_an_old_spelling_leaves_its_choice_drawn_in_the_usage_line(capsys):
    # add_renamed moves the hidden alias next to its group in argparse's private action
    # list: without that, the usage line loses the "(a | b)" of a required choice
    rc, out, _ = run_command(capsys, "collapse", "--help")
    assert rc == 0
    assert "(--n-train N [N ...] | --log-n LOG_N [LOG_N ...])" in " ".join(out.split())


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["convert", "--t", "0.5", "0.7", "--from", "ou"], "--t"),
        (["attractors", "--points", "circle", "--n-train", "6", "8"], "--n-train"),
        (["attractors", "--points", "circle", "--n-train", "6.5"], "--n-train"),
    ],
)
def test_a_list_flag_takes_one_value_where_the_command_takes_one(capsys, argv, flag):
    assert_usage_error(*run_command(capsys, *argv), flag)
