"""A busy machine (issue 30, item 3): OpenMP's threads sleep while they wait in the commands
that train when they share the cores, ``--threads`` on every command that computes, and one line
when others are computing. The figures are ``benchmarks/busy_machine.py``'s."""

import os
import subprocess
import sys
import time

import pytest

import mobilenets.cpu as cpu_module
from mobilenets.cli.main import COMMANDS, THREADED_COMMANDS, build_parser, main
from mobilenets.cpu import MachineLoad, note_computing, omp_threads, others_busy, process_env

PROBE = (
    "import os, sys; sys.argv = ['mobilenets', *sys.argv[1:]]\n"
    "from mobilenets.cli.main import main\n"
    "main(); print('policy', os.environ.get('OMP_WAIT_POLICY'))"
)


NOTED_AND_WAITING = (
    "import time; from mobilenets.cpu import note_computing; note_computing(); "
    "print('noted', flush=True); time.sleep(120)"
)


def test_a_command_that_shares_the_cores_waits_passively_unless_the_user_chose() -> None:
    """Alone, libgomp's spinning is faster (3–17%) and stays; sharing, its threads sleep."""
    alone = process_env(["train", "--model", "mobilenet_v1"], {}, busy=0.1)
    assert alone == ({}, "")
    extra, line = process_env(["train"], {}, busy=1.4)
    assert extra == {"OMP_WAIT_POLICY": "PASSIVE"} and "\n" not in line
    assert line.startswith("mobilenets: other processes keep 1.4 of ")
    assert process_env(["train"], {"LOCAL_WORLD_SIZE": "2"})[0] == extra  # torchrun workers
    assert process_env(["sweep", "--shard", "1/3"], {})[0] == extra  # shards side by side
    assert process_env(["sweep", "--shard", "1/1"], {}) == ({}, "")
    chosen, line = process_env(["train"], {"OMP_WAIT_POLICY": "ACTIVE"}, busy=2.0)
    assert chosen == {} and "slower than alone" in line  # the user's choice stays; said
    bench, line = process_env(["bench"], {}, busy=2.0)  # it times single calls: spinning stays
    assert bench == {} and line.endswith("its timings are noisier")


def _spinner_seen() -> bool:
    """Whether a process spinning one core shows as about one more busy core than just before
    it started (or the cores are saturated either way)."""
    before = others_busy(0.5)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # it has started
        busy = others_busy(0.5)
    finally:
        spinner.kill()
    assert before is not None and busy is not None
    return 0.6 <= busy - before <= 1.6 or (before > 0.5 and busy > 1.5)  # 2 cores: saturated


def _own_work_unseen() -> bool:
    """Whether this process's own work leaves the others' count where it was just before."""
    before = others_busy(0.25)
    with MachineLoad() as load:
        sum(i * i for i in range(2_000_000))  # our own work
    return load.other_cores < before + 0.5


def test_what_other_processes_use_is_measured() -> None:
    """A process that spins one core is seen as about one more busy core than before it
    started; this process's own work is not counted. The suite's other worker computes
    meanwhile, so each is measured against a baseline taken just before, up to three times."""
    assert any(_spinner_seen() for _ in range(3))
    assert any(_own_work_unseen() for _ in range(3))


