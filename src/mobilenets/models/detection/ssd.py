"""SSD and SSDLite on the MobileNets (V1 paper Table 13; V2 paper Section 6.2, Tables 5–6; V3
paper Section 6.3, Table 6), shaped as torchvision's detection models: a list of images in, per
image ``{"boxes", "labels", "scores"}`` out, a dict of losses in training.

The meta-architecture is torchvision's :class:`~torchvision.models.detection.SSD` (its resize
and normalisation, anchor matching, box coder, hard negative mining 3:1 and batched NMS): what
this module builds is the MobileNet part, the papers' own:

- the **feature extractor**: the first map is the paper's C4 tap (V2: "attached to the
  expansion of layer 15" at output stride 16; V3: "the expansion layer of the 13th bottleneck
  block" for Large, the 9th for Small; V1: ``Conv2d_11_pointwise``), the second the last layer
  (V2's 1×1 1280 conv, V3's 1×1 960/576 conv, V1's ``Conv2d_13_pointwise``), then four extra
  layers of 512, 256, 256, 128 channels at stride 2 (1×1 to half, 3×3 stride 2: depthwise
  separable in SSDLite, a full conv in SSD);
- the **prediction layers**: SSDLite replaces every 3×3 conv with a depthwise separable one
  (V2 paper Section 6.2): 3×3 depthwise, BN, ReLU6, then 1×1 conv; SSD (V1's Table 13, as the
  TF reference ``ssd_mobilenet_v1``) a plain 1×1 conv.

Anchors: :class:`~mobilenets.models.detection.anchors.SSDAnchors` (the TF reference's layout
by default, torchvision's as a keyword so its weights load).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.ssd import SSD, SSDScoringHead
from torchvision.ops import boxes as box_ops
from torchvision.ops import sigmoid_focal_loss

from mobilenets.errors import ConfigError
from mobilenets.layers import ConvNormAct, InvertedResidual, check_padding, make_divisible
from mobilenets.models.detection.anchors import SSDAnchors
from mobilenets.models.mobilenet_v2 import v2_table
from mobilenets.models.registry import create_model, register_model

#: The extra layers' depths after the last backbone layer (V2 paper Section 6.2; TF's
#: ``layer_depth: [-1, -1, 512, 256, 256, 128]``).
EXTRA_DEPTHS = (512, 256, 256, 128)
#: TF's ``min_depth`` for the extra layers and torchvision's ``SSDLiteFeatureExtractorMobileNet``.
MIN_DEPTH = 16
#: BatchNorm of the extra and prediction layers (TF's 1e-3, and torchvision's momentum 0.03).
DETECTION_BN = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
LOSSES = ("hard_negative", "focal")
SCORES = ("softmax", "sigmoid")
#: The TF reference's preprocessing: (2 / 255) · x − 1, i.e. mean 0.5 and std 0.5 on [0, 1].
SSD_MEAN = SSD_STD = (0.5, 0.5, 0.5)


def _normal_init(module: nn.Module) -> None:
    """torchvision's SSDLite init: conv weights N(0, 0.03), biases 0."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def extra_layer(
    in_channels: int, out_channels: int, lite: bool, padding: str = "symmetric"
) -> nn.Sequential:
    """1×1 conv to half the depth, then a stride-2 3×3 to the depth: depthwise + pointwise in
    SSDLite, a full conv in SSD (BN and ReLU6 after each); ``padding`` of the stride-2 conv."""
    half = out_channels // 2
    norm = {"act": "relu6", "norm_layer": DETECTION_BN}
    layers = [ConvNormAct(in_channels, half, 1, **norm)]
    if lite:
        layers += [
            ConvNormAct(half, half, 3, 2, groups=half, padding=padding, **norm),
            ConvNormAct(half, out_channels, 1, **norm),
        ]
    else:
        layers.append(ConvNormAct(half, out_channels, 3, 2, padding=padding, **norm))
    return nn.Sequential(*layers)


