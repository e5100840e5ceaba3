"""int8: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on real images,
then fp32 and int8 compared side by side on held-out images.

A user never gets a silently broken int8 model, and the guard cannot pass vacuously:

* when the data's classes are the model's (by name), both top-1s are measured and int8 may fall
  at most ``margin`` points below fp32 (the **accuracy** guard);
* when they are not (ImageNet weights calibrated on the user's own photos, a model that stores no
  class names), labels mean nothing to the model, so int8 is held to fp32's own predictions
  instead (the **agreement** guard): top-1 agreement overall ≥ ``min_agreement`` and, where fp32
  is confident (softmax ≥ 0.5, on at least 20 images), ≥ ``min_confident_agreement``.

The report says which guard was used; a failed guard warns and the command exits non-zero.
Calibration images are a seeded, class-stratified random sample of the train split, preprocessed
with the network's own stored settings (``info.eval_transform()``).
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mobilenets.cpu import Int8Scheme, int8_scheme
from mobilenets.data import build_dataset, check_classes
from mobilenets.errors import ConfigError, DataError, ZeroWorkError, display, listed
from mobilenets.export.choices import (
    CALIBRATION_METHODS,
    CONFIDENT,
    DEFAULT_CALIBRATION,
    DEFAULT_MARGIN,
    DEFAULT_QUANTIZERS,
    MIN_AGREEMENT,
    MIN_CONFIDENT_AGREEMENT,
    MIN_CONFIDENT_IMAGES,
    NNCF_UNFUSED_OPS,
    ONNX_QUANTIZERS,
)
from mobilenets.export.nncf_onnx import NNCF_ONNX, nncf_onnx
from mobilenets.export.pt2e import QAT_SCHEME
from mobilenets.export.qat import is_qat_checkpoint, write_qat
from mobilenets.fileio import atomic_path, check_output_path
from mobilenets.saved.onnx import load_onnx, onnx_metadata, set_onnx_metadata
from mobilenets.weights import load

#: A detector's int8 defaults, measured on the trees SSDLite-V2 (AP50 fp32 22.61%): all int8
#: with percentile calibration 1.03%, minmax 1.43%; the prediction layers kept in fp32 with
#: percentile 18.18%, with minmax 21.66% (box agreement 100%). The prediction layers turn close
#: logits into scores and boxes; the backbone's tails matter to the small maps (README).
DETECTOR_DEFAULTS = {"calib_method": "minmax", "keep_fp32": ("/head/*",)}


@dataclass
class QuantReport:
    """int8 against fp32 on held-out images, and the guard that judged it."""

    guard: str  # "accuracy" (the data's classes are the model's) or "agreement"
    fp32_top1: float | None  # the task's metric (top-1; a segmenter's mIoU); None: agreement
    int8_top1: float | None
    agreement: float  # % of images (a segmenter: pixels) where int8's top-1 is fp32's
    confident_agreement: float | None  # the same where fp32 is confident (None: no such image)
    confident_images: int
    images: int
    fp32_bytes: int  # the fp32 file's size; a .pte's: its weights' (fp32_size "weights")
    int8_bytes: int
    calibration: str = DEFAULT_CALIBRATION
    calib_images: int = 0
    kept_fp32: list[str] = field(default_factory=list)  # node names left in fp32
    margin: float = DEFAULT_MARGIN
    min_agreement: float = MIN_AGREEMENT
    min_confident_agreement: float = MIN_CONFIDENT_AGREEMENT
    why: str = ""  # why the agreement guard was used
    fp32_classes: int = 0  # distinct top-1 classes fp32 predicts on the held-out images
    path: str = ""  # where the int8 file is: --out when it passed, its .rejected sibling if not
    unit: str = "images"  # what agreement counts: images, a segmenter's pixels, a detector's boxes
    metric: str = "top-1"  # what fp32_top1 and int8_top1 hold: top-1, mIoU or AP50
    scheme: str = ""  # the int8 types and the CPU they were chosen for, and why
    fp32_size: str = "file"  # what fp32_bytes weighs: the fp32 "file", or its "weights"

    @property
    def informative(self) -> bool:
        """Whether agreement can tell int8 from a constant: fp32 must predict at least two
        classes, or be confident on enough images for the confident floor to be judged."""
        return self.fp32_classes >= 2 or self.confident_images >= MIN_CONFIDENT_IMAGES

    @property
    def vacuous(self) -> bool:
        """An accuracy guard that any int8 file would pass: a detector whose fp32 AP50 is
        within the margin of zero (an empty int8 detector would be "within the margin")."""
        return self.guard == "accuracy" and self.unit == "boxes" and self.fp32_top1 <= self.margin

    @property
    def ok(self) -> bool:
        if self.guard == "accuracy":
            return not self.vacuous and self.int8_top1 >= self.fp32_top1 - self.margin
        if not self.informative:
            return False
        confident_ok = (
            self.confident_images < MIN_CONFIDENT_IMAGES
            or self.confident_agreement >= self.min_confident_agreement
        )
        return self.agreement >= self.min_agreement and confident_ok

    def kept_modules(self) -> str:
        """The fp32 nodes grouped by the module they belong to."""
        if not self.kept_fp32:
            return "nothing"
        modules = sorted({name.rsplit("/", 1)[0] or name for name in self.kept_fp32})
        return f"{len(self.kept_fp32)} nodes in " + ", ".join(modules)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        weights = " (fp32 weights)" if self.fp32_size == "weights" else ""
        size = f"{self.fp32_bytes / 1e6:.2f} MB{weights} → {self.int8_bytes / 1e6:.2f} MB"
        one = {"images": "image", "pixels": "pixel", "boxes": "box"}[self.unit]
        confident = (
            f"{self.confident_agreement:.2f}% where fp32 is ≥ {CONFIDENT:.0%} confident "
            f"({self.confident_images} {self.unit})"
            if self.confident_agreement is not None
            else f"no {one} where fp32 is confident"
        )
        kind = "box" if self.unit == "boxes" else "top-1"
        lines = [
            f"{kind} agreement int8 vs fp32: {self.agreement:.2f}% of {self.images} held-out "
            f"{self.unit}, {confident}",
            *([f"int8: {self.scheme}"] if self.scheme else []),
            f"size {size} ({self.fp32_bytes / self.int8_bytes:.1f}× smaller); "
            + (
                f"calibration {self.calibration} on {self.calib_images} images; "
                if self.calib_images
                else f"{self.calibration}; "
            )
            + "kept in fp32: "
            + self.kept_modules(),
        ]
        if self.guard == "accuracy":
            lines.insert(0, f"{self.metric} fp32 {self.fp32_top1:.2f}%  int8 {self.int8_top1:.2f}%")
            lines.append(
                f"guard: accuracy (int8 {self.metric} at most {self.margin:g} points below fp32)"
            )
        else:
            lines.append(
                f"guard: agreement (≥ {self.min_agreement:g}% overall, ≥ "
                f"{self.min_confident_agreement:g}% where fp32 is confident, when ≥ "
                f"{MIN_CONFIDENT_IMAGES} such images), because {self.why}"
            )
        if self.vacuous:
            lines.append(
                f"FAILED: uninformative: fp32's AP50 ({self.fp32_top1:.2f}%) is within the "
                f"{self.margin:g}-point margin of zero, so an int8 file that finds nothing would "
                "pass; judge a detector that has learned the data"
            )
        elif self.guard == "agreement" and not self.informative:
            lines.append(
                f"FAILED: uninformative: fp32 predicts {self.fp32_classes} class(es) on these "
                f"images and is confident on {self.confident_images} (< {MIN_CONFIDENT_IMAGES}),"
                " so agreeing with it proves nothing; calibrate and judge on data the model knows"
            )
        else:
            lines.append(
                "passed"
                if self.ok
                else "FAILED: do not ship this model; keep the layers that lose most in fp32 "
                "(--keep-fp32) or try another --calib-method"
            )
        if self.path:
            lines.append(f"int8 file: {display(self.path)}")
        return "\n".join(lines)


def stratified_sample(dataset: Dataset, count: int, seed: int = 0) -> list[int]:
    """``count`` indices drawn at random (seeded), the same number from every class (one class
    after another, round-robin), so calibration sees every class, not the first folders."""
    labels = getattr(dataset, "targets", None)
    if labels is None and getattr(dataset, "task", "") in ("segmentation", "detection"):
        labels = [0] * len(dataset)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < min(count, len(labels)):
        for pool in pools:
            if pool and len(picked) < count:
                picked.append(int(pool.pop()))
    return picked


#: Calibration batches ONNX Runtime holds the intermediate outputs of at once. Its histogram
#: calibrators (percentile, entropy) keep every output of every batch they are given until they
#: build the histograms: 256 images of the real V2 at 224 px peaked at 17 GB. Given a few
#: batches at a time (ORT's ``CalibStridedMinMax``, which calls the calibrator once per stride),
#: each call folds its outputs into the histograms and frees them.
CALIBRATION_STRIDE = 2


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over the images at ``indices`` of a dataset, in
    equal batches, with the ``len``/``set_range`` that strided calibration reads."""

    def __init__(
        self, dataset: Dataset, indices: list[int], input_name: str, batch: int = 16
    ) -> None:
        # equal batches: ORT's histogram calibrators (entropy, percentile) stack every batch's
        # outputs into one array and fail on a smaller last batch
        batch = max(d for d in range(1, batch + 1) if len(indices) % d == 0)
        self.dataset, self.name = dataset, input_name
        self.chunks = [indices[i : i + batch] for i in range(0, len(indices), batch)]
        self.set_range(0, len(self.chunks))

    def __len__(self) -> int:
        return len(self.chunks)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.batches = self._batches(self.chunks[start_index:end_index])

    def _batches(self, chunks: list[list[int]]) -> Iterator[dict]:
        for chunk in chunks:
            yield {self.name: torch.stack([self.dataset[i][0] for i in chunk]).numpy()}

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def calibration_batches(
    info: object,
    calib_data: str,
    calib_images: int = 256,
    data_root: str | None = None,
    seed: int = 0,
    batch: int = 16,
) -> list[torch.Tensor]:
    """The calibration images ``quantize`` uses (a seeded, class-stratified sample of
    ``calib_data``'s train split, preprocessed as ``info`` says), as batches."""
    calib, _, _ = _datasets("the network", info, calib_data, data_root)
    indices = stratified_sample(calib, calib_images, seed)
    return [
        torch.stack([calib[i][0] for i in indices[start : start + batch]])
        for start in range(0, len(indices), batch)
    ]