@pytest.mark.parametrize(
    ("argv", "env", "policy"),
    [
        (["eval", "missing.pt"], {"LOCAL_WORLD_SIZE": "2"}, "PASSIVE"),
        (["eval", "missing.pt"], {"LOCAL_WORLD_SIZE": "2", "OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
        (["bench", "--runs", "0"], {"LOCAL_WORLD_SIZE": "2"}, "None"),
    ],
)
def test_the_command_line_sets_the_policy_before_torch_loads(argv, env, policy) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RANK")}
    clean["MOBILENETS_NO_MALLOC_TUNING"] = "1"  # no re-execution: this process is the command
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )
    assert f"policy {policy}" in done.stdout, done.stderr
    assert "mobilenets: torchrun runs several workers on this machine, so " in done.stderr


def test_our_commands_find_each_other_before_they_load_the_cores(tmp_path, monkeypatch) -> None:
    """Two trainings started 3 s apart both spun (30 + 32 img/s, against 188 + 191 asleep:
    benchmarks/busy_machine.py): the second looked at the CPU load while the first was still
    loading torch. Each computing command notes itself (a file named by its pid) before it
    looks; a command beside a running one sleeps and says which; files of processes that are
    gone are removed, other names ignored, and a command removes its own when it ends."""
    monkeypatch.setenv("MOBILENETS_CACHE", str(tmp_path))
    folder = tmp_path / "computing"
    folder.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (folder / gone.stdout.strip()).touch()
    (folder / "notes.txt").write_text("not a pid")
    (folder / "²").touch()  # a digit to str.isdigit, not to int(): ignored
    for name in ("0", "1", "9" * 40):  # this process group, init, no such pid: not ours
        (folder / name).touch()
    first = subprocess.Popen(
        [sys.executable, "-c", NOTED_AND_WAITING], stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline().strip() == "noted"
        extra, line = process_env(["train"], {}, busy=0.0, ours=[first.pid])
        assert extra == {"OMP_WAIT_POLICY": "PASSIVE"}
        assert line.startswith(
            f"mobilenets: another mobilenets command computes on this machine (pid {first.pid}), "
            "so this command's threads sleep"
        )
        clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "RANK")}
        clean["MOBILENETS_NO_MALLOC_TUNING"] = "1"
        beside = subprocess.run(
            [sys.executable, "-c", PROBE, "eval", "missing.pt"],
            capture_output=True,
            text=True,
            env=clean,
            timeout=120,
        )
        assert "policy PASSIVE" in beside.stdout, beside.stderr
        said = f"another mobilenets command computes on this machine (pid {first.pid})"
        assert said in beside.stderr
        # the gone process's file removed, the other name kept, the probe's own removed at exit
        assert {f.name for f in folder.iterdir()} == {str(first.pid), "notes.txt", "²"}
    finally:
        first.kill()
        first.wait()
    assert note_computing() == []  # the killed one is gone: its file removed
    assert {f.name for f in folder.iterdir()} == {str(os.getpid()), "notes.txt", "²"}


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


@pytest.mark.parametrize(
    ("value", "threads"),
    [("1", 1), ("4,2", 4), (" 3 ", 3), ("0", None), ("", None), ("many", None), ("²", None)],
)
def test_omp_num_threads_names_a_count_or_none(value: str, threads: int | None) -> None:
    """The first level of ``OMP_NUM_THREADS`` (libgomp's ``4,2`` nests); anything else
    leaves the runtimes at their default."""
    assert omp_threads({"OMP_NUM_THREADS": value}) == threads
    assert omp_threads({}) is None


def test_runtime_sessions_take_threads_then_omp_num_threads(tmp_path, monkeypatch) -> None:
    """ONNX Runtime's and OpenVINO's pools take ``--threads``, else ``OMP_NUM_THREADS`` as
    torch does, else every core: the suite's workers (a core each) no longer open a spinning
    thread per core on the cores the other worker computes on."""
    from mobilenets.export.edge import export_openvino
    from mobilenets.saved.edge import OpenVinoModel
    from mobilenets.saved.onnx import OnnxSession

    onnx_file = tmp_path / "m.onnx"
    assert main(["export", "mobilenet_v3_small", "--out", str(onnx_file)]) == 0
    export_openvino(onnx_file, tmp_path / "m.xml")

    def counts() -> tuple[int, int]:
        ort = OnnxSession(onnx_file).session.get_session_options().intra_op_num_threads
        ov = OpenVinoModel(tmp_path / "m.xml").compiled.get_property("INFERENCE_NUM_THREADS")
        return ort, int(ov)

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert counts() == (1, 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = os.cpu_count()
    assert counts() == (cores, cores)
    monkeypatch.setattr(cpu_module, "_threads", 3)  # what --threads 3 sets
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert counts() == (3, min(3, cores))  # OpenVINO opens no more threads than cores