def prediction_layer(
    in_channels: int, out_channels: int, lite: bool, kernel_size: int = 3
) -> nn.Sequential:
    """SSDLite: k×k depthwise (BN, ReLU6) then 1×1 conv with bias; SSD: one k×k conv."""
    if not lite:
        padding = (kernel_size - 1) // 2
        return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding))
    return nn.Sequential(
        ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            groups=in_channels,
            act="relu6",
            norm_layer=DETECTION_BN,
        ),
        nn.Conv2d(in_channels, out_channels, 1),
    )


class SSDHead(nn.Module):
    """Box regression and class logits per anchor, from every map (torchvision's
    ``SSDLiteHead`` layout: ``regression_head`` and ``classification_head``, each a
    ``module_list`` with one prediction layer per map)."""

    def __init__(
        self,
        in_channels: list[int],
        num_anchors: list[int],
        num_classes: int,
        lite: bool = True,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        maps = list(zip(in_channels, num_anchors, strict=True))
        regression = nn.ModuleList(prediction_layer(c, 4 * a, lite, kernel_size) for c, a in maps)
        classification = nn.ModuleList(
            prediction_layer(c, num_classes * a, lite, kernel_size) for c, a in maps
        )
        _normal_init(regression)
        _normal_init(classification)
        self.regression_head = SSDScoringHead(regression, 4)
        self.classification_head = SSDScoringHead(classification, num_classes)

    def forward(self, maps: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "bbox_regression": self.regression_head(maps),
            "cls_logits": self.classification_head(maps),
        }


class SSDFeatures(nn.Module):
    """A MobileNet's stem and blocks (its own names, so a classifier's weights load), the last
    layer, and the extra layers: the maps SSD predicts from, as ``{"0": C4, "1": last, ...}``.

    Args:
        net: the classification network (its ``stem``, ``blocks`` and ``head`` are kept).
        tap: the block whose expansion (an inverted residual) or output (V1) is C4.
        lite: depthwise separable extra layers (SSDLite) or full convs (SSD).
        width_mult: scales the extra layers' depths (at least :data:`MIN_DEPTH`).
        padding: of the extra layers' stride-2 convs (``"symmetric"`` or ``"tf_same"``).
    """

    __constants__ = ("tap", "tap_expansion")

    def __init__(
        self,
        net: nn.Module,
        tap: int,
        lite: bool,
        width_mult: float = 1.0,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        self.stem, self.blocks, self.head = net.stem, net.blocks, net.head
        self.tap = tap
        self.tap_expansion = isinstance(net.blocks[tap], InvertedResidual)
        if self.tap_expansion and net.blocks[tap].use_residual:
            raise ConfigError(f"blocks.{tap} has a residual connection: C4 cannot be tapped there")
        depths = [max(MIN_DEPTH, int(d * width_mult)) for d in EXTRA_DEPTHS]
        last = net.num_features
        self.extra = nn.ModuleList()
        for depth in depths:
            self.extra.append(extra_layer(last, depth, lite, padding))
            last = depth
        _normal_init(self.extra)
        first = net.blocks[tap]
        c4 = first.expand.conv.out_channels if self.tap_expansion else net.stage_channels[tap + 1]
        self.out_channels = [c4, net.num_features, *depths]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps: list[torch.Tensor] = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i == self.tap and self.tap_expansion:
                x = block.expand(x)  # the expansion (stride 16) is C4
                maps.append(x)
                x = block.project(block.se(block.depthwise(x)))  # stride 2: no residual
            else:
                x = block(x)
                if i == self.tap:
                    maps.append(x)
        x = self.head(x)
        maps.append(x)
        for layer in self.extra:
            x = layer(x)
            maps.append(x)
        return OrderedDict((str(i), m) for i, m in enumerate(maps))


def c4_block(net: nn.Module) -> int:
    """The C4 tap: the first block that reaches output stride 32 when it has an expansion
    (V2's layer 15, V3-Large's 13th and V3-Small's 9th bottleneck), else the last block at
    stride 16 (V1's ``Conv2d_11_pointwise``)."""
    reductions = net.stage_reductions[1:]  # after each block
    first_32 = reductions.index(32)
    if isinstance(net.blocks[first_32], InvertedResidual):
        return first_32
    return first_32 - 1


def _backbone(
    name: str,
    width_mult: float,
    reduced_tail: bool,
    in_chans: int,
    kwargs: dict | None,
    padding: str = "symmetric",
) -> nn.Module:
    """The classification network the features come from (BN ε 1e-3, as TF). V2's last 1×1
    conv is 1280·α for α < 1, as the TF reference's SSD feature extractor builds it (no
    ``finegrain_classification_mode``; the classifier keeps 1280)."""
    extra = {"bn_eps": 0.001, **(kwargs or {})}
    if padding != "symmetric":
        extra["padding"] = padding
    if name.startswith("mobilenet_v3"):
        extra["reduced_tail"] = reduced_tail
    elif reduced_tail:
        raise ConfigError("reduced_tail is a MobileNetV3 setting (Table 6's †)")
    if name == "mobilenet_v2" and width_mult < 1.0 and "table" not in extra:
        table = v2_table(width_mult)
        table["last"] = make_divisible(1280 * width_mult)
        return create_model(name, table=table, num_classes=0, in_chans=in_chans, **extra)
    return create_model(name, width_mult=width_mult, num_classes=0, in_chans=in_chans, **extra)


class MobileNetSSD(SSD):
    """SSD or SSDLite on a MobileNet (torchvision's :class:`SSD`, the MobileNet parts ours).

    Args:
        backbone_name: ``mobilenet_v1``, ``mobilenet_v2``, ``mobilenet_v3_large`` or
            ``mobilenet_v3_small``.
        num_classes: classes including the background (91 for COCO, as torchvision and TF).
        width_mult: α of the backbone and of the extra layers.
        reduced_tail: V3 only: channels between C4 and C5 halved (Table 6's †).
        image_size: the square size images are resized to (default 320 for SSDLite, as the
            V2/V3 papers; 300 for SSD, V1's SSD300); 64–4096 px.
        lite: depthwise separable extra and prediction layers (SSDLite) or SSD's.
        prediction_kernel: the prediction layers' kernel (default 3 for SSDLite; 1 for SSD, as
            the TF reference's ``ssd_mobilenet_v1``; 3 is the original SSD's).
        anchors: ``"tf"`` (the papers' TF reference) or ``"torchvision"`` (its SSDLite).
        loss: ``"hard_negative"`` (SSD: 3 negatives per positive) or ``"focal"`` (sigmoid
            focal loss over every anchor, torchvision.ops).
        scores: ``"softmax"`` (torchvision) or ``"sigmoid"`` (the TF configs' score converter).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: post-processing
            (torchvision's SSDLite defaults).
        in_chans: image channels.
        padding: ``"symmetric"`` (torchvision) or ``"tf_same"`` (TensorFlow's "same" on every
            stride-2 conv, backbone and extra layers: the TF reference's graphs).
        backbone_kwargs: any other keyword of the backbone's family (``bn_eps``, ...).
    """

    def __init__(
        self,
        *,
        backbone_name: str,
        num_classes: int = 91,
        width_mult: float = 1.0,
        reduced_tail: bool = False,
        image_size: int | None = None,
        lite: bool = True,
        prediction_kernel: int | None = None,
        anchors: str = "tf",
        loss: str = "hard_negative",
        scores: str = "softmax",
        score_thresh: float = 0.001,
        nms_thresh: float = 0.55,
        detections_per_img: int = 300,
        topk_candidates: int = 300,
        in_chans: int = 3,
        padding: str = "symmetric",
        backbone_kwargs: dict | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(
                "num_classes must be an integer ≥ 2 (the background is class 0), "
                f"got {num_classes!r}"
            )
        if loss not in LOSSES or scores not in SCORES:
            raise ConfigError(
                f"loss must be one of {LOSSES} and scores one of {SCORES}, got {loss!r}, {scores!r}"
            )
        if loss == "focal" and scores != "sigmoid":
            raise ConfigError("loss='focal' trains sigmoid scores: use scores='sigmoid'")
        image_size = self._check_size((320 if lite else 300) if image_size is None else image_size)
        kernel = (3 if lite else 1) if prediction_kernel is None else prediction_kernel
        if kernel not in (1, 3, 5):
            raise ConfigError(f"prediction_kernel must be 1, 3 or 5, got {kernel!r}")
        check_padding(padding)
        net = _backbone(backbone_name, width_mult, reduced_tail, in_chans, backbone_kwargs, padding)
        features = SSDFeatures(net, c4_block(net), lite, width_mult, padding)
        anchor_generator = SSDAnchors(len(features.out_channels), anchors)
        anchors_per_cell = anchor_generator.num_anchors_per_location()
        head = SSDHead(features.out_channels, anchors_per_cell, num_classes, lite, kernel)
        super().__init__(
            features,
            anchor_generator,
            (image_size, image_size),
            num_classes,
            image_mean=list(SSD_MEAN[:1] * in_chans),
            image_std=list(SSD_STD[:1] * in_chans),
            head=head,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
        )
        self.backbone_name, self.loss, self.scores = backbone_name, loss, scores
        self.in_chans, self.num_classes, self.image_size = in_chans, num_classes, image_size
        self.task = "detection"
        self.pretrained_cfg = {
            **net.pretrained_cfg,
            "input_size": (in_chans, image_size, image_size),
            "crop_pct": 1.0,
            "mean": SSD_MEAN[:1] * in_chans,
            "std": SSD_STD[:1] * in_chans,
            "num_classes": num_classes,
            "classifier": "head.classification_head",
        }

    @staticmethod
    def _check_size(image_size: int) -> int:
        """Any size from 64 px (stride-2 convs round up: the last maps stay ≥ 1×1) to 4096."""
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, int)
            or not 64 <= image_size <= 4096
        ):
            raise ConfigError(f"image_size must be an integer in [64, 4096], got {image_size!r}")
        return image_size

    def losses_and_detections(
        self,
        images: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        dense: Callable[[torch.Tensor], tuple[dict, list[torch.Tensor]]] | None = None,
        detect: bool = True,
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """The losses and the detections of one pass, in whatever mode the model is (eval: BN
        statistics frozen): the validation loss and the boxes without a second forward.
        ``dense`` computes the head outputs and the feature maps (default :meth:`dense`; a
        captured graph's, :class:`ExportedDetector`); ``detect=False`` skips the decoding."""
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, targets = self.transform(images, targets)
        outputs, features = (dense or self.dense)(batch.tensors)
        anchors = self.anchor_generator(batch, features)
        matched = []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            if target["boxes"].numel() == 0:
                matched.append(torch.full((anchors_per_image.size(0),), -1, dtype=torch.int64))
                continue
            quality = box_ops.box_iou(target["boxes"], anchors_per_image)
            matched.append(self.proposal_matcher(quality))
        losses = self.compute_loss(targets, outputs, anchors, matched)
        if not detect:
            return losses, []
        detections = self.postprocess_detections(outputs, anchors, batch.image_sizes)
        return losses, self.transform.postprocess(detections, batch.image_sizes, sizes)

    def dense(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """The head outputs of a normalised, resized batch, and the feature maps they came
        from (the anchors are laid on their grids)."""
        features = list(self.backbone(x).values())
        return self.head(features), features

    def head_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network without its pre- and post-processing: a normalised, resized batch →
        ``bbox_regression`` (N, anchors, 4) and ``cls_logits`` (N, anchors, classes). This is
        what the exported files compute (:class:`DetectorGraph`)."""
        return self.dense(x)[0]

    def class_scores(self, cls_logits: torch.Tensor) -> torch.Tensor:
        """Per-anchor class probabilities (softmax, or the TF configs' sigmoid)."""
        return cls_logits.softmax(-1) if self.scores == "softmax" else cls_logits.sigmoid()

    def compute_loss(
        self,
        targets: list[dict[str, torch.Tensor]],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """torchvision's SSD loss (smooth L1 on matched anchors, cross-entropy with 3:1 hard
        negatives) for softmax scores; with sigmoid scores the per-anchor loss is the sum of
        the classes' binary cross-entropies (TF's ``weighted_sigmoid``), mined the same way,
        or the focal loss over every anchor."""
        if self.scores == "softmax":
            return super().compute_loss(targets, head_outputs, anchors, matched_idxs)
        regression, classes = [], []
        for target, matched, box, anchor in zip(
            targets, matched_idxs, head_outputs["bbox_regression"], anchors, strict=True
        ):
            foreground = torch.where(matched >= 0)[0]
            gt = matched[foreground]
            encoded = self.box_coder.encode_single(target["boxes"][gt], anchor[foreground])
            regression.append(F.smooth_l1_loss(box[foreground], encoded, reduction="sum"))
            labels = torch.zeros_like(matched)
            labels[foreground] = target["labels"][gt]
            classes.append(labels)
        labels = torch.stack(classes)
        logits = head_outputs["cls_logits"]
        one_hot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
        positives = max(1, int((labels > 0).sum()))
        if self.loss == "focal":  # the background column is not a class of its own
            cls = sigmoid_focal_loss(logits[..., 1:], one_hot[..., 1:], reduction="sum")
        else:
            per_anchor = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").sum(
                -1
            )
            foreground = labels > 0
            negatives = per_anchor.detach().masked_fill(foreground, -float("inf"))
            quota = self.neg_to_pos_ratio * foreground.sum(1, keepdim=True)
            rank = negatives.sort(1, descending=True)[1].sort(1)[1]
            cls = per_anchor[foreground].sum() + per_anchor[rank < quota].sum()
        return {
            "bbox_regression": torch.stack(regression).sum() / positives,
            "classification": cls / positives,
        }

    def postprocess_detections(
        self,
        head_outputs: dict[str, torch.Tensor],
        image_anchors: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> list[dict[str, torch.Tensor]]:
        """Decode, clip, keep each class's top candidates above ``score_thresh``, batched NMS
        (torchvision's steps, with this model's score function)."""
        scores_all = self.class_scores(head_outputs["cls_logits"])
        detections: list[dict[str, torch.Tensor]] = []
        for deltas, scores, anchors, shape in zip(
            head_outputs["bbox_regression"], scores_all, image_anchors, image_shapes, strict=True
        ):
            boxes = box_ops.clip_boxes_to_image(
                self.box_coder.decode_single(deltas, anchors), shape
            )
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in range(1, scores.shape[-1]):
                score = scores[:, label]
                keep = score > self.score_thresh
                score, box = score[keep], boxes[keep]
                score, order = score.topk(min(self.topk_candidates, score.numel()))
                kept_boxes.append(box[order])
                kept_scores.append(score)
                kept_labels.append(torch.full_like(order, label))
            box, score, label = map(torch.cat, (kept_boxes, kept_scores, kept_labels))
            keep = box_ops.batched_nms(box, score, label, self.nms_thresh)[
                : self.detections_per_img
            ]
            detections.append({"boxes": box[keep], "scores": score[keep], "labels": label[keep]})
        return detections


_VARIANTS = (
    ("ssdlite_mobilenet_v1", "mobilenet_v1", True, 320, "MobileNetV2, Table 6 (V1 + SSDLite)"),
    ("ssdlite_mobilenet_v2", "mobilenet_v2", True, 320, "MobileNetV2, Section 6.2, Tables 5–6"),
    ("ssdlite_mobilenet_v3_large", "mobilenet_v3_large", True, 320, "MobileNetV3, Table 6"),
    ("ssdlite_mobilenet_v3_small", "mobilenet_v3_small", True, 320, "MobileNetV3, Table 6"),
    ("ssd300_mobilenet_v1", "mobilenet_v1", False, 300, "MobileNetV1, Table 13 (SSD 300)"),
)
for _name, _family, _lite, _size, _paper in _VARIANTS:
    register_model(
        _name,
        MobileNetSSD,
        paper=_paper,
        preset={"backbone_name": _family, "lite": _lite},
        input_size=_size,
        task="detection",
    )

__all__ = ["MobileNetSSD", "SSDFeatures", "SSDHead", "c4_block"]


class DetectorGraph(nn.Module):
    """What an exported detector computes: :meth:`MobileNetSSD.head_outputs`, from the
    normalised, resized batch to ``bbox_regression`` and ``cls_logits`` (decoding and NMS run
    after the graph, by the same code as in PyTorch: :class:`ExportedDetector`). Its
    parameters keep the detector's names (``backbone.…``, ``head.…``)."""

    def __init__(self, detector: MobileNetSSD) -> None:
        super().__init__()
        self.backbone, self.head = detector.backbone, detector.head
        self.task, self.in_chans = "detection", detector.in_chans
        self.model_name = getattr(detector, "model_name", "")
        self.model_kwargs = getattr(detector, "model_kwargs", {})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(list(self.backbone(x).values()))


class ExportedDetector(nn.Module):
    """A detector whose network is one graph — an exported file's runtime (ONNX Runtime,
    ExecuTorch, OpenVINO) or a quantization-aware-training capture — inside the detector it came
    from: the same resize and normalisation before it, the same anchors, decoding and NMS after
    it, and in training the same losses (torchvision's API: a list of images in, a dict of boxes
    per image out; with targets in training, the losses).

    Args:
        graph: the network, a normalised, resized batch → ``bbox_regression`` and
            ``cls_logits`` (:class:`DetectorGraph`'s outputs).
        detector: the detector it came from; only its pre- and post-processing are kept (its
            backbone and head are dropped: the parameters are the graph's, ``graph.…``).
    """

    def __init__(self, graph: nn.Module, detector: MobileNetSSD) -> None:
        super().__init__()
        size, channels = detector.image_size, detector.in_chans
        with torch.no_grad():
            maps = detector.backbone.eval()(torch.zeros(1, channels, size, size)).values()
        self.grid = [tuple(m.shape[-2:]) for m in maps]
        detector.backbone = detector.head = None  # the graph is the network
        self.graph, self.detector = graph, detector.eval()
        self.task, self.in_chans, self.num_classes = "detection", channels, detector.num_classes
        for name in ("model_name", "model_kwargs"):
            if hasattr(detector, name):
                setattr(self, name, getattr(detector, name))

    def dense(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """The graph's head outputs, and stand-ins for the feature maps (the anchors need
        their grids only)."""
        return self.graph(x), [torch.empty(1, 1, h, w, device=x.device) for h, w in self.grid]

    def losses_and_detections(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], detect=True
    ) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
        """:meth:`MobileNetSSD.losses_and_detections` with this graph as the network."""
        return self.detector.losses_and_detections(images, targets, self.dense, detect)

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]:
        if self.training:
            if targets is None:
                raise ConfigError("a detector in training mode needs targets (boxes and labels)")
            return self.losses_and_detections(images, targets, detect=False)[0]
        detector = self.detector
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, _ = detector.transform(images, None)
        outputs, maps = self.dense(batch.tensors)
        anchors = detector.anchor_generator(batch, maps)
        found = detector.postprocess_detections(outputs, anchors, batch.image_sizes)
        return detector.transform.postprocess(found, batch.image_sizes, sizes)
