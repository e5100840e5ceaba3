"""The detectors: torchvision's API, the papers' C4 taps and anchors, torchvision's SSDLite
converted exactly, and their bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from mobilenets.errors import ConfigError, WeightsError
from mobilenets.models import create_model, list_models
from mobilenets.models.detection import MobileNetSSD, SSDAnchors
from mobilenets.weights.convert import convert_state_dict, torchvision_target

DETECTORS = list_models(task="detection")


def test_the_registry_lists_the_papers_detectors() -> None:
    assert DETECTORS == [
        "ssd300_mobilenet_v1",
        "ssdlite_mobilenet_v1",
        "ssdlite_mobilenet_v2",
        "ssdlite_mobilenet_v3_large",
        "ssdlite_mobilenet_v3_small",
    ]


@pytest.mark.parametrize(
    ("name", "kwargs", "channels"),
    [
        # V2: the expansion of layer 15 (576) and layer 19, the 1×1 1280 conv
        ("ssdlite_mobilenet_v2", {}, [576, 1280, 512, 256, 256, 128]),
        # V3: the expansion of the 13th (Large) / 9th (Small) bottleneck, then the last conv
        ("ssdlite_mobilenet_v3_large", {}, [672, 960, 512, 256, 256, 128]),
        ("ssdlite_mobilenet_v3_large", {"reduced_tail": True}, [672, 480, 512, 256, 256, 128]),
        ("ssdlite_mobilenet_v3_small", {}, [288, 576, 512, 256, 256, 128]),
        # V1: Conv2d_11_pointwise and Conv2d_13_pointwise
        ("ssd300_mobilenet_v1", {}, [512, 1024, 512, 256, 256, 128]),
        # TF's SSD feature extractor scales V2's last conv (1280·α) and the extra layers
        ("ssdlite_mobilenet_v2", {"width_mult": 0.35}, [192, 448, 179, 89, 89, 44]),
    ],
)
def test_the_maps_are_the_papers_taps(name, kwargs, channels) -> None:
    model = create_model(name, **kwargs).eval()
    size = model.image_size
    with torch.no_grad():
        maps = list(model.backbone(torch.zeros(1, 3, size, size)).values())
    assert [m.shape[1] for m in maps] == channels == model.backbone.out_channels
    expected = [19, 10, 5, 3, 2, 1] if size == 300 else [20, 10, 5, 3, 2, 1]
    assert [m.shape[-1] for m in maps] == expected


def test_tf_anchors_are_the_reference_layout() -> None:
    """3 boxes on the first map ((0.1, 1:1), (0.2, 2:1), (0.2, 1:2)), 6 on the others (the
    five ratios at s_k, then √(s_k·s_k+1) at 1:1); not clipped; centred on the cells."""
    anchors = SSDAnchors(6, "tf")
    assert anchors.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert anchors.scales == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0])
    maps = [torch.zeros(1, 1, n, n) for n in (20, 10, 5, 3, 2, 1)]
    boxes = anchors(ImageList(torch.zeros(1, 3, 320, 320), [(320, 320)]), maps)[0]
    assert boxes.shape == (3 * 400 + 6 * (100 + 25 + 9 + 4 + 1), 4)
    r2 = math.sqrt(2)
    first_cell = torch.tensor(
        [
            [8 - 16, 8 - 16, 8 + 16, 8 + 16],  # 0.1 · 320 = 32 px square on the cell (8, 8)
            [8 - 32 * r2, 8 - 32 / r2, 8 + 32 * r2, 8 + 32 / r2],  # 0.2, 2:1
            [8 - 32 / r2, 8 - 32 * r2, 8 + 32 / r2, 8 + 32 * r2],  # 0.2, 1:2
        ]
    )
    torch.testing.assert_close(boxes[:3], first_cell)
    last = boxes[-1]  # the 1×1 map's interpolated box: √(0.95 · 1.0) of the image, centred
    side = 320 * math.sqrt(0.95)
    torch.testing.assert_close(last, torch.tensor([160 - side / 2] * 2 + [160 + side / 2] * 2))


def test_torchvision_anchors_are_torchvisions() -> None:
    ours, theirs = SSDAnchors(6, "torchvision"), DefaultBoxGenerator([[2, 3]] * 6, 0.2, 0.95)
    maps = [torch.zeros(1, 1, n, n) for n in (20, 10, 5, 3, 2, 1)]
    images = ImageList(torch.zeros(2, 3, 320, 320), [(320, 320)] * 2)
    for a, b in zip(ours(images, maps), theirs(images, maps), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", DETECTORS)
def test_torchvision_detection_api(name) -> None:
    """A list of images of any size in; per image boxes (inside it), labels and scores out;
    in training a dict of finite losses, with gradients reaching the backbone."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, image_size=128)
    images = [torch.rand(3, 100, 140), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # negatives
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.backbone.stem.conv.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2
    for found, image in zip(detections, images, strict=True):
        assert set(found) == {"boxes", "labels", "scores"}
        assert found["boxes"].shape[1] == 4 and len(found["boxes"]) <= 300
        assert found["boxes"][:, 2].max() <= image.shape[2]
        assert found["boxes"][:, 3].max() <= image.shape[1]
        assert set(found["labels"].tolist()) <= {1, 2}


@pytest.mark.parametrize(("loss", "scores"), [("hard_negative", "sigmoid"), ("focal", "sigmoid")])
def test_sigmoid_losses_train(loss, scores) -> None:
    model = create_model(
        "ssdlite_mobilenet_v3_small", num_classes=2, image_size=128, loss=loss, scores=scores
    )
    target = {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])}
    losses = model.train()([torch.rand(3, 128, 128)] * 2, [target] * 2)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_torchvision_ssdlite_converts_exactly(randomize_bn) -> None:
    """torchvision's ssdlite320_mobilenet_v3_large (random init, BN statistics randomised) →
    ours by name: the same head outputs and the same detections, to the bit."""
    torch.manual_seed(0)
    theirs = randomize_bn(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))
    target = torchvision_target("ssdlite320_mobilenet_v3_large", num_classes=91, reduced_tail=True)
    ours = convert_state_dict(theirs.state_dict(), target)
    x = torch.rand(2, 3, 320, 320)
    images = [torch.rand(3, 300, 400), torch.rand(3, 320, 320)]
    with torch.no_grad():
        expected = theirs.head(list(theirs.backbone(x).values()))
        got = ours.head_outputs(x)
        for key in ("bbox_regression", "cls_logits"):
            assert torch.equal(got[key], expected[key])
        for a, b in zip(ours(images), theirs(images), strict=True):
            assert len(a["boxes"]) == len(b["boxes"]) > 0
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(a[key], b[key])


