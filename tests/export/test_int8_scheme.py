"""int8 made for the CPU that runs it: the CPU's kind from its flags, the scheme per kind, the
types actually in the quantized graph, the record, and the warning on another kind of CPU."""

import platform
import warnings

import numpy as np
import pytest

from mobilenets import cpu
from mobilenets.cli.main import main
from mobilenets.cpu import (
    SCHEMES,
    cpu_flags,
    cpuid_flags,
    int8_cpu,
    int8_scheme,
    this_cpu,
    warn_if_other_cpu,
)
from mobilenets.errors import ConfigError
from mobilenets.saved.onnx import OnnxSession, load_onnx, onnx_metadata

pytest.importorskip("onnxruntime")

ZEN3 = "fpu vme de pse tsc msr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2 bmi2 sha_ni"
SAPPHIRE = ZEN3 + " avx512f avx512bw avx512_vnni avx_vnni amx_tile"


def test_the_kind_comes_from_the_flags_linux_lists(tmp_path) -> None:
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {ZEN3}\n")
    assert "avx2" in cpu_flags(tmp_path / "cpuinfo")
    assert this_cpu("x86_64", set(ZEN3.split())) == "avx2"
    assert this_cpu("x86_64", set(SAPPHIRE.split())) == "vnni"
    assert this_cpu("x86_64", {"avx2", "avx_vnni"}) == "vnni"  # AVX-VNNI without AVX-512
    assert this_cpu("aarch64", set()) == this_cpu("arm64", set()) == "arm"
    # flags that cannot be read: the scheme that is right on every x86
    assert cpu_flags(tmp_path / "missing") == set() and this_cpu("x86_64", set()) == "avx2"


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 flags")
def test_the_kind_comes_from_what_the_processor_reports() -> None:
    """``this_cpu`` reads CPUID (torch's cpuinfo), which ONNX Runtime's and XNNPACK's kernels
    dispatch on. Outside an emulator /proc/cpuinfo says the same (under ``qemu-x86_64 -cpu
    EPYC-Milan`` it describes the host: ``benchmarks/int8_emulated.py``)."""
    reported, listed = cpuid_flags(), cpu_flags()
    for flag in ("sse4_2", "avx2", "avx512_vnni", "avx_vnni"):
        assert (flag in reported) == (flag in listed), flag
    assert this_cpu() == this_cpu(flags=listed)


def test_onednn_held_below_vnni_takes_the_avx2_scheme(monkeypatch) -> None:
    """``ONEDNN_MAX_CPU_ISA`` below VNNI on a VNNI CPU: OpenVINO's oneDNN adds int8 products
    as an AVX2 CPU's kernels do, so quantize makes the AVX2 file and says why."""
    monkeypatch.setattr(cpu, "this_cpu", lambda: "vnni")
    for isa in ("AVX2", "avx2", "AVX512_CORE", "SSE41"):
        assert int8_cpu({"ONEDNN_MAX_CPU_ISA": isa}) == "avx2", isa
    for isa in ("AVX2_VNNI", "AVX512_CORE_VNNI", "AVX512_CORE_AMX", "ALL", ""):
        assert int8_cpu({"ONEDNN_MAX_CPU_ISA": isa}) == "vnni", isa
    assert int8_cpu({}) == "vnni"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    scheme = int8_scheme()
    assert scheme.target == "avx2" and scheme.reduce_range
    assert scheme.why.startswith("ONEDNN_MAX_CPU_ISA=AVX2 holds oneDNN (OpenVINO) below VNNI, and")
    assert int8_scheme("vnni") == SCHEMES["vnni"]  # a target named is kept
    monkeypatch.setattr(cpu, "this_cpu", lambda: "arm")
    assert int8_cpu() == "arm"


def test_each_kind_has_its_scheme() -> None:
    assert (SCHEMES["vnni"].weights, SCHEMES["vnni"].activations) == ("int8", "uint8")
    assert not SCHEMES["vnni"].reduce_range and SCHEMES["avx2"].reduce_range
    assert (SCHEMES["avx2"].weights, SCHEMES["avx2"].activations) == ("int8", "uint8")
    assert int8_scheme("auto") == int8_scheme(None) and int8_scheme().target == int8_cpu()
    with pytest.raises(ConfigError, match=r"^--target-cpu must be one of auto, vnni, avx2, arm"):
        int8_scheme("pentium")


def _weights(path) -> tuple[set[str], int, int]:
    """The element types of the quantized weights (the initializers DequantizeLinear reads,
    biases, which are int32, aside), their largest magnitude where a kernel sums over input
    channels (convolutions, the classifier), and in the depthwise convolutions."""
    from onnx.numpy_helper import to_array

    graph = load_onnx(path).graph
    initializers = {i.name: i for i in graph.initializer}
    weights = [
        to_array(initializers[n.input[0]])
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in initializers
    ]
    weights = [w for w in weights if w.dtype != np.int32]

    def largest(depthwise: bool) -> int:
        kind = [w for w in weights if (w.ndim == 4 and w.shape[1] == 1) == depthwise]
        return max(int(np.abs(w.astype(int)).max()) for w in kind)

    return {w.dtype.name for w in weights}, largest(False), largest(True)