def _batches(dataset: Dataset, batch: int = 64) -> tuple[list[torch.Tensor], np.ndarray]:
    """The held-out images decoded once, in batches, and their labels (a segmenter's: every
    pixel's, flattened)."""
    images, labels = [], []
    for start in range(0, len(dataset), batch):
        samples = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        images.append(torch.stack([s[0] for s in samples]))
        labels += [np.asarray(s[1]).reshape(-1) for s in samples]
    return images, np.concatenate(labels)


@torch.inference_mode()
def _probabilities(network: torch.nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    """Class probabilities, one row per image (a segmenter's ``out``: one row per pixel)."""
    rows = []
    for x in batches:
        out = network(x)
        out = out["out"] if isinstance(out, dict) else out
        probs = out.float().softmax(1)
        if probs.dim() == 4:
            probs = probs.permute(0, 2, 3, 1).reshape(-1, probs.shape[1])
        rows.append(probs.numpy())
    return np.concatenate(rows)


def _score(predicted: np.ndarray, labels: np.ndarray, segmentation: bool) -> float:
    """top-1 (%), or a segmenter's mIoU (%) over the labelled pixels (255 = ignore)."""
    if not segmentation:
        return 100 * float((predicted == labels).mean())
    from mobilenets.data.segmentation import IGNORE_INDEX, confusion_counts, mean_iou

    classes = int(max(predicted.max(), labels[labels != IGNORE_INDEX].max(initial=0))) + 1
    counts = confusion_counts(torch.from_numpy(predicted), torch.from_numpy(labels), classes)
    return mean_iou(counts)


def quantize_qdq(
    model_path: str | Path,
    out_path: str | Path,
    reader: object,
    exclude: Sequence[str] = (),
    method: str = DEFAULT_CALIBRATION,
    scheme: Int8Scheme | None = None,
) -> None:
    """ONNX Runtime static int8 quantization: QDQ format, per-channel weights, activations
    calibrated with ``reader`` (a CalibrationDataReader) by ``method``, the types ``scheme``'s
    (default: this CPU's, :func:`int8_scheme`)."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"calibration method must be one of {CALIBRATION_METHODS}, got {method!r}"
        )
    calibrate = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    scheme = scheme or int8_scheme()
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=types[scheme.weights],
            activation_type=types[scheme.activations],
            nodes_to_exclude=list(exclude),
            calibrate_method=calibrate,
            reduce_range=scheme.reduce_range,
            extra_options=_stride(reader),
        )


def _stride(reader: object) -> dict:
    """ORT's strided calibration for a reader that can give a range of its batches: the most
    batches up to ``CALIBRATION_STRIDE`` that divide their count (ORT requires it)."""
    if not hasattr(reader, "set_range"):
        return {}
    stride = max(d for d in range(1, CALIBRATION_STRIDE + 1) if len(reader) % d == 0)
    return {"CalibStridedMinMax": stride}


def quantize_onnx(
    model_path: str | Path,
    out_path: str | Path,
    calib_data: str = "digits",
    *,
    calib_images: int = 256,
    calib_method: str | None = None,
    keep_fp32: Sequence[str] | None = None,
    margin: float = DEFAULT_MARGIN,
    min_agreement: float = MIN_AGREEMENT,
    min_confident_agreement: float = MIN_CONFIDENT_AGREEMENT,
    data_root: str | None = None,
    seed: int = 0,
    target_cpu: str | Int8Scheme | None = None,
    quantizer: str | None = None,
) -> QuantReport:
    """Quantize an exported model to int8 and compare it with fp32 on ``calib_data``'s val split.

    Args:
        model_path: an fp32 model written by :func:`export_onnx`.
        out_path: where the int8 (QDQ) model goes.
        calib_data: data spec: its train split calibrates (a seeded, stratified sample), its
            val split is held out.
        calib_images: how many calibration images.
        calib_method: ONNX Runtime's: minmax, entropy or percentile (default percentile;
            minmax for a detector, :data:`DETECTOR_DEFAULTS`); it implies that quantizer.
        keep_fp32: shell patterns of ONNX node names (our module names) to leave in fp32
            (``/stem/conv/*``, ``*/se/*``; default: none, a detector's prediction layers).
        margin: the largest acceptable top-1 drop, in points (accuracy guard).
        min_agreement: the agreement guard's floor overall, in percent.
        min_confident_agreement: its floor where fp32 is confident, in percent.
        target_cpu: the CPU kind that will run it (:mod:`mobilenets.cpu`; default: this one).
        quantizer: ``nncf`` (:mod:`~mobilenets.export.nncf_onnx`) or ``onnxruntime`` (its
            own); default: the one measured best for the task and graph (:func:`_quantizer`).
    """
    out_path, staged = _outputs(out_path, model_path, calib_data)
    if is_qat_checkpoint(model_path):
        settings = {"calib_method": calib_method, "keep_fp32": keep_fp32, "quantizer": quantizer}
        _post_training_only(target_cpu=target_cpu, **settings)
        guards = {"margin": margin, "min_agreement": min_agreement, "data_root": data_root}
        guards["min_confident_agreement"] = min_confident_agreement
        return quantize_qat(model_path, out_path, staged, calib_data, **guards)
    scheme = int8_scheme(target_cpu)
    if Path(model_path).suffix != ".onnx":
        raise ConfigError(f"{display(model_path)} is not an .onnx model; export it first")
    fp32_network, info = load(model_path)
    defaults = DETECTOR_DEFAULTS if info.task == "detection" else {}
    proto = load_onnx(model_path)  # parsed once: metadata, node names and ops
    ops = {n.op_type for n in proto.graph.node}
    quantizer = _quantizer(quantizer, info.task, calib_method, ops)
    calib_method = calib_method or defaults.get("calib_method", DEFAULT_CALIBRATION)
    keep_fp32 = defaults.get("keep_fp32", ()) if keep_fp32 is None else keep_fp32
    meta = onnx_metadata(model_path, proto)
    calib, val, why = _datasets(model_path, info, calib_data, data_root)
    indices = stratified_sample(calib, calib_images, seed)
    excluded = _kept_nodes([n.name for n in proto.graph.node], keep_fp32, model_path)
    with atomic_path(staged) as tmp:
        calibration = _int8_onnx(
            model_path, tmp, quantizer, (calib, indices), excluded, calib_method, scheme
        )
        said = calibration if quantizer == "nncf" else f"{calib_method} calibration"
        _record(tmp, meta, scheme, said, excluded)
    return _judge(
        fp32_network,
        _int8_network(staged),
        val,
        staged,
        out_path,
        fp32_bytes=Path(model_path).stat().st_size,
        calibration=calibration,
        calib_images=len(indices),
        kept_fp32=excluded,
        margin=margin,
        min_agreement=min_agreement,
        min_confident_agreement=min_confident_agreement,
        why=why,
        scheme=f"{scheme.describe()} CPUs, because {scheme.why}",
    )


def _int8_network(path: Path) -> torch.nn.Module:
    """The int8 file, loaded without the other-CPU warning: made for it on purpose, the report
    says so."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*int8 was made for")
        return load(path)[0]


def _int8_onnx(
    model_path: str | Path,
    out: Path,
    quantizer: str,
    calibration: tuple[Dataset, list[int]],
    excluded: list[str],
    calib_method: str,
    scheme: Int8Scheme,
) -> str:
    """The int8 QDQ model of ``model_path`` at ``out``, by ``quantizer`` on the calibration
    images (a dataset and the indices drawn from it); what the report calls its calibration."""
    calib, indices = calibration
    if quantizer == "nncf":
        samples = np.concatenate([calib[i][0][None].numpy() for i in indices])
        nncf_onnx(model_path, out, samples, excluded, scheme)
        return NNCF_ONNX
    reader = _Calibration(calib, indices, "input")
    quantize_qdq(model_path, out, reader, excluded, calib_method, scheme)
    return calib_method  # the report's field, as before NNCF


def _quantizer(quantizer: str | None, task: str, calib_method: str | None, ops: set[str]) -> str:
    """The ONNX quantizer asked for, or the measured default for the task and the graph's
    ``ops`` (:data:`~mobilenets.export.choices.DEFAULT_QUANTIZERS`); ``calib_method`` is ONNX
    Runtime's and refused beside NNCF."""
    if quantizer is None and calib_method is None:
        quantizer = DEFAULT_QUANTIZERS[task]
        quantizer = "onnxruntime" if ops & NNCF_UNFUSED_OPS else quantizer
    quantizer = quantizer or "onnxruntime"
    if quantizer not in ONNX_QUANTIZERS:
        raise ConfigError(
            f"--quantizer must be one of {listed(ONNX_QUANTIZERS)}, got {quantizer!r}"
        )
    if quantizer == "nncf" and calib_method is not None:
        raise ConfigError(
            "--calib-method chooses ONNX Runtime's calibration; NNCF calibrates its own way "
            "(use --quantizer onnxruntime with it)"
        )
    if quantizer == "nncf":
        from mobilenets.saved.edge import require_package

        require_package("nncf", "deploy")
    return quantizer


def _record(
    path: Path, meta: dict, scheme: Int8Scheme, calibration: str, excluded: list[str]
) -> None:
    """The fp32 model's record in the int8 file, with how it was quantized and for which CPU."""
    import onnx

    quantized = onnx.load(str(path))
    set_onnx_metadata(
        quantized,
        {
            **meta,
            "quantization": f"int8 static QDQ, per-channel {scheme.weights} weights, "
            f"{scheme.activations} activations, {calibration}",
            "int8_target_cpu": scheme.target,
            "kept_fp32": excluded,
        },
    )
    onnx.save(quantized, str(path))


def quantize_pte(
    source: str,
    out_path: str | Path,
    calib_data: str = "digits",
    *,
    calib_images: int = 256,
    margin: float = DEFAULT_MARGIN,
    min_agreement: float = MIN_AGREEMENT,
    min_confident_agreement: float = MIN_CONFIDENT_AGREEMENT,
    data_root: str | None = None,
    seed: int = 0,
) -> QuantReport:
    """An int8 ExecuTorch program (PT2E, XNNPACK quantizer) of a checkpoint, weights file or
    weights name, calibrated and judged exactly as :func:`quantize_onnx` does (the same seeded,
    class-stratified calibration sample, the same guards and report)."""
    from mobilenets.export.edge import export_pte, fp32_program_bytes, network_record
    from mobilenets.export.folding import fold_bn
    from mobilenets.saved.edge import PteProgram

    if Path(out_path).suffix != ".pte":
        raise ConfigError(f"an ExecuTorch program is written as FILE.pte, not {display(out_path)}")
    out_path, staged = _outputs(out_path, source, calib_data)
    if is_qat_checkpoint(source):
        guards = {"margin": margin, "min_agreement": min_agreement, "data_root": data_root}
        guards["min_confident_agreement"] = min_confident_agreement
        return quantize_qat(source, out_path, staged, calib_data, **guards)
    model, info = _trained(source, out_path)
    model = fold_bn(model)
    detector = getattr(model, "task", "") == "detection"
    graph = model
    if detector:  # the file holds the network; decoding and NMS run after it
        from mobilenets.models.detection import DetectorGraph

        graph = DetectorGraph(model)
    record = network_record(graph, info, None)
    calib, val, why = _datasets(source, record, calib_data, data_root)
    indices = stratified_sample(calib, calib_images, seed)
    batches = [
        torch.stack([calib[i][0] for i in indices[start : start + 16]])
        for start in range(0, len(indices), 16)
    ]
    if record.task == "segmentation":  # a fixed-size program at the data's image size
        record = replace(record, input_size=int(batches[0].shape[-1]))
    export_pte(graph, staged, record, calibration=batches)
    return _judge(
        model,
        load(staged)[0] if detector else PteProgram(staged),
        val,
        staged,
        out_path,
        fp32_bytes=fp32_program_bytes(graph),
        calibration="PT2E (XNNPACK quantizer, activation ranges averaged over the images as "
        "NNCF's, the outputs' whole; convolution + ReLU6 fused, bias correction)",
        scheme="XNNPACK's (per-channel int8 weights, int8 activations), chosen by XNNPACK for "
        "the CPU it runs on",
        calib_images=len(indices),
        margin=margin,
        min_agreement=min_agreement,
        min_confident_agreement=min_confident_agreement,
        why=why,
    )


def quantize_openvino(
    source: str,
    out_path: str | Path,
    calib_data: str = "digits",
    *,
    calib_images: int = 256,
    margin: float = DEFAULT_MARGIN,
    min_agreement: float = MIN_AGREEMENT,
    min_confident_agreement: float = MIN_CONFIDENT_AGREEMENT,
    data_root: str | None = None,
    seed: int = 0,
    fast_bias_correction: bool = False,
    target_cpu: str | Int8Scheme | None = None,
) -> QuantReport:
    """An int8 OpenVINO IR (``out_path`` ``.xml`` and its ``.bin``) of a checkpoint, weights file
    or weights name by NNCF's post-training quantization, calibrated and judged exactly as
    :func:`quantize_onnx` does (the same seeded, class-stratified calibration sample, the same
    guards and report); a detector's prediction layers stay fp32.

    NNCF's performance preset (symmetric int8 weights per channel, int8 activations) with full
    bias correction, chosen by ``benchmarks/int8_quantizers.py`` on the real V2: it agreed with
    fp32 on 87.69% of the photo crops (100% where fp32 is confident), NNCF's fast bias
    correction on 79.23%, ONNX Runtime's QDQ on 69.23% (VNNI Xeon).

    ``target_cpu`` (default: this machine's, :mod:`mobilenets.cpu`) decides NNCF's overflow
    fix: for an x86 CPU without VNNI, whose int8 kernels add pairs of products in 16 bits,
    every layer's weights get 7 bits (``OverflowFix.ENABLE``); elsewhere only the first layer's
    (NNCF's default). With OpenVINO held to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) the digits V2's
    8-bit IR lost 2.2 points of top-1 and failed its guard; 7-bit weights cannot saturate."""
    from mobilenets.saved.edge import require_package

    if Path(out_path).suffix != ".xml":
        raise ConfigError(f"an OpenVINO IR is written as FILE.xml, not {display(out_path)}")
    out_path, staged = _outputs(out_path, source, calib_data)
    if is_qat_checkpoint(source):
        _post_training_only(target_cpu=target_cpu, fast_bias_correction=fast_bias_correction)
        guards = {"margin": margin, "min_agreement": min_agreement, "data_root": data_root}
        guards["min_confident_agreement"] = min_confident_agreement
        return quantize_qat(source, out_path, staged, calib_data, **guards)
    require_package("nncf", "openvino")
    scheme = int8_scheme(target_cpu)
    model, info = _trained(source, out_path, onnx=True)
    calib, val, why = _datasets(source, info, calib_data, data_root)
    indices = stratified_sample(calib, calib_images, seed)
    samples = [calib[i][0][None].numpy() for i in indices]
    fp32_bytes, kept = _nncf_ir(source, info, samples, staged, scheme, fast_bias_correction)
    seven = "7 bits in every layer" if scheme.reduce_range else "7 bits in the first layer"
    return _judge(
        model,
        load(staged)[0],
        val,
        staged,
        out_path,
        fp32_bytes=fp32_bytes,
        calibration="NNCF post-training quantization (performance preset, "
        f"{'fast ' if fast_bias_correction else ''}bias correction)",
        scheme=f"int8 weights ({seven}: NNCF's overflow fix), int8 activations, for "
        f"{scheme.target} CPUs, because {scheme.why}",
        calib_images=len(indices),
        kept_fp32=kept,
        margin=margin,
        min_agreement=min_agreement,
        min_confident_agreement=min_confident_agreement,
        why=why,
    )


def _nncf_ir(
    source: str,
    info: object,
    samples: list[np.ndarray],
    staged: Path,
    scheme: Int8Scheme,
    fast_bias_correction: bool,
) -> tuple[int, list[str]]:
    """NNCF's int8 of ``source``'s fp32 IR, written at ``staged`` with the network's record, by
    a child process (:mod:`mobilenets.export.nncf_child`: NNCF hooks torch in the process that
    runs it); the fp32 IR's size in bytes (a segmenter's IR is made at the calibration images'
    size) and the convolutions kept in fp32 (a detector's prediction layers)."""
    import openvino as ov

    from mobilenets.export.model_export import export_model
    from mobilenets.export.nncf_onnx import run_nncf
    from mobilenets.saved.edge import OPENVINO_INFO_KEY
    from mobilenets.saved.loader import exported_info

    size = int(samples[0].shape[-1]) if info.task == "segmentation" else None
    if Path(source).suffix == ".onnx" and size is not None and size != info.input_size:
        raise ConfigError(
            f"{display(source)} takes {info.input_size} px but the calibration images are "
            f"{size} px: quantize the checkpoint instead (its IR is made at their size)"
        )
    with tempfile.TemporaryDirectory() as folder:
        fp32 = export_model(str(source), Path(folder) / "fp32.xml", resolution=size)
        fp32_bytes = fp32.stat().st_size + fp32.with_suffix(".bin").stat().st_size
        network = ov.Core().read_model(fp32)
        record = network.get_rt_info(OPENVINO_INFO_KEY).astype(str)
        # a detector's prediction layers (``/head/``), not the backbone's ``/backbone/head``
        heads = [op for op in network.get_ops() if op.get_friendly_name().startswith("/head/")]
        heads = heads if info.task == "detection" else []
        np.save(Path(folder) / "samples.npy", np.concatenate(samples))
        spec = {
            "fp32": str(fp32),
            "samples": str(Path(folder) / "samples.npy"),
            "out": str(Path(folder) / "int8.xml"),
            "ignored": [op.get_friendly_name() for op in heads],
            "overflow_fix": "enable" if scheme.reduce_range else "first_layer_only",
            "fast_bias_correction": fast_bias_correction,
        }
        run_nncf(spec, Path(folder))
        quantized = ov.Core().read_model(spec["out"])
        quantized.set_rt_info(record, OPENVINO_INFO_KEY)  # the record, as export wrote it
        written = Path(folder) / "staged.xml"
        ov.save_model(quantized, str(written), compress_to_fp16=False)
        exported_info(written)  # the record reads back
        del quantized  # its weights map the folder's files
        os.replace(written.with_suffix(".bin"), staged.with_suffix(".bin"))
        os.replace(written, staged)  # the .xml last: never found without its .bin
    kept = [
        op.get_friendly_name()
        for op in heads
        if op.get_type_name() in ("Convolution", "GroupConvolution")
    ]
    return fp32_bytes, kept


def _trained(source: str, out_path: Path, onnx: bool = False) -> tuple[torch.nn.Module, object]:
    """The trained network to quantize and its record: a checkpoint, a ``.safetensors`` file, a
    weights name, or with ``onnx`` (an OpenVINO IR is made from it) one of our fp32 ``.onnx``
    files; a bare registry name is refused (random weights have nothing to keep)."""
    from mobilenets.export.model_export import source_network

    if (
        onnx and Path(source).suffix == ".onnx"
    ):  # an fp32 file from `export`: its IR is made from it
        return load(source)
    model, info = source_network(source, out_path)
    if info is None:
        raise ConfigError(
            f"{display(source)} is a bare model name: quantizing needs trained weights (a "
            "checkpoint, a .safetensors file or a weights name)"
        )
    return model, info


def quantize_qat(
    source: str,
    out_path: Path,
    staged: Path,
    calib_data: str,
    *,
    margin: float = DEFAULT_MARGIN,
    min_agreement: float = MIN_AGREEMENT,
    min_confident_agreement: float = MIN_CONFIDENT_AGREEMENT,
    data_root: str | None = None,
) -> object:
    """The int8 file of a QAT run, judged on ``calib_data``'s held-out split as every int8
    file is (nothing is calibrated: the run trained its scales), against the fp32 network of
    :func:`~mobilenets.export.qat.qat_reference`."""
    reference, info, fp32_bytes, what = write_qat(source, staged)
    _, val, why = _datasets(source, info, calib_data, data_root)
    return _judge(
        reference,
        load(staged)[0],
        val,
        staged,
        out_path,
        fp32_bytes=fp32_bytes,
        calibration=f"quantization-aware training (the run's trained scales); fp32 is {what}",
        scheme=QAT_SCHEME,
        calib_images=0,
        margin=margin,
        min_agreement=min_agreement,
        min_confident_agreement=min_confident_agreement,
        why=why,
    )


def _post_training_only(**settings: object) -> None:
    """A QAT run's int8 is its own (trained scales): post-training settings are refused."""
    given = [k for k, v in settings.items() if v not in (None, False, "auto")]
    if given:
        raise ConfigError(
            f"{', '.join('--' + k.replace('_', '-') for k in given)}: post-training settings; "
            "a QAT checkpoint's int8 takes its scales from training"
        )


def _outputs(out_path: str | Path, source: str | Path, calib_data: str) -> tuple[Path, Path]:
    """``--out`` and where the int8 file is staged (:func:`rejected_path`), both checked by the
    output policy."""
    out_path = check_output_path(out_path, source, data=[calib_data])
    if out_path.suffix in (".bin", ".safetensors", ".pt", ".pth"):
        raise ConfigError(
            f"--out {display(out_path)}: quantize writes an int8 ONNX model (FILE.onnx), an "
            "ExecuTorch program (FILE.pte) or an OpenVINO IR (FILE.xml, with its FILE.bin)"
        )
    staged = check_output_path(rejected_path(out_path), source)
    if out_path.suffix == ".xml":  # the IR's weights beside it
        check_output_path(out_path.with_suffix(".bin"), source)
        check_output_path(staged.with_suffix(".bin"), source)
    return out_path, staged


def _kept_nodes(nodes: list[str], patterns: Sequence[str], where: str | Path) -> list[str]:
    """The node names ``--keep-fp32``'s patterns match; a pattern that matches none is an
    error (it would silently quantize what the user meant to keep)."""
    unmatched = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in nodes)]
    if unmatched:
        raise ConfigError(
            f"--keep-fp32 {listed(unmatched)} matches no node of {display(where)}; node names "
            f"follow the module names, e.g. {listed(nodes[:3])}"
        )
    return [n for n in nodes if any(fnmatch.fnmatch(n, p) for p in patterns)]


def rejected_path(out_path: str | Path) -> Path:
    """Where an int8 file that failed its guard is kept (``m.int8.onnx`` →
    ``m.int8.rejected.onnx``): never at ``--out``, so a good file there is never replaced."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.rejected{out_path.suffix}")


def _judge(
    fp32_network: torch.nn.Module,
    int8_network: torch.nn.Module,
    val: Dataset,
    staged: Path,
    out_path: Path,
    **fields: object,
) -> QuantReport:
    """Judge the int8 file written at ``staged`` (:func:`rejected_path`); it replaces
    ``out_path`` only when it passes its guard, else it stays where it is and a warning says so."""
    comparison = _compare(fp32_network, int8_network, val, str(fields.get("why", "")))
    companions = [staged.with_suffix(".bin")] if staged.suffix == ".xml" else []  # an IR's
    size = sum(p.stat().st_size for p in [staged, *companions])
    weighed = "weights" if staged.suffix == ".pte" else "file"  # fp32 is never lowered to weigh
    report = QuantReport(**comparison, int8_bytes=size, fp32_size=weighed, **fields)
    if report.ok:
        for companion in companions:  # the .bin first: the .xml is never without it
            os.replace(companion, out_path.with_suffix(companion.suffix))
        os.replace(staged, out_path)
        report.path = str(out_path)
    else:
        report.path = str(staged)
        warnings.warn(
            f"int8 failed the {report.guard} guard: kept at {display(staged)}, "
            f"{display(out_path)} untouched",
            stacklevel=2,
        )
    return report


def _compare(
    fp32_network: torch.nn.Module, int8_network: torch.nn.Module, val: Dataset, why: str
) -> dict:
    """Both networks on the held-out images: agreement, and top-1s when labels mean something."""
    if getattr(val, "task", "") == "detection":
        return _compare_boxes(fp32_network, int8_network, val, why)
    batches, labels = _batches(val)
    dense = getattr(val, "task", "") == "segmentation"
    fp32 = _probabilities(fp32_network, batches)
    int8 = _probabilities(int8_network, batches)
    return {
        "guard": "agreement" if why else "accuracy",
        "fp32_top1": None if why else _score(fp32.argmax(1), labels, dense),
        "int8_top1": None if why else _score(int8.argmax(1), labels, dense),
        "unit": "pixels" if dense else "images",
        "metric": "mIoU" if dense else "top-1",
        **agreement(fp32, int8),
        "images": len(labels),
        "fp32_classes": len(np.unique(fp32.argmax(1))),
    }


def agreement(fp32: np.ndarray, int8: np.ndarray) -> dict:
    """Top-1 agreement in percent of two probability arrays (a row per image, or per pixel),
    overall and where fp32 is confident (top probability ≥ ``CONFIDENT``), and how many rows
    that is; the agreement guard's figures."""
    same = fp32.argmax(1) == int8.argmax(1)
    confident = fp32.max(1) >= CONFIDENT
    return {
        "agreement": 100 * float(same.mean()),
        "confident_agreement": 100 * float(same[confident].mean()) if confident.any() else None,
        "confident_images": int(confident.sum()),
    }


@torch.inference_mode()
def _compare_boxes(
    fp32_network: torch.nn.Module, int8_network: torch.nn.Module, val: Dataset, why: str
) -> dict:
    """Two detectors on the held-out images: AP50 of each (pycocotools), and agreement: of
    the boxes fp32 reports (its best, as many as the image has true boxes), the share int8 also
    finds (same class, IoU ≥ 0.5); confident: those fp32 scores ≥ :data:`CONFIDENT`."""
    from torchvision.ops import box_iou

    from mobilenets.data.detection import coco_metrics

    samples = [val[i] for i in range(len(val))]
    images, truths = [s[0] for s in samples], [s[1] for s in samples]
    fp32, int8 = [], []
    for start in range(0, len(images), 8):
        fp32 += fp32_network(images[start : start + 8])
        int8 += int8_network(images[start : start + 8])
    kept, scores, labels = [], [], []
    for a, b, truth in zip(fp32, int8, truths, strict=True):
        best = slice(0, max(1, len(truth["boxes"])))
        iou = box_iou(a["boxes"][best], b["boxes"])
        same = a["labels"][best][:, None] == b["labels"][None, :]
        kept += ((iou >= 0.5) & same).any(1).tolist()
        scores += a["scores"][best].tolist()
        labels += a["labels"][best].tolist()
    kept, confident = np.asarray(kept, bool), np.asarray(scores) >= CONFIDENT
    classes = int(getattr(fp32_network, "detector", fp32_network).num_classes)
    return {
        "guard": "agreement" if why else "accuracy",
        "fp32_top1": None if why else coco_metrics(fp32, truths, classes)["ap50"],
        "int8_top1": None if why else coco_metrics(int8, truths, classes)["ap50"],
        "unit": "boxes",
        "metric": "AP50",
        "agreement": 100 * float(kept.mean()) if len(kept) else 0.0,
        "confident_agreement": 100 * float(kept[confident].mean()) if confident.any() else None,
        "confident_images": int(confident.sum()),
        "images": len(kept),
        "fp32_classes": len(set(labels)),
    }


def _datasets(
    model_path: str | Path, info: object, calib_data: str, data_root: str | None
) -> tuple[Dataset, Dataset, str]:
    """The calibration and held-out splits, preprocessed as the network's record says, and why
    the agreement guard applies ("" when the data's classes are the model's)."""
    if info.task == "segmentation":
        return _segmentation_datasets(model_path, info, calib_data)
    if info.task == "detection":
        return _detection_datasets(model_path, info, calib_data, data_root)
    preprocess = info.eval_transform()
    common = {"root": data_root, "preprocess": preprocess}
    calib = build_dataset(calib_data, "train", info.input_size, augment=False, **common)
    val = build_dataset(calib_data, "val", info.input_size, **common)
    why = ""
    for split, dataset in (("train/", calib), ("val/", val)):
        if len(dataset) == 0:
            raise ZeroWorkError(f"{display(calib_data)}: the {split} split holds no images")
        try:
            check_classes(
                info.classes,
                [str(c) for c in dataset.classes],
                expected_from=display(model_path),
                found_in=f"{display(calib_data)} {split}",
            )
        except DataError as err:
            why = why or str(err)
    return calib, val, why


class _GraphInput(Dataset):
    """A detector's tiles as its exported graph takes them: normalised (the detector's own
    mean and std; the tiles are already at its input size)."""

    task = "detection"

    def __init__(self, dataset: Dataset, mean: tuple, std: tuple) -> None:
        self.dataset = dataset
        self.mean = torch.tensor(mean)[:, None, None]
        self.std = torch.tensor(std)[:, None, None]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple:
        image, target = self.dataset[index]
        return (image - self.mean) / self.std, target


def _detection_datasets(
    model_path: str | Path, info: object, calib_data: str, data_root: str | None
) -> tuple[Dataset, Dataset, str]:
    """A detector's calibration tiles (normalised for its graph) and held-out images (the
    detector resizes and normalises them itself); the agreement guard when the classes
    differ."""
    from mobilenets.data.detection import build_detection_dataset

    calib = build_detection_dataset(calib_data, "train", info.input_size, root=data_root)
    val = build_detection_dataset(calib_data, "val", info.input_size, root=data_root)
    why = ""
    if list(info.classes) != list(val.classes):
        why = (
            f"the classes of {display(calib_data)} ({listed(val.classes, 5)}) are not those of "
            f"{display(model_path)} ({listed(info.classes, 5)})"
        )
    return _GraphInput(calib, info.mean, info.std), val, why


def _segmentation_datasets(
    model_path: str | Path, info: object, calib_data: str
) -> tuple[Dataset, Dataset, str]:
    """A segmenter's calibration images (the train split's fixed tiles or whole images) and
    held-out ones, normalised as it was trained; the agreement guard when the classes differ."""
    from mobilenets.data.segmentation import build_segmentation_dataset

    common = {"mean_std": (info.mean, info.std), "augment": False}
    calib = build_segmentation_dataset(calib_data, "train", info.input_size, **common)
    val = build_segmentation_dataset(calib_data, "val", info.input_size, **common)
    why = ""
    if list(info.classes) != list(val.classes):
        why = (
            f"the classes of {display(calib_data)} ({listed(val.classes, 5)}) are not those of "
            f"{display(model_path)} ({listed(info.classes, 5)})"
        )
    return calib, val, why
