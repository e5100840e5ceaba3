"""BN folding, ONNX export and ONNX Runtime parity, int8 on real data, bench and latency."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from mobilenets import create_model, list_models, predict, profile
from mobilenets.cli.main import main
from mobilenets.complexity.latency import layer_latency
from mobilenets.export import export_onnx, fold_bn, quantize_onnx
from mobilenets.export.quantize import QuantReport, stratified_sample
from mobilenets.saved.onnx import OnnxSession, onnx_metadata

pytest.importorskip("onnxruntime")


@pytest.fixture
def randomized(randomize_bn):
    """``randomized(name, **kwargs)``: random BN statistics and classifier, outputs far from 0."""

    def build(name: str, **kwargs) -> nn.Module:
        torch.manual_seed(0)
        model = create_model(name, **kwargs)
        nn.init.normal_(model.classifier.weight, 0, 0.1)
        return randomize_bn(model)

    return build


@pytest.mark.parametrize("name", list_models(task="classification"))
def test_folded_equals_unfolded_and_keeps_the_mult_adds(name: str, randomized) -> None:
    model = randomized(name)
    folded = fold_bn(model)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)
    before, after = profile(model, 96), profile(folded, 96)
    assert after.macs == before.macs
    assert "bn" in before.by_kind() and "bn" not in after.by_kind()
    assert model.training is False and isinstance(model.stem.bn, nn.BatchNorm2d)  # untouched


@pytest.mark.parametrize("name", list_models(task="classification"))
@pytest.mark.parametrize("resolution", [224, 97])
def test_onnx_runtime_equals_pytorch(tmp_path, name: str, resolution: int, randomized) -> None:
    model = randomized(name)
    path = export_onnx(fold_bn(model), tmp_path / f"{name}.onnx", resolution)
    session = OnnxSession(path)
    for batch in (1, 3):
        x = torch.randn(batch, 3, resolution, resolution)
        with torch.no_grad():
            expected = model(x).numpy()
        assert np.abs(session(x) - expected).max() < 1e-4
    meta = onnx_metadata(path)
    assert meta["model"] == name and meta["input_size"] == resolution


def test_metadata_and_predict_from_image_files(tmp_path, randomized) -> None:
    from PIL import Image

    model = randomized("mobilenet_v3_small", num_classes=3)
    path = export_onnx(
        model, tmp_path / "m.onnx", 64, metadata={"classes": ["cat", "dog", "fox"], "resize": 80}
    )
    image = tmp_path / "photo.png"
    Image.new("RGB", (120, 90), (10, 200, 30)).save(image)
    [result] = predict(path, [image], topk=2)
    top = result.top
    assert top[0][0] in {"cat", "dog", "fox"} and len(top) == 2
    assert top[0][1] >= top[1][1]
    assert onnx_metadata(path)["kwargs"] == {"num_classes": 3}


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_int8_on_digits_within_two_points_of_fp32(int8_onnx, name: str) -> None:
    """int8 with this CPU's scheme (``mobilenets.cpu``) agrees with fp32 on ≥ 97% of digits'
    360 held-out images. Measured in the suite (a thread per worker) with the default quantizer
    (NNCF made for ONNX Runtime), V1 / V2: VNNI Xeon, 8-bit weights 98.06% / 99.17% (top-1
    96.11% / 97.50%, fp32 97.78% / 97.50%); with torch and oneDNN held to AVX2 (docs/cpu.md;
    the AVX2 scheme, 7-bit weights where a kernel sums pairs of products) 98.33% / 99.17%
    (95.56% / 96.94%, fp32 96.94% / 96.94%). V1's 7-bit file predicts the same to the image
    under QEMU as an AVX2-only Zen 3, where its 8-bit file falls to 93.89%
    (test_int8_emulated.py). With 8-bit weights on the AVX2 Zen 3, before the scheme was chosen
    per CPU, 96.94% for V1 (issue 30)."""
    _, int8, report = int8_onnx[name]
    assert report.images == 360 and report.fp32_top1 >= 95
    assert report.int8_top1 >= report.fp32_top1 - 2.0 and report.ok
    assert report.agreement >= 97
    assert report.int8_bytes < report.fp32_bytes / 2.5 and report.fp32_size == "file"
    meta = onnx_metadata(int8)
    assert meta["classes"] == [str(d) for d in range(10)] and "QDQ" in meta["quantization"]


def test_int8_below_the_margin_warns_and_the_command_fails(trained, tmp_path, capsys) -> None:
    assert (
        main(
            [
                "export",
                str(trained["mobilenet_v1"] / "checkpoint.pt"),
                "--out",
                str(tmp_path / "m.onnx"),
            ]
        )
        == 0
    )
    (tmp_path / "q.onnx").write_bytes(b"a good int8 model from an earlier run")
    with pytest.warns(UserWarning, match=r"failed the accuracy guard: kept at .*q\.rejected\.onnx"):
        report = quantize_onnx(
            tmp_path / "m.onnx", tmp_path / "q.onnx", "digits", calib_images=32, margin=-5.0
        )
    assert not report.ok and report.guard == "accuracy" and "do not ship" in report.format()
    # a failed guard never replaces what is at --out; the failed file is kept beside it
    assert (tmp_path / "q.onnx").read_bytes() == b"a good int8 model from an earlier run"
    assert report.path == str(tmp_path / "q.rejected.onnx")
    assert onnx_metadata(tmp_path / "q.rejected.onnx")["model"] == "mobilenet_v1"
    capsys.readouterr()  # what the Python call above printed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(
            [
                "quantize",
                str(tmp_path / "m.onnx"),
                "--out",
                str(tmp_path / "q.onnx"),
                "--margin",
                "-5",
                "--keep-fp32",
                "/stem/*",
                "--calib-images",
                "32",
                "--quantizer",
                "onnxruntime",
                "--json",
            ]
        )
    assert code == 1
    out, err = capsys.readouterr()
    # stdout is the JSON report and nothing else (issue 30, item 4): ONNX Runtime's calibrator
    # prints "Collecting tensor data and making histogram ..." on stdout; it goes to stderr
    # (NNCF, the default, runs in a child process whose stdout is discarded)
    report = json.loads(out)
    assert not report["ok"] and any(n.startswith("/stem/conv") for n in report["kept_fp32"])
    assert "Collecting tensor data" in err


def test_quant_report_logic() -> None:
    def report(guard="accuracy", fp32=97.0, int8=95.5, agree=96.0, confident=99.0, n=40, seen=10):
        top = (fp32, int8) if guard == "accuracy" else (None, None)
        return QuantReport(
            guard, *top, agree, confident, n, 360, 3_000_000, 1_000_000, fp32_classes=seen
        )

    assert report().ok and not report(int8=94.5).ok and report(int8=94.5).to_dict()["ok"] is False
    assert report("agreement").ok
    assert not report("agreement", agree=84.9).ok  # overall agreement below 85%
    assert not report("agreement", confident=97.9).ok  # confident agreement below 98%
    assert report("agreement", confident=50.0, n=19).ok  # < 20 confident images: not guarded
    # fp32 predicts one class and is confident on too few images: agreeing proves nothing (a
    # 3-class model judged on digits "passed" at 100%)
    uninformative = report("agreement", agree=100.0, confident=None, n=0, seen=1)
    assert not uninformative.ok and "FAILED: uninformative" in uninformative.format()
    assert report("agreement", agree=100.0, confident=100.0, n=20, seen=1).ok


def test_bench_writes_table_csv_json_and_plot(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "bench",
                "--models",
                "mobilenet_v3_small",
                "--backends",
                "eager,ort",
                "--runs",
                "3",
                "--warmup",
                "1",
                "--resolution",
                "64",
                "--threads",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["isolated"] is False  # 1 thread: interleaved in this process
    rows = {(r["source"], r["backend"]): r for r in data["rows"]}
    assert set(rows) == {
        ("mobilenets", "eager"),
        ("mobilenets", "ort"),
        ("torchvision", "eager"),
        ("torchvision", "ort"),
    }
    assert rows[("torchvision", "eager")]["speedup_vs_reference_eager"] == pytest.approx(1.0)
    peaks = data["peaks"]
    assert {"torch.mm", "onnxruntime"} <= set(peaks["fp32"]) and peaks["int8"] > 1
    best = max(peaks["fp32"].values())
    ort = rows[("mobilenets", "ort")]
    assert ort["roofline_ms"] == pytest.approx(2 * ort["macs"] / (best * 1e9) * 1000)
    assert data["other_cores"] is not None
    assert (tmp_path / "bench.png").stat().st_size > 20_000
    assert "| mobilenet_v3_small | mobilenets | ort |" in (tmp_path / "bench.md").read_text()
    assert main(["bench", "--backends", "tensorrt", "--out", str(tmp_path)]) == 2
    assert "unknown backends ['tensorrt']" in capsys.readouterr().err


def test_bench_above_one_thread_times_each_configuration_in_its_own_process() -> None:
    from mobilenets.export.bench import run_bench

    lines = []
    run = run_bench(
        ["mobilenet_v3_small"],
        ["ort"],
        resolution=64,
        threads=2,
        warmup=1,
        runs=10,
        references=False,
        log=lines.append,
    )
    assert run.isolated and run.threads == 2
    assert [line.split(":")[0] for line in lines if line.startswith("round")] == [
        "round 1/2, 1/1",
        "round 2/2, 1/1",
    ]
    (row,) = run.rows
    assert row.backend == "ort" and 0 < row.p10_ms <= row.median_ms <= row.p90_ms


def test_layer_latency_covers_every_layer() -> None:
    model = create_model("mobilenet_v1", width_mult=0.25)
    timing = layer_latency(model, 64, runs=3, warmup=1)
    kinds = timing.by_kind()
    assert {"conv1x1", "conv_dw", "conv3x3", "fc", "bn"} <= set(kinds)
    assert sum(share for _, share, _ in kinds.values()) == pytest.approx(100)
    assert kinds["conv1x1"][2] == pytest.approx(profile(model, 64).shares()["conv1x1"][0])
    assert len([t for t in timing.layers if t.kind == "conv_dw"]) == 13
    assert "slowest 10 layers" in timing.format()


def test_other_classes_use_the_agreement_guard(trained, tmp_path, tiny_image_folder) -> None:
    """ImageNet-style weights calibrated on someone's own photos: labels mean nothing to the
    model, so int8 is held to fp32's predictions, never scored against the folder's indices."""
    checkpoint = str(trained["mobilenet_v1"] / "checkpoint.pt")
    assert main(["export", checkpoint, "--out", str(tmp_path / "m.onnx")]) == 0
    report = quantize_onnx(tmp_path / "m.onnx", tmp_path / "q.onnx", str(tiny_image_folder))
    assert report.guard == "agreement" and report.fp32_top1 is None and report.images == 9
    assert "3 unexpected (circle, square, stripes)" in report.why
    assert "guard: agreement" in report.format()
    # measured here (both CPU kinds' fp32 is the same network): fp32 predicts 1 class on these
    # 9 images and is confident on 7 (< 20), so agreeing with it proves nothing and the guard
    # fails as uninformative (it "passed" at 100% before)
    assert report.informative == (report.fp32_classes >= 2 or report.confident_images >= 20)
    if not report.informative:
        assert not report.ok and "FAILED: uninformative" in report.format()
    else:
        assert report.ok == (report.agreement >= 85 and report.confident_agreement >= 98)
    with pytest.warns(UserWarning, match="failed the agreement guard"):
        failed = quantize_onnx(
            tmp_path / "m.onnx", tmp_path / "q2.onnx", str(tiny_image_folder), min_agreement=101
        )
    assert not failed.ok


def test_a_model_without_class_names_uses_the_agreement_guard(tmp_path) -> None:
    assert (
        main(["export", "mobilenet_v1", "--out", str(tmp_path / "r.onnx"), "--resolution", "32"])
        == 0
    )
    report = quantize_onnx(tmp_path / "r.onnx", tmp_path / "q.onnx", "digits", calib_images=32)
    assert report.guard == "agreement" and "stores no class names" in report.why
    assert report.images == 360 and report.calib_images == 32


def test_calibration_draws_every_class_at_random() -> None:
    class Labels:
        targets = [0] * 90 + [1] * 8 + [2] * 2

    picked = stratified_sample(Labels(), 12, seed=0)
    counts = [sum(Labels.targets[i] == c for i in picked) for c in range(3)]
    assert counts == [5, 5, 2] and len(set(picked)) == 12
    assert picked == stratified_sample(Labels(), 12, seed=0)
    assert picked != stratified_sample(Labels(), 12, seed=1)
    assert sorted(stratified_sample(Labels(), 500)) == list(range(100))


def test_the_dynamo_exporter_gives_the_same_network(tmp_path, randomize_bn) -> None:
    from mobilenets.errors import ConfigError

    model = randomize_bn(create_model("mobilenet_v3_small", width_mult=0.5, num_classes=7))
    path = export_onnx(model, tmp_path / "d.onnx", 64, exporter="dynamo")
    x = torch.randn(3, 3, 64, 64)  # the batch axis is dynamic
    with torch.inference_mode():
        expected = model(x)
    assert (torch.from_numpy(OnnxSession(path)(x.numpy())) - expected).abs().max() < 1e-4
    assert onnx_metadata(path)["model"] == "mobilenet_v3_small"
    with pytest.raises(ConfigError, match="exporter must be one of"):
        export_onnx(model, tmp_path / "x.onnx", 64, exporter="tflite")