@pytest.fixture(scope="module")
def avx2_int8(int8_onnx, tmp_path_factory):
    """The trained V1 quantized for an AVX2 CPU, whatever this CPU is."""
    from mobilenets.export.quantize import quantize_onnx

    fp32, _, _ = int8_onnx["mobilenet_v1"]
    out = tmp_path_factory.mktemp("avx2") / "m.avx2.onnx"
    report = quantize_onnx(fp32, out, "digits", calib_images=64, target_cpu="avx2")
    return out, report


def test_the_file_holds_the_scheme_it_was_made_with(int8_onnx, avx2_int8) -> None:
    """The default (this CPU's scheme) and --target-cpu avx2: the weights' type and range in the
    graph (8 bits: per-channel symmetric, so ±127 is reached; 7 bits: at most 64, where a
    kernel sums pairs of products: NNCF's overflow fix leaves depthwise convolutions at 8 bits,
    as ONNX Runtime's AVX2 depthwise kernel widens to 16 bits before it multiplies), the
    record and the report say the same."""
    _, here, report = int8_onnx["mobilenet_v1"]
    scheme = int8_scheme()
    assert _weights(here) == ({scheme.weights}, 64 if scheme.reduce_range else 127, 127)
    assert onnx_metadata(here)["int8_target_cpu"] == scheme.target
    assert f"per-channel {scheme.weights} weights" in onnx_metadata(here)["quantization"]
    assert f"int8: {scheme.describe()} CPUs, because" in report.format()

    path, avx2 = avx2_int8
    assert (
        _weights(path) == ({"int8"}, 64, 127) and onnx_metadata(path)["int8_target_cpu"] == "avx2"
    )
    assert avx2.ok and avx2.scheme.startswith("int8 (7 bits) weights, uint8 activations, for avx2")


def test_an_int8_file_on_another_kind_of_cpu_warns_once(avx2_int8, monkeypatch) -> None:
    path, _ = avx2_int8
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)  # the CPU's kind alone decides
    monkeypatch.setattr(cpu, "_warned", set())
    monkeypatch.setattr(cpu, "this_cpu", lambda: "vnni")
    with pytest.warns(
        UserWarning,
        match=r"made for a avx2 CPU and this one is vnni: it runs "
        r"correctly here, but 8-bit weights would agree with fp32 better",
    ):
        session = OnnxSession(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file
        OnnxSession(path)
    assert session(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)

    monkeypatch.setattr(cpu, "this_cpu", lambda: "avx2")
    with pytest.warns(
        UserWarning,
        match=r"vnni CPU and this one is avx2: its 8-bit weights can saturate this CPU's "
        r"16-bit sums.*--target-cpu avx2$",
    ):
        warn_if_other_cpu("made-elsewhere.onnx", "vnni")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # arm's scheme is vnni's: nothing to say
        monkeypatch.setattr(cpu, "this_cpu", lambda: "vnni")
        warn_if_other_cpu("made-on-arm.onnx", "arm")


def test_a_damaged_target_in_the_record_is_one_line(avx2_int8, tmp_path) -> None:
    import onnx

    from mobilenets.errors import WeightsError
    from mobilenets.saved.onnx import set_onnx_metadata

    path, _ = avx2_int8
    proto = load_onnx(path)
    set_onnx_metadata(proto, {**onnx_metadata(path), "int8_target_cpu": "pentium"})
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(WeightsError, match=r"int8_target_cpu \(one of vnni, avx2, arm\).*pentium"):
        OnnxSession(tmp_path / "bad.onnx")


def test_target_cpu_is_onnx_runtimes_only(trained, tmp_path, capsys) -> None:
    checkpoint = str(trained["mobilenet_v1"] / "checkpoint.pt")
    assert main(["quantize", "m.onnx", "--out", "q.onnx", "--target-cpu", "pentium"]) == 2
    assert "invalid choice: 'pentium'" in capsys.readouterr().err
    assert (
        main(["quantize", checkpoint, "--out", str(tmp_path / "q.pte"), "--target-cpu", "avx2"])
        == 2
    )
    assert "--target-cpu is not for pte (ExecuTorch's XNNPACK" in capsys.readouterr().err
    assert not (tmp_path / "q.pte").exists()
    assert main(["quantize", checkpoint, "--out", str(tmp_path / "q.xml"), "--keep-fp32", "x"]) == 2
    assert "--quantizer are for .onnx; not for xml (OpenVINO" in capsys.readouterr().err