def test_a_classifier_state_dict_is_not_a_detector() -> None:
    classifier = create_model("mobilenet_v3_large").state_dict()
    target = torchvision_target("ssdlite320_mobilenet_v3_large", num_classes=91, reduced_tail=True)
    with pytest.raises(WeightsError, match=r"missing \d+ keys"):
        convert_state_dict(classifier, target)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "background is class 0"),
        ({"image_size": 32}, r"image_size must be an integer in \[64, 4096\]"),
        ({"loss": "focal"}, "use scores='sigmoid'"),
        ({"anchors": "caffe"}, "anchors must be one of"),
    ],
)
def test_bad_settings_are_one_line(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        create_model("ssdlite_mobilenet_v3_small", **kwargs)


def test_reduced_tail_is_v3_only() -> None:
    with pytest.raises(ConfigError, match="MobileNetV3 setting"):
        MobileNetSSD(backbone_name="mobilenet_v2", reduced_tail=True)


@pytest.mark.parametrize("backend", ["ort", "openvino"])
def test_a_detector_is_timed_end_to_end_on_exported_backends(backend, tmp_path) -> None:
    """bench's call for a detector: resize, the network in the runtime, decoding and NMS; the
    same boxes as eager PyTorch (the exported file holds the network only)."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    from mobilenets.export.runtimes import prepare

    torch.manual_seed(0)
    detector = create_model("ssdlite_mobilenet_v3_small", num_classes=3, image_size=96).eval()
    x = torch.randn(1, 3, 96, 96)
    eager = prepare(detector, "eager", x)()[0]
    exported = prepare(detector, backend, x, workdir=tmp_path, tag="d", threads=1)()[0]
    assert len(eager["boxes"]) == len(exported["boxes"]) > 0
    torch.testing.assert_close(exported["boxes"], eager["boxes"], atol=1e-3, rtol=0)
    torch.testing.assert_close(exported["scores"], eager["scores"], atol=1e-4, rtol=0)
    assert (tmp_path / "d.onnx").is_file()


def test_bench_times_a_detector_beside_torchvisions_ssdlite() -> None:
    from mobilenets.export.bench import run_bench

    lines: list[str] = []
    run = run_bench(
        ["ssdlite_mobilenet_v3_large"],
        ["eager", "ort", "ort_int8", "compile"],
        resolution=320,
        threads=1,
        warmup=1,
        runs=2,
        log=lines.append,
    )
    assert sorted((row.source, row.backend) for row in run.rows) == [
        ("mobilenets", "eager"),
        ("mobilenets", "ort"),
        ("torchvision", "eager"),  # theirs export no file: eager PyTorch only
    ]
    assert {line.split(":")[0] for line in lines if line.startswith("skipped")} == {
        "skipped ssdlite_mobilenet_v3_large on compile",
        "skipped ssdlite_mobilenet_v3_large on ort_int8",
    }
    ours = next(row for row in run.rows if row.source == "mobilenets")
    assert ours.macs == 613_143_104 and ours.speedup_vs_reference_eager > 0
