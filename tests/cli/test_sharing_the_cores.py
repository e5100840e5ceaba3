"""A busy machine (issue 30, item 3): OpenMP's threads sleep while they wait in the commands
that train, ``--threads`` on every command that computes, and one line when the load average
says others are computing. The figures are ``benchmarks/busy_machine.py``'s."""

import os
import subprocess
import sys

import pytest

from mobilenets.cli.main import COMMANDS, THREADED_COMMANDS, build_parser, main
from mobilenets.cpu import busy_notice, process_env

PROBE = (
    "import os, sys; sys.argv = ['mobilenets', {command!r}, 'missing.pt']\n"
    "from mobilenets.cli.main import main\n"
    "main(); print('policy', os.environ.get('OMP_WAIT_POLICY'))"
)


def test_training_commands_wait_passively_unless_the_user_chose() -> None:
    assert process_env("train", {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert process_env("sweep", {}) == process_env("eval", {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert process_env("train", {"OMP_WAIT_POLICY": "ACTIVE"}) == {}  # the user's choice stays
    assert process_env("bench", {}) == process_env("adapt", {}) == {}  # they time single calls


@pytest.mark.parametrize(("command", "policy"), [("eval", "PASSIVE"), ("bench", "None")])
def test_the_command_line_sets_the_policy_before_torch_loads(command: str, policy: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["MOBILENETS_NO_MALLOC_TUNING"] = "1"  # no re-execution: this process is the command
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(command=command)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert f"policy {policy}" in done.stdout, done.stderr


def test_a_busy_machine_is_said_in_one_line() -> None:
    line = busy_notice(load=1.6, cores=2)
    assert line.startswith("mobilenets: the load average is 1.6 on 2 cores: other programs")
    assert "\n" not in line
    assert busy_notice(load=0.4, cores=2) is None and busy_notice(load=3.0, cores=8) is None
    assert busy_notice(load=4.0, cores=8) is not None


def test_every_command_that_computes_takes_threads(capsys) -> None:
    for command in sorted(THREADED_COMMANDS | {"bench", "adapt"}):  # theirs: timed runtimes
        parser = build_parser(only=command)
        action = next(
            a
            for a in parser._subparsers._group_actions[0].choices[command]._actions
            if "--threads" in a.option_strings
        )
        assert action.default in (None, 1), command
    assert not THREADED_COMMANDS - set(COMMANDS)
    assert main(["eval", "--checkpoint", "missing.pt", "--threads", "0"]) == 2
    assert "argument --threads: 0 is not" in capsys.readouterr().err


def test_threads_reach_torch(tmp_path) -> None:
    """``--threads 1`` in a fresh process: torch computes with one thread."""
    code = (
        "import sys, torch; from mobilenets.cli.main import main; "
        "main(['export', 'mobilenet_v1', '--out', sys.argv[1], '--threads', '1']); "
        "print('threads', torch.get_num_threads())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m.onnx")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "threads 1" in done.stdout, done.stderr
