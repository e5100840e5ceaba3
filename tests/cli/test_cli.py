"""CLI smoke tests through ``main(argv)``."""

import argparse
import json
import re
import subprocess
import sys

import pytest

from mobilenets.cli.main import main


def test_models_json(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mobilenet_v1"]["macs"] == 568_740_352
    assert rows["mobilenet_v3_small"]["params"] == 2_542_856
    assert rows["mobilenet_v2"]["input_size"] == 224


def test_profile_by_kind_with_width_and_resolution(capsys: pytest.CaptureFixture) -> None:
    argv = ["profile", "mobilenet_v1", "--width-mult", "0.5", "--resolution", "160", "--json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [3, 160, 160]
    assert round(data["macs"] / 1e6) == 77  # TF-slim grid 0.5-160; the paper's Table 9 says 76
    assert main(["profile", "mobilenet_v1", "--by", "kind"]) == 0
    assert "94.86" in capsys.readouterr().out


def test_paper_prints_every_figure(capsys: pytest.CaptureFixture) -> None:
    assert main(["paper"]) == 0
    out = capsys.readouterr().out
    assert "misprint" in out and "180 figures" in out
    assert main(["paper", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 180


def test_bad_width_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["profile", "mobilenet_v1", "--width-mult", "-1"]) == 2
    assert "argument --width-mult: -1 is not a finite number in (0, 8.0]" in capsys.readouterr().err


def test_unknown_model_is_rejected_by_argparse(capsys: pytest.CaptureFixture) -> None:
    assert main(["profile", "mobilenet_v4"]) == 2
    assert "invalid choice: 'mobilenet_v4'" in capsys.readouterr().err


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mobilenets", "models", "mobilenet_v1*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mobilenet_v1_shallow" in out and "2,887,976" in out


def test_profile_latency_of_the_folded_network(capsys: pytest.CaptureFixture) -> None:
    argv = [
        "profile",
        "mobilenet_v1",
        "--width-mult",
        "0.25",
        "--resolution",
        "64",
        "--latency",
        "--runs",
        "2",
        "--fold-bn",
        "--json",
    ]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert "bn" not in data["by_kind"] and "bn" not in data["latency"]["by_kind"]
    shares = data["latency"]["by_kind"]
    assert sum(v["percent_time"] for v in shares.values()) == pytest.approx(100)
    assert shares["conv1x1"]["percent_macs"] == pytest.approx(
        data["shares_percent"]["conv1x1"]["macs"]
    )


def test_train_and_sweep_flags_come_from_the_config(capsys: pytest.CaptureFixture) -> None:
    """Every TrainConfig field on the command line has its flag, default and help from the
    field; the sweep does not offer what it sets per cell or what means nothing there."""
    import dataclasses

    from mobilenets.cli.main import build_parser
    from mobilenets.training import TrainConfig

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    train = {a.dest: a for a in commands["train"]._actions}
    sweep = {a.dest: a for a in commands["sweep"]._actions}
    for f in dataclasses.fields(TrainConfig):
        if not f.metadata["cli"]:
            continue
        assert train[f.name].default == f.default and train[f.name].help == f.metadata["help"]
        assert (f.name in sweep) == f.metadata["sweep"]
    assert "resume" not in sweep and "width_mult" not in sweep
    assert main(["train", "--out", "x", "--momentum", "1"]) == 2
    assert "--momentum: 1 is not a finite number in [0, 1)" in capsys.readouterr().err


def test_every_flag_has_help_with_its_default_and_every_command_examples() -> None:
    from mobilenets.cli.main import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name, command in commands.items():
        text = command.format_help()
        assert "\nexamples:\n  mobilenets " + name in text, name
        for action in command._actions:
            if action.dest in ("help",) or not action.option_strings:
                continue
            assert action.help, f"{name} {action.option_strings[0]} has no help"
            if action.default not in (None, False, argparse.SUPPRESS):  # a default to say
                said = command._get_formatter()._get_help_string(action)
                assert "default" in said, f"{name} {action.option_strings[0]}: {said}"


def test_results_on_stdout_logs_on_stderr_no_bars_when_not_a_terminal(tmp_path, capfd) -> None:
    """Piped, as `mobilenets sweep > table.md` is: stdout parses (markdown table or JSON) and
    holds nothing else; the log and the `wrote ...` lines go to stderr, without progress-bar
    carriage returns (stderr is not a terminal here). Captured at the file descriptors
    (``capfd``), so what a library underneath writes there counts too, as in a pipe."""
    small = ["--width-mults", "0.25", "--resolutions", "32", "--epochs", "1"]
    assert main(["sweep", *small, "--out", str(tmp_path / "s")]) == 0
    sweep = capfd.readouterr()
    table = [line for line in sweep.out.splitlines() if line.strip()]
    assert table[0].startswith("| model |") and table[1].startswith("|---")
    assert len({row.count("|") for row in table if row.startswith("|")}) == 1
    assert all(row.startswith("|") for row in table[:-1])  # then one caption line
    assert "epoch 1/1" in sweep.err and "wrote " in sweep.err and "\r" not in sweep.err
    assert main(["sweep", *small, "--out", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capfd.readouterr().out)[0]["width_mult"] == 0.25
    checkpoint = next((tmp_path / "s").rglob("checkpoint.pt"))
    for argv in (
        ["eval", "--checkpoint", str(checkpoint), "--json"],
        ["models", "--json"],
        ["paper", "--json"],
    ):
        assert main(argv) == 0
        done = capfd.readouterr()
        assert json.loads(done.out) and "\r" not in done.err, argv


HEAVY_MODULES = ("torch", "torchvision", "onnx", "onnxruntime", "matplotlib", "PIL")
STARTUP_PROBE = f"""
import contextlib, io, sys
from mobilenets.cli.main import COMMANDS, main
for words in (["--help"], *([name, "--help"] for name in COMMANDS), ["models"]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(words)
    assert status == 0 and out.getvalue(), words
print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))
"""


def test_help_and_models_start_without_torch() -> None:
    """Every ``--help`` and (with its counts cached) ``mobilenets models`` run without importing
    torch or any other heavy package: the command line starts at once (benchmarks/cli_startup.py
    has the times)."""
    from mobilenets.complexity.summary import summarize_models

    summarize_models()  # fills this session's cache ($MOBILENETS_CACHE, set in conftest)
    probe = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE], capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "[]"


def test_catalog_names_are_the_registered_models() -> None:
    from mobilenets.catalog import MODEL_NAMES
    from mobilenets.models import list_models

    assert tuple(list_models()) == MODEL_NAMES


def test_cached_model_counts_equal_fresh_counts_and_a_corrupt_cache_is_recounted() -> None:
    from mobilenets.complexity import summary

    fresh = summary.summarize_models("mobilenet_v1*", cache=False)
    assert [r.name for r in fresh] == ["mobilenet_v1", "mobilenet_v1_conv", "mobilenet_v1_shallow"]
    assert fresh[0].params == 4_231_976 and fresh[0].macs == 568_740_352
    assert summary.summarize_models("mobilenet_v1*") == fresh
    cached = summary.cache_dir() / "models.json"
    cached.write_text('[{"name": "mobilenet_v1", "params": "torn')
    assert summary.summarize_models("mobilenet_v1*") == fresh
    payload = {row["name"]: row for row in json.loads(cached.read_text())["payload"]}
    assert payload["mobilenet_v1"]["params"] == 4_231_976


def test_a_reader_that_leaves_is_not_an_error() -> None:
    """``mobilenets models | head -1``: the reader closes the pipe; no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mobilenets", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # before the command writes anything (it is still starting)
    _, err = proc.communicate(timeout=120)
    assert b"Traceback" not in err and b"Exception ignored" not in err, err.decode()
    assert proc.returncode == 141


def test_every_help_says_each_default_once_and_every_summary_whole(capsys) -> None:
    """Issue 30, item 4: no "(default: None)", no default said twice, no summary cut short,
    no example whose line continuation was swallowed (a lone backslash in the source joins the
    lines: "photos:large       --out")."""
    from mobilenets.cli.main import COMMANDS, summary

    for command in (None, *COMMANDS):
        assert main([command, "--help"] if command else ["--help"]) == 0
        out = capsys.readouterr().out
        examples = out.partition("examples:")[2]
        assert re.search(r"\S {5,}--", examples) is None, (command, examples)
        text = " ".join(out.split())  # argparse wraps lines
        assert "(default: None)" not in text and "(default: False)" not in text, command
        assert re.search(r"\(default[^)]*\) \(default", text) is None, command
    for command in COMMANDS:
        assert summary(command).endswith((".", ")")), summary(command)
