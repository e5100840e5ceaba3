"""int8: ONNX Runtime static quantization (QDQ, per-channel weights) calibrated on real images,
then fp32 and int8 evaluated side by side on held-out data.

A user never gets a silently broken int8 model: when int8 top-1 falls more than ``margin``
points below fp32, the report says so (``ok`` is False, a warning is raised, and the command
exits non-zero).
"""

from __future__ import annotations

import fnmatch
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from mobilenets.data import build_dataset, check_classes
from mobilenets.errors import ConfigError, ZeroWorkError, display
from mobilenets.fileio import atomic_path, check_output_path
from mobilenets.saved.onnx import load_onnx, onnx_metadata, set_onnx_metadata
from mobilenets.weights import load

DEFAULT_MARGIN = 2.0  # top-1 points


@dataclass
class QuantReport:
    """fp32 against int8 on the held-out split of a data spec."""

    fp32_top1: float
    int8_top1: float
    agreement: float  # % of images where both predict the same class
    images: int
    fp32_bytes: int
    int8_bytes: int
    kept_fp32: list[str] = field(default_factory=list)  # node names left in fp32
    margin: float = DEFAULT_MARGIN

    @property
    def ok(self) -> bool:
        return self.int8_top1 >= self.fp32_top1 - self.margin

    def kept_modules(self) -> str:
        """The fp32 nodes grouped by the module they belong to."""
        if not self.kept_fp32:
            return "nothing"
        modules = sorted({name.rsplit("/", 1)[0] or name for name in self.kept_fp32})
        return f"{len(self.kept_fp32)} nodes in " + ", ".join(modules)

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def format(self) -> str:
        lines = [
            f"{'':<6} {'top-1':>8} {'size':>10}",
            f"{'fp32':<6} {self.fp32_top1:>7.2f}% {self.fp32_bytes / 1e6:>8.2f} MB",
            f"{'int8':<6} {self.int8_top1:>7.2f}% {self.int8_bytes / 1e6:>8.2f} MB",
            f"top-1 agreement {self.agreement:.2f}% on {self.images} held-out images; size "
            f"{self.fp32_bytes / self.int8_bytes:.1f}× smaller",
            "kept in fp32: " + self.kept_modules(),
        ]
        if not self.ok:
            lines.append(
                f"int8 top-1 is more than {self.margin} points below fp32: do not ship "
                "this model; keep the layers that lose most in fp32 (--keep-fp32)"
            )
        return "\n".join(lines)


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over the first ``count`` images of a dataset."""

    def __init__(self, dataset: Dataset, count: int, input_name: str, batch: int = 16) -> None:
        self.batches = self._batches(dataset, min(count, len(dataset)), input_name, batch)

    @staticmethod
    def _batches(dataset: Dataset, count: int, name: str, batch: int) -> Iterator[dict]:
        for start in range(0, count, batch):
            images = [dataset[i][0] for i in range(start, min(start + batch, count))]
            yield {name: torch.stack(images).numpy()}

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def _batches(dataset: Dataset, batch: int = 64) -> tuple[list[torch.Tensor], np.ndarray]:
    """The held-out images decoded once, in batches, and their labels."""
    images, labels = [], []
    for start in range(0, len(dataset), batch):
        samples = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
        images.append(torch.stack([s[0] for s in samples]))
        labels += [s[1] for s in samples]
    return images, np.array(labels)


@torch.inference_mode()
def _predict(network: torch.nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    return np.concatenate([network(x).argmax(1).numpy() for x in batches])


def quantize_qdq(
    model_path: str | Path, out_path: str | Path, reader: object, exclude: Sequence[str] = ()
) -> None:
    """ONNX Runtime static int8 quantization: QDQ format, per-channel int8 weights, uint8
    activations calibrated with ``reader`` (a CalibrationDataReader)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=list(exclude),
        )


def quantize_onnx(
    model_path: str | Path,
    out_path: str | Path,
    calib_data: str = "digits",
    *,
    calib_images: int = 256,
    keep_fp32: Sequence[str] = (),
    margin: float = DEFAULT_MARGIN,
    data_root: str | None = None,
) -> QuantReport:
    """Quantize an exported model to int8 and compare it with fp32 on ``calib_data``'s val split.

    Args:
        model_path: an fp32 model written by :func:`export_onnx`.
        out_path: where the int8 (QDQ) model goes.
        calib_data: data spec whose train split calibrates (no augmentation) and whose val
            split evaluates.
        calib_images: how many calibration images.
        keep_fp32: shell patterns of ONNX node names to leave in fp32 (``/stem/conv/*``,
            ``*/se/*``); node names follow our module names.
        margin: the largest acceptable top-1 drop, in points.
    """
    out_path = check_output_path(out_path, model_path)
    if Path(model_path).suffix != ".onnx":
        raise ConfigError(f"{display(model_path)} is not an .onnx model; export it first")
    fp32_network, info = load(model_path)
    proto = load_onnx(model_path)  # parsed once: metadata and node names
    meta = onnx_metadata(model_path, proto)
    resolution, preprocess = info.input_size, info.eval_transform()
    calib = build_dataset(
        calib_data, "train", resolution, augment=False, root=data_root, preprocess=preprocess
    )
    val = build_dataset(calib_data, "val", resolution, root=data_root, preprocess=preprocess)
    for split, dataset in (("train/", calib), ("val/", val)):
        check_classes(
            info.classes,
            [str(c) for c in dataset.classes],
            expected_from=display(model_path),
            found_in=f"{display(calib_data)} {split}",
        )
        if len(dataset) == 0:
            raise ZeroWorkError(f"{display(calib_data)}: the {split} split holds no images")

    import onnx

    nodes = [n.name for n in proto.graph.node]
    excluded = [n for n in nodes if any(fnmatch.fnmatch(n, p) for p in keep_fp32)]
    with atomic_path(out_path) as tmp:
        quantize_qdq(model_path, tmp, _Calibration(calib, calib_images, "input"), excluded)
        quantized = onnx.load(str(tmp))
        set_onnx_metadata(
            quantized,
            {**meta, "quantization": "int8 static QDQ, per-channel weights", "kept_fp32": excluded},
        )
        onnx.save(quantized, str(tmp))
    batches, labels = _batches(val)
    fp32 = _predict(fp32_network, batches)
    int8 = _predict(load(out_path)[0], batches)
    report = QuantReport(
        fp32_top1=100 * float((fp32 == labels).mean()),
        int8_top1=100 * float((int8 == labels).mean()),
        agreement=100 * float((fp32 == int8).mean()),
        images=len(labels),
        fp32_bytes=Path(model_path).stat().st_size,
        int8_bytes=out_path.stat().st_size,
        kept_fp32=excluded,
        margin=margin,
    )
    if not report.ok:
        warnings.warn(
            f"int8 top-1 {report.int8_top1:.2f}% is more than {margin} points below "
            f"fp32 {report.fp32_top1:.2f}% ({out_path})",
            stacklevel=2,
        )
    return report
