"""The bad-input suite: one row per way a careful attacker or a clumsy user gets it wrong.

Every row runs the CLI in-process through ``main(argv)`` and asserts the exit status, that the
one-line message names the offending flag or file, that no traceback is printed, and that every
file that existed before is byte-identical after (nothing lost, nothing half-written).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from _workspace import Workspace, snapshot, write_folder
from PIL import Image

from mobilenets.cli.main import main
from mobilenets.saved.safetensors import weights_metadata

Build = Callable[[Workspace, Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    message: str  # regex the stderr must match
    code: int = 2


TRAIN = [
    "train",
    "--model",
    "mobilenet_v1",
    "--width-mult",
    "0.25",
    "--resolution",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "4",
    "--no-progress",
]


def train(ws: Workspace, tmp: Path, *extra: str, data: Path | None = None) -> list[str]:
    return [*TRAIN, "--data", str(data or ws.folder), "--out", str(tmp / "run"), *extra]


def flag(name: str, value: str, command: tuple[str, ...] = (), says: str | None = None) -> Case:
    """A numeric flag out of range: argparse refuses it, naming the flag and the value (or
    what ``says`` gives) and what is allowed."""

    def build(ws: Workspace, tmp: Path) -> list[str]:
        base = list(command) if command else train(ws, tmp)
        return [*base, name, value]

    pattern = rf"argument {re.escape(name)}: .*{re.escape(value if says is None else says)}"
    return Case(
        f"flag{name}={value or 'empty'}-{command[0] if command else 'train'}", build, pattern
    )


# --- data and files that the cases make --------------------------------------------------


def folder_with(tmp: Path, **changes) -> Path:
    root = write_folder(tmp / "data", **changes)
    return root


def val_extra_class(ws, tmp):
    root = folder_with(tmp)
    write_folder(root, classes=("zebra",), train=0, val=2)
    (root / "train" / "zebra").rmdir()
    return train(ws, tmp, data=root)


def val_missing_class(ws, tmp):
    root = folder_with(tmp)
    for f in (root / "val" / "square").iterdir():
        f.unlink()
    (root / "val" / "square").rmdir()
    return train(ws, tmp, data=root)


def one_class(ws, tmp):
    return train(ws, tmp, data=write_folder(tmp / "one", classes=("only",)))


def empty_class(ws, tmp):
    root = folder_with(tmp)
    (root / "train" / "empty").mkdir()
    (root / "val" / "empty").mkdir()
    return train(ws, tmp, data=root)


def corrupt_image(ws, tmp):
    root = folder_with(tmp)
    (root / "val" / "circle" / "bad.png").write_bytes(b"\x89PNG not really")
    return train(ws, tmp, data=root)


def corrupt_image_in_worker(ws, tmp):
    return [*corrupt_image(ws, tmp), "--workers", "1"]


def train_only_folder(ws, tmp):
    root = write_folder(tmp / "d", train=2, val=0)
    for folder in (root / "val").iterdir():
        folder.rmdir()
    (root / "val").rmdir()
    return ["eval", "--checkpoint", str(ws.checkpoint), "--data", str(root)]


def all_bad_skipped(ws, tmp):
    root = folder_with(tmp)
    for f in (root / "train").rglob("*.png"):
        f.write_bytes(b"broken")
    return train(ws, tmp, "--skip-bad-images", data=root)


def nonutf8_corrupt(ws, tmp):
    root = folder_with(tmp)
    name = os.fsdecode(b"bad-\xff\xfe.png")
    (root / "val" / "circle" / name).write_bytes(b"not an image")
    return train(ws, tmp, data=root)


def symlink_loop_file(ws, tmp):
    root = folder_with(tmp)
    loop = root / "val" / "circle" / "loop.png"
    os.symlink(loop, loop)
    return train(ws, tmp, data=root)


def decompression_bomb_train(ws, tmp):
    root = folder_with(tmp)
    Image.new("1", (15000, 15000)).save(root / "val" / "circle" / "bomb.png")
    return train(ws, tmp, data=root)


def out_is_file(ws, tmp):
    (tmp / "run").write_text("precious")
    return train(ws, tmp)


def out_under_file(ws, tmp):
    (tmp / "file").write_text("precious")
    return [*TRAIN, "--data", str(ws.folder), "--out", str(tmp / "file" / "run")]


def existing_run(ws, tmp):
    return [*TRAIN, "--data", str(ws.folder), "--out", str(ws.run)]


def resume_other_config(ws, tmp):
    return [*TRAIN, "--data", str(ws.folder), "--out", str(ws.run), "--resume", "--lr", "0.2"]


def nan_run(tmp: Path, ws: Workspace) -> Path:
    run = tmp / "run"
    run.mkdir()
    state = torch.load(ws.checkpoint, weights_only=True)
    state["model"]["classifier.bias"][0] = float("nan")
    torch.save(state, run / "checkpoint.pt")
    return run


def resume_nan(ws, tmp):
    nan_run(tmp, ws)
    return train(ws, tmp, "--resume")


def locked_run(ws, tmp):
    (tmp / "run").mkdir()
    holder = {"pid": os.getppid(), "host": os.uname().nodename, "since": 0}
    (tmp / "run" / ".lock").write_text(json.dumps(holder))
    return train(ws, tmp)


def too_few_images(ws, tmp):
    return [*train(ws, tmp), "--batch-size", "64"]


def truncated(path: Path, tmp: Path, keep: int = 4000) -> Path:
    out = tmp / f"cut{path.suffix}"
    out.write_bytes(path.read_bytes()[:keep])
    return out


def malicious_checkpoint(ws, tmp):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    (tmp / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    return ["eval", "--checkpoint", str(tmp / "evil.pt")]


def tensor_file(ws, tmp):
    torch.save(torch.ones(3), tmp / "tensor.pt")
    return ["eval", "--checkpoint", str(tmp / "tensor.pt")]


def eval_other_classes(ws, tmp):
    return [
        "eval",
        "--checkpoint",
        str(ws.checkpoint),
        "--data",
        str(write_folder(tmp / "d", classes=("a", "b", "c"))),
    ]


def nan_weights(ws, tmp) -> Path:
    from mobilenets.weights import read_weights

    tensors, info = read_weights(ws.weights)
    tensors["classifier.bias"][1] = float("inf")
    from safetensors.torch import save_file

    save_file(tensors, str(tmp / "nan.safetensors"), metadata=weights_metadata(info))
    return tmp / "nan.safetensors"


def weights_with(ws: Workspace, tmp: Path, **meta: str) -> Path:
    from safetensors.torch import save_file

    from mobilenets.weights import read_weights

    tensors, info = read_weights(ws.weights)
    metadata = {**weights_metadata(info), **meta}
    save_file(tensors, str(tmp / "w.safetensors"), metadata=metadata)
    return tmp / "w.safetensors"


def predict_meta(**meta: str) -> Build:
    def build(ws, tmp):
        return ["predict", "--weights", str(weights_with(ws, tmp, **meta)), str(ws.image)]

    return build


def int_tensor_weights(ws, tmp):
    from safetensors.torch import save_file

    from mobilenets.weights import read_weights

    tensors, info = read_weights(ws.weights)
    tensors["stem.conv.weight"] = tensors["stem.conv.weight"].to(torch.int32)
    save_file(tensors, str(tmp / "int.safetensors"), metadata=weights_metadata(info))
    return ["predict", "--weights", str(tmp / "int.safetensors"), str(ws.image)]


def convert(src: Path, source: str, model: str, out: Path, *extra: str) -> list[str]:
    return ["convert", "--from", source, str(src), "--model", model, "--out", str(out), *extra]


def state_with(ws: Workspace, tmp: Path, change: Callable[[dict], None]) -> Path:
    state = torch.load(ws.tv_state, weights_only=True)
    change(state)
    torch.save(state, tmp / "changed.pth")
    return tmp / "changed.pth"


def keras_file(tmp: Path, layers: dict[str, tuple[int, ...]]) -> Path:
    """A Keras 2 style HDF5 weights file with one kernel per named layer."""
    import h5py
    import numpy as np

    path = tmp / "keras.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name in layers]
        for name, shape in layers.items():
            f.create_group(name).attrs["weight_names"] = [f"{name}/kernel:0".encode()]
            f[name].create_dataset(f"{name}/kernel:0", data=np.zeros(shape, "float32"))
    return path


def converted(ws: Workspace, tmp: Path) -> Path:
    """torchvision's V3-Small converted: ImageNet weights that record no training data."""
    assert (
        main(convert(ws.tv_state, "torchvision", "mobilenet_v3_small", tmp / "tv.safetensors")) == 0
    )
    return tmp / "tv.safetensors"


def bomb_image(ws, tmp):
    Image.new("1", (15000, 15000)).save(tmp / "bomb.png")
    return ["predict", "--weights", str(ws.weights), str(tmp / "bomb.png")]


def fine_tune_teacher_onnx(ws, tmp):
    return [*train(ws, tmp), "--teacher", str(ws.onnx)]


def adapt_state(tmp: Path, text: str) -> list[str]:
    """An adapt folder whose state.json holds ``text``, and the command continuing it."""
    (tmp / "a").mkdir()
    (tmp / "a" / "state.json").write_text(text)
    return ["adapt", "--target-ratio", "0.5", "--resolution", "32", "--out", str(tmp / "a")]


def adapt_other_settings(ws, tmp):
    from mobilenets.adapt.config import AdaptConfig

    other = AdaptConfig(target_ratio=0.5, resolution=32, finetune_steps=7).to_dict()
    return adapt_state(tmp, json.dumps({"config": other, "history": []}))


def adapt_damaged_state(ws, tmp):
    return adapt_state(tmp, '{"config": {')


CASES = [
    # numeric flags, refused where they are parsed
    flag("--width-mult", "0"),
    flag("--width-mult", "1e6"),
    flag("--width-mult", "nan"),
    flag("--resolution", "0"),
    flag("--resolution", "31"),
    flag("--lr", "nan"),
    flag("--lr", "-0.1"),
    flag("--lr", "inf"),
    flag("--momentum", "1.5"),
    flag("--weight-decay", "-1"),
    flag("--label-smoothing", "1"),
    flag("--warmup-epochs", "-1"),
    flag("--epochs", "0"),
    flag("--batch-size", "1"),
    flag("--batch-size", "0"),
    flag("--ema-decay", "1"),
    flag("--dropout", "1"),
    flag("--workers", "-1"),
    flag("--seed", "-5"),
    flag("--width-mults", "", ("sweep",)),
    flag("--width-mults", "1,abc", ("sweep",), says="'abc' is not a number"),
    flag("--resolutions", "16", ("sweep",)),
    flag("--shard", "2/2", ("sweep",)),
    flag("--topk", "0", ("predict", "--weights", "w.safetensors", "x.png")),
    flag("--resolution", "0", ("profile", "mobilenet_v1")),
    flag("--width-mult", "1e6", ("profile", "mobilenet_v1")),
    flag("--num-classes", "-1", ("profile", "mobilenet_v1")),
    flag("--batch-size", "0", ("bench",)),
    flag("--threads", "0", ("bench",)),
    flag("--batch-size", "0", ("eval", "--checkpoint", "c.pt")),
    flag("--calib-images", "0", ("quantize", "m.onnx", "--out", "q.onnx")),
    flag("--eval-resize", "10", ("convert", "--from", "timm", "x.pth", "--out", "y")),
    flag("--target-ratio", "1.5", ("adapt",)),
    flag("--target-ms", "-1", ("adapt",)),
    flag("--finetune-steps", "0", ("adapt", "--target-ratio", "0.5")),
    Case(
        "adapt-v1",
        lambda ws, t: ["adapt", "--model", "mobilenet_v1", "--target-ratio", "0.5"],
        r"--model: invalid choice: 'mobilenet_v1'",
    ),
    Case(
        "adapt-no-target",
        lambda ws, t: ["adapt", "--out", str(t / "a")],
        r"one of the arguments --target-ms --target-ratio is required",
    ),
    Case("adapt-other-settings", adapt_other_settings, r"holds a search with other settings"),
    Case("adapt-damaged-state", adapt_damaged_state, r"state\.json is not valid JSON"),
    Case(
        "unknown-model-train",
        lambda ws, t: [*train(ws, t), "--model", "mobilenet_v4"],
        r"--model: invalid choice: 'mobilenet_v4'",
    ),
    Case(
        "unknown-model-profile",
        lambda ws, t: ["profile", "mobilenetv2"],
        r"invalid choice: 'mobilenetv2'",
    ),
    # data
    Case(
        "unknown-data-spec",
        lambda ws, t: train(ws, t, data=Path("imagenet-21k")),
        r"unknown data spec 'imagenet-21k'",
    ),
    Case(
        "folder-without-splits",
        lambda ws, t: train(ws, t, data=t),
        r"has no train/ or val/ subfolder",
    ),
    Case(
        "val-extra-class",
        val_extra_class,
        r"classes of val/ do not match those of .*data train/ \(3 classes\): 1 unexpected "
        r"\(zebra\)",
    ),
    Case(
        "val-missing-class",
        val_missing_class,
        r"classes of val/ do not match .*: 1 missing \(square\)",
    ),
    Case("one-class", one_class, r"need at least 2 classes.*found 1 \(only\)"),
    Case("empty-class", empty_class, r"class folders empty in .* hold no images"),
    Case(
        "corrupt-image",
        corrupt_image,
        r"cannot read image .*val/circle/bad\.png.*--skip-bad-images",
    ),
    Case(
        "eval-unknown-device",
        lambda ws, t: ["eval", "--checkpoint", str(ws.checkpoint), "--device", "tpu:9"],
        r"unknown device 'tpu:9'",
    ),
    Case(
        "corrupt-image-in-worker",
        corrupt_image_in_worker,
        r"^mobilenets train: error: cannot read image .*val/circle/bad\.png",
    ),
    Case("eval-data-without-val", train_only_folder, r"image folder .*d has no val/ subfolder"),
    Case(
        "sweep-unknown-data",
        lambda ws, t: ["sweep", "--data", "nowhere", "--out", str(t / "s"), "--no-progress"],
        r"unknown data spec 'nowhere'",
    ),
    Case(
        "all-images-bad",
        all_bad_skipped,
        r"epoch 1 took no optimizer step: \d+ unreadable images were skipped",
    ),
    Case("non-utf8-name", nonutf8_corrupt, r"cannot read image .*bad-\\xff\\xfe\.png"),
    Case("symlink-loop-file", symlink_loop_file, r"cannot read image .*loop\.png.*symbolic links"),
    Case("decompression-bomb", decompression_bomb_train, r"bomb\.png: refusing a decompression"),
    Case(
        "batch-larger-than-data",
        too_few_images,
        r"train split has 18 images, fewer than one batch of 64",
    ),
    # run folders
    Case("out-is-a-file", out_is_file, r"--out .*run is a file; it must be a folder"),
    Case("out-under-a-file", out_under_file, r"--out .*file/run cannot be written"),
    Case("existing-run", existing_run, r"already holds a checkpoint; pass --resume"),
    Case(
        "resume-other-config",
        resume_other_config,
        r"cannot resume .* different configuration: lr: 0.05 → 0.2",
    ),
    Case("resume-nan", resume_nan, r"cannot resume .*NaN or inf \(classifier.bias\)"),
    Case("locked-run", locked_run, r"is in use by another run \(pid \d+"),
    # checkpoints
    Case(
        "eval-missing",
        lambda ws, t: ["eval", "--checkpoint", str(t / "none.pt")],
        r"none\.pt: .*does not exist",
    ),
    Case(
        "eval-truncated",
        lambda ws, t: ["eval", "--checkpoint", str(truncated(ws.checkpoint, t))],
        r"cut\.pt is unreadable or truncated",
    ),
    Case(
        "eval-folder",
        lambda ws, t: ["eval", "--checkpoint", str(ws.run)],
        r"run is a folder; give its checkpoint\.pt",
    ),
    Case("eval-not-checkpoint", tensor_file, r"tensor\.pt is not a mobilenets training checkpoint"),
    Case("eval-malicious-pickle", malicious_checkpoint, r"evil\.pt is unreadable or truncated"),
    Case(
        "eval-other-classes",
        eval_other_classes,
        r"classes of .*d val/ do not match .*3 missing \(circle, square, stripes\)",
    ),
    Case(
        "eval-predictions-over-input",
        lambda ws, t: [
            "eval",
            "--checkpoint",
            str(ws.checkpoint),
            "--predictions",
            str(ws.checkpoint),
        ],
        r"--predictions .*checkpoint\.pt is the input file",
    ),
    Case(
        "eval-weights-without-data",
        lambda ws, t: ["eval", "--weights", str(converted(ws, t))],
        r"--data is required to evaluate .*tv\.safetensors",
    ),
    Case(
        "eval-nan-weights",
        lambda ws, t: ["eval", "--weights", str(nan_weights(ws, t)), "--data", str(ws.folder)],
        r"nan\.safetensors holds NaN or inf in classifier\.bias",
    ),
    # conversion
    Case(
        "convert-timm-as-torchvision",
        lambda ws, t: convert(ws.timm_state, "torchvision", "mobilenet_v3_small", t / "o"),
        r"looks like a timm state dict: use --from timm",
    ),
    Case(
        "convert-torchvision-as-timm",
        lambda ws, t: convert(ws.tv_state, "timm", "mobilenetv3_small_100", t / "o"),
        r"looks like a torchvision state dict: use --from torchvision",
    ),
    Case(
        "convert-wrong-architecture",
        lambda ws, t: convert(ws.tv_state, "torchvision", "mobilenet_v3_large", t / "o"),
        r"not a torchvision state dict of mobilenet_v3_large.*missing \d+ keys",
    ),
    Case(
        "convert-wrong-width",
        lambda ws, t: convert(
            ws.tv_state, "torchvision", "mobilenet_v3_small", t / "o", "--width-mult", "0.5"
        ),
        r"features\.0\.0\.weight \(16, 3, 3, 3\) vs our stem\.conv\.weight \(8, 3, 3, 3\)",
    ),
    Case(
        "convert-out-over-input",
        lambda ws, t: convert(ws.tv_state, "torchvision", "mobilenet_v3_small", ws.tv_state),
        r"--out .*tv_v3s\.pth is the input file",
    ),
    Case(
        "convert-truncated",
        lambda ws, t: convert(
            truncated(ws.tv_state, t), "torchvision", "mobilenet_v3_small", t / "o"
        ),
        r"cut\.pth is truncated or not a state dict",
    ),
    Case(
        "convert-unknown-torchvision-name",
        lambda ws, t: convert(ws.tv_state, "torchvision", "mobilenet_v1", t / "o"),
        r"torchvision has no MobileNet named 'mobilenet_v1'",
    ),
    Case(
        "convert-tf-port-of-v2",
        lambda ws, t: convert(ws.timm_state, "timm", "tf_mobilenetv2_100", t / "o"),
        r"timm has no model 'tf_mobilenetv2_100': its tf_ ports .* are tf_mobilenetv3_large",
    ),
    Case(
        "convert-keras-not-hdf5",
        lambda ws, t: ["convert", "--from", "keras", str(ws.image), "--out", str(t / "o")],
        r"is not a Keras weights file \(\.h5, \.weights\.h5, \.keras\) or is truncated",
    ),
    Case(
        "convert-keras-not-a-mobilenet",
        lambda ws, t: [
            "convert",
            "--from",
            "keras",
            str(keras_file(t, {"dense": (4, 2)})),
            "--out",
            str(t / "o"),
        ],
        r"not those of Keras applications' MobileNet, MobileNetV2, MobileNetV3Large",
    ),
    Case(
        "convert-keras-other-family",
        lambda ws, t: [
            "convert",
            "--from",
            "keras",
            str(keras_file(t, {"conv1": (3, 3, 3, 32), "conv_dw_1": (3, 3, 32, 1)})),
            "--model",
            "mobilenet_v2",
            "--out",
            str(t / "o"),
        ],
        r"keras\.h5 holds a Keras mobilenet_v1, not a mobilenet_v2",
    ),
    Case(
        "convert-keras-without-classifier",
        lambda ws, t: [
            "convert",
            "--from",
            "keras",
            str(keras_file(t, {"conv1": (3, 3, 3, 32), "conv_dw_1": (3, 3, 32, 1)})),
            "--out",
            str(t / "o"),
        ],
        r"no classifier layer 'conv_preds': Keras models saved with include_top=False",
    ),
    Case(
        "convert-without-model",
        lambda ws, t: ["convert", "--from", "timm", str(ws.timm_state), "--out", str(t / "o")],
        r"--model is required with --from timm",
    ),
    Case(
        "convert-nan-source",
        lambda ws, t: convert(
            state_with(ws, t, lambda s: s["classifier.3.bias"].fill_(float("nan"))),
            "torchvision",
            "mobilenet_v3_small",
            t / "o",
        ),
        r"NaN or inf in classifier\.3\.bias",
    ),
    Case(
        "convert-extra-key",
        lambda ws, t: convert(
            state_with(ws, t, lambda s: s.update(extra=torch.ones(1))),
            "torchvision",
            "mobilenet_v3_small",
            t / "o",
        ),
        r"1 unexpected keys \(extra\)",
    ),
    Case(
        "convert-not-tensors",
        lambda ws, t: (
            torch.save({"a": 1}, t / "ints.pth"),
            convert(t / "ints.pth", "timm", "mobilenetv1_100", t / "o"),
        )[1],
        r"ints\.pth does not hold a state dict of named tensors",
    ),
    Case(
        "convert-missing-source",
        lambda ws, t: convert(t / "none.pth", "timm", "mobilenetv1_100", t / "o"),
        r"none\.pth: no such file \(expected a state-dict file\)",
    ),
    Case(
        "convert-nan-checkpoint",
        lambda ws, t: [
            "convert",
            "--from",
            "checkpoint",
            str(nan_run(t, ws) / "checkpoint.pt"),
            "--out",
            str(t / "o.safetensors"),
        ],
        r"checkpoint\.pt holds NaN or inf in classifier\.bias",
    ),
    # weights-file metadata is data, not trust
    Case(
        "meta-input-size",
        predict_meta(input_size="10"),
        r"metadata: input_size: Expected `int` >= 32",
    ),
    Case(
        "meta-class-count",
        predict_meta(classes='["a", "b"]'),
        r"names 2 classes but the classifier has 3 outputs",
    ),
    Case(
        "meta-mean-length",
        predict_meta(mean="[0.5, 0.5]"),
        r"'mean' is \[0\.5, 0\.5\]; expected a list of 3 finite numbers",
    ),
    Case(
        "meta-std-zero", predict_meta(std="[1, 0, 1]"), r"metadata: std\[1\]: Expected `float` > 0"
    ),
    Case(
        "meta-unknown-model",
        predict_meta(model="resnet50\x1b[31m"),
        r"'model' is 'resnet50\\x1b\[31m'; expected a registered model name",
    ),
    Case(
        "meta-unknown-keyword",
        predict_meta(kwargs='{"width_mult": 0.25, "depth": 3}'),
        r"keywords \['depth'\] are not arguments of mobilenet_v1",
    ),
    Case(
        "meta-bad-keyword-value",
        predict_meta(kwargs='{"width_mult": -1, "num_classes": 3}'),
        r"metadata does not build a network: mobilenet_v1: width_mult \(α\) must be",
    ),
    Case("meta-not-json", predict_meta(classes="[oops"), r"'classes' is not valid JSON"),
    Case("weights-int-tensor", int_tensor_weights, r"stem\.conv\.weight has dtype torch\.int32"),
    # predict
    Case(
        "predict-bad-image",
        lambda ws, t: (
            (t / "x.jpg").write_bytes(b"junk"),
            ["predict", "--weights", str(ws.weights), str(t / "x.jpg")],
        )[1],
        r"cannot read image .*x\.jpg.*pass --skip-bad-images",
    ),
    Case(
        "predict-missing-image",
        lambda ws, t: ["predict", "--weights", str(ws.weights), str(t / "none.png")],
        r"cannot read image .*none\.png",
    ),
    Case("predict-bomb", bomb_image, r"bomb\.png: refusing a decompression bomb"),
    Case(
        "predict-truncated-weights",
        lambda ws, t: ["predict", "--weights", str(truncated(ws.weights, t)), str(ws.image)],
        r"cut\.safetensors is truncated or not safetensors",
    ),
    Case(
        "predict-pth-as-weights",
        lambda ws, t: ["predict", "--weights", str(ws.tv_state), str(ws.image)],
        r"tv_v3s\.pth is not a mobilenets training checkpoint: it holds a bare state dict; "
        r"convert it first",
    ),
    # export and quantize
    Case(
        "export-out-over-input",
        lambda ws, t: ["export", str(ws.weights), "--out", str(ws.weights)],
        r"--out .*weights\.safetensors is the input file",
    ),
    Case(
        "export-unknown-source",
        lambda ws, t: ["export", "mobilenet_v5", "--out", str(t / "m")],
        r"mobilenet_v5 is neither a checkpoint, a \.safetensors file, a weights name .* nor a "
        r"model name; model names: .*mobilenet_v1",
    ),
    Case(
        "export-truncated-checkpoint",
        lambda ws, t: ["export", str(truncated(ws.checkpoint, t)), "--out", str(t / "m.onnx")],
        r"cut\.pt is unreadable or truncated",
    ),
    Case(
        "export-nan-weights",
        lambda ws, t: ["export", str(nan_weights(ws, t)), "--out", str(t / "m.onnx")],
        r"holds NaN or inf in classifier\.bias",
    ),
    Case(
        "quantize-out-over-input",
        lambda ws, t: ["quantize", str(ws.onnx), "--out", str(ws.onnx)],
        r"--out .*model\.onnx is the input file",
    ),
    Case(
        "quantize-truncated",
        lambda ws, t: ["quantize", str(truncated(ws.onnx, t)), "--out", str(t / "q.onnx")],
        r"cut\.onnx is truncated or not an ONNX model",
    ),
    Case(
        "quantize-unknown-calibration",
        lambda ws, t: ["quantize", str(ws.onnx), "--out", str(t / "q"), "--calib-method", "avg"],
        r"argument --calib-method: invalid choice: 'avg' \(choose from 'minmax', 'entropy'",
    ),
    Case(
        "quantize-nncf-with-calibration",
        lambda ws, t: [
            *("quantize", str(ws.onnx), "--out", str(t / "q.onnx")),
            *("--quantizer", "nncf", "--calib-method", "minmax"),
        ],
        r"--calib-method chooses ONNX Runtime's calibration; NNCF calibrates its own way "
        r"\(use --quantizer onnxruntime with it\)",
    ),
    flag("--min-agreement", "101", ("quantize", "m.onnx", "--out", "q.onnx")),
    # fine-tuning and distillation
    Case(
        "train-freeze-without-weights",
        lambda ws, t: [*train(ws, t), "--freeze-epochs", "1"],
        r"freeze_epochs needs weights to start from \(--weights\)",
    ),
    Case(
        "train-distill-weight-without-teacher",
        lambda ws, t: [*train(ws, t), "--distill-weight", "0.9"],
        r"distill_weight needs a teacher to distil from \(--teacher\)",
    ),
    Case(
        "train-teacher-onnx",
        fine_tune_teacher_onnx,
        r"--teacher .*model\.onnx is an exported ONNX model; give the \.safetensors",
    ),
    Case(
        "train-weights-unknown-name",
        lambda ws, t: [
            *train(ws, t)[:1],
            "--weights",
            "torchvision:mobilenet_v2.V9",
            "--out",
            str(t / "r"),
        ],
        r"torchvision has no weights 'V9' for mobilenet_v2; known: "
        r"torchvision:mobilenet_v2\.IMAGENET1K_V1",
    ),
    Case(
        "train-weights-other-model",
        lambda ws, t: [*train(ws, t), "--model", "mobilenet_v2", "--weights", str(ws.weights)],
        r"--model mobilenet_v2 disagrees with --weights .*weights\.safetensors, which hold "
        r"mobilenet_v1 α=0\.25: leave --model out",
    ),
    Case(
        "predict-weights-not-on-this-machine",
        lambda ws, t: [
            "predict",
            "--weights",
            "torchvision:mobilenet_v3_large.IMAGENET1K_V1",
            str(t / "a.png"),
        ],
        r"torchvision:mobilenet_v3_large\.IMAGENET1K_V1 is not on this machine and downloads are "
        r"off: place mobilenet_v3_large-8738ca79\.pth",
    ),
    Case(
        "quantize-missing",
        lambda ws, t: ["quantize", str(t / "m.onnx"), "--out", str(t / "q")],
        r"m\.onnx: no such file \(expected an ONNX model\)",
    ),
]


# --- issue 23: one output policy, nothing waits forever, no vacuous success ------------------


def fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def export_over_companion(ws, tmp):
    source = tmp / "run.bin"  # a checkpoint that happens to be named like an IR's weights
    source.write_bytes(ws.checkpoint.read_bytes())
    return ["export", str(source), "--out", str(tmp / "run.xml")]


def train_out_inside_data(ws, tmp):
    root = folder_with(tmp)
    return [*train(ws, tmp, data=root), "--out", str(root / "train" / "circle" / "run")]


def train_with_fifo_image(ws, tmp):
    root = folder_with(tmp)
    fifo(root / "val" / "circle" / "f.png")
    return train(ws, tmp, data=root)


def damaged_lock(ws, tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / ".lock").write_text("[]")
    return train(ws, tmp)


def featureless_weights(ws, tmp):
    from mobilenets.models import create_model
    from mobilenets.saved.info import NetworkInfo
    from mobilenets.saved.safetensors import save_weights

    model = create_model("mobilenet_v1", width_mult=0.25, num_classes=0)
    info = NetworkInfo("mobilenet_v1", dict(model.model_kwargs), 32)
    save_weights(model, tmp / "features.safetensors", info)
    return ["predict", "--weights", str(tmp / "features.safetensors"), str(ws.image)]


ISSUE_23 = [
    Case(
        "export-xml-over-its-input-bin",
        export_over_companion,
        r"--out .*run\.xml \(it writes .*run\.bin beside it\) is the input file",
    ),
    Case(
        "eval-predictions-inside-data",
        lambda ws, t: [
            "eval",
            "--checkpoint",
            str(ws.checkpoint),
            "--data",
            str(ws.folder),
            "--predictions",
            str(ws.folder / "val" / "circle" / "p.csv"),
        ],
        r"--predictions .*p\.csv is inside the data folder .*folder/val: what is written "
        r"there would become data",
    ),
    Case(
        "train-out-inside-data",
        train_out_inside_data,
        r"--out .*circle/run is inside the data folder",
    ),
    Case(
        "export-format-disagrees-with-suffix",
        lambda ws, t: [
            "export",
            str(ws.weights),
            "--format",
            "openvino",
            "--out",
            str(t / "m.onnx"),
        ],
        r"--out .*m\.onnx must end in \.xml",
    ),
    Case(
        "export-out-is-a-fifo",
        lambda ws, t: ["export", str(ws.weights), "--out", str(fifo(t / "m.onnx"))],
        r"--out .*m\.onnx is not a regular file",
    ),
    Case(
        "quantize-out-bin",
        lambda ws, t: ["quantize", str(ws.onnx), "--out", str(t / "q.bin")],
        r"quantize writes an int8 ONNX model \(FILE\.onnx\), an ExecuTorch program "
        r"\(FILE\.pte\) or an OpenVINO IR \(FILE\.xml, with its FILE\.bin\)",
    ),
    Case(
        "quantize-keep-fp32-matches-nothing",
        lambda ws, t: [
            "quantize",
            str(ws.onnx),
            "--calib-data",
            str(ws.folder),
            "--out",
            str(t / "q.onnx"),
            "--keep-fp32",
            "/nothing/*",
        ],
        r"--keep-fp32 /nothing/\* matches no node of .*model\.onnx",
    ),
    Case(
        "models-pattern-matches-nothing", lambda ws, t: ["models", "resnet*"], r"no model matches"
    ),
    Case(
        "sweep-width-twice",
        lambda ws, t: ["sweep", "--width-mults", "0.25,0.25", "--out", str(t / "s")],
        r"argument --width-mults: 0\.25 given more than once",
    ),
    Case(
        "bench-model-twice",
        lambda ws, t: ["bench", "--models", "mobilenet_v1,mobilenet_v1", "--out", str(t / "b")],
        r"argument --models: mobilenet_v1 given more than once",
    ),
    Case(
        "convert-checkpoint-from-pte",
        lambda ws, t: [
            "convert",
            "--from",
            "checkpoint",
            str(t / "model.pte"),
            "--out",
            str(t / "o.safetensors"),
        ],
        r"model\.pte is an exported model; --from checkpoint takes a run's checkpoint\.pt",
    ),
    Case(
        "convert-reduced-tail-on-v2",
        lambda ws, t: convert(
            ws.tv_state, "torchvision", "mobilenet_v2", t / "o.safetensors", "--reduced-tail"
        ),
        r"--reduced-tail applies to torchvision's MobileNetV3 state dicts only",
    ),
    Case(
        "convert-out-named-onnx",
        lambda ws, t: convert(ws.tv_state, "torchvision", "mobilenet_v3_small", t / "o.onnx"),
        r"convert writes safetensors weights; name it FILE\.safetensors, not \.onnx",
    ),
    Case("train-fifo-image", train_with_fifo_image, r"f\.png: not a regular file \(a FIFO"),
    Case(
        "predict-fifo-image",
        lambda ws, t: ["predict", "--weights", str(ws.weights), str(fifo(t / "f.png"))],
        r"cannot read image .*f\.png: not a regular file",
    ),
    Case("run-lock-damaged", damaged_lock, r"the run lock is damaged .*delete .*\.lock"),
    Case(
        "adapt-state-is-a-list",
        lambda ws, t: adapt_state(t, "[]"),
        r"state\.json: Expected `object`, got `array` — this NetAdapt state is damaged",
    ),
    Case(
        "adapt-state-without-history",
        lambda ws, t: adapt_state(t, '{"config": {}}'),
        r"state\.json: Object missing required field `history`",
    ),
    Case(
        "meta-huge-num-classes",
        predict_meta(kwargs='{"width_mult": 0.25, "num_classes": 10000000}', classes="[]"),
        r"num_classes must be an integer in \[0, 1000000\]",
    ),
    Case(
        "meta-bn-eps-nan",
        predict_meta(kwargs='{"width_mult": 0.25, "num_classes": 3, "bn_eps": NaN}'),
        r"bn_eps must be a finite number in \(0, 1\]",
    ),
    Case(
        "meta-huge-table",
        predict_meta(
            kwargs='{"num_classes": 3, "table": {"stem": 32, "rows": '
            + json.dumps([{"s": 1, "c": 16384}] * 6)
            + "}}"
        ),
        r"would have [\d,]+ parameters .*at most 1,073,741,824 are allowed",
    ),
    Case(
        "predict-featureless-weights",
        featureless_weights,
        r"has no classifier \(num_classes=0\): it outputs pooled features",
    ),
]

CASES += ISSUE_23


# --- issue 25: segmentation data and networks ----------------------------------------------


def seg_folder(tmp: Path, *, mask_size=(40, 48), value=1, drop_mask=False) -> Path:
    """A segmentation folder (classes.txt, train/ and val/ with images/ and masks/) with one
    defect: a mask of another size, a value outside the classes, or a missing mask."""
    root = tmp / "segdata"
    (root / "classes.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("background\nthing\n")
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(
                root / split / "images" / f"{i}.png"
            )
            mask = np.zeros(mask_size if i == 0 else (40, 48), np.uint8)
            mask[10:20, 10:20] = value if i == 0 else 1
            if not (drop_mask and i == 0):
                Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    return root


SEG_TRAIN = ["train", "--model", "lraspp_mobilenet_v3_small", "--width-mult", "0.5"]
SEG_TRAIN += ["--resolution", "32", "--epochs", "1", "--batch-size", "2", "--no-progress"]


def seg_train(tmp: Path, **defect) -> list[str]:
    return [*SEG_TRAIN, "--data", str(seg_folder(tmp, **defect)), "--out", str(tmp / "run")]


ISSUE_25 = [
    Case(
        "seg-mask-size-differs",
        lambda ws, t: seg_train(t, mask_size=(20, 48)),
        r"0\.png is 48×20 px but its image is 48×40: a mask must have its image's size",
    ),
    Case(
        "seg-mask-value-outside-classes",
        lambda ws, t: seg_train(t, value=7),
        r"0\.png holds values 7 outside the 2 classes \(0–1, or 255 = ignore\)",
    ),
    Case(
        "seg-mask-missing",
        lambda ws, t: seg_train(t, drop_mask=True),
        r"masks lacks the masks of 1 image\(s\) \(0\.png\); each image needs a PNG mask",
    ),
    Case(
        "seg-eval-of-a-classifier",
        lambda ws, t: ["eval", "--checkpoint", str(ws.checkpoint), "--data", "nuclei"],
        r"holds mobilenet_v1, a classification network, but nuclei is segmentation data",
    ),
    Case(
        "seg-weights-of-another-family",
        lambda ws, t: [*seg_train(t), "--weights", str(ws.weights)],
        r"hold mobilenet_v1, but lraspp_mobilenet_v3_small's backbone is mobilenet_v3_small",
    ),
]
CASES += ISSUE_25


def det_folder(tmp: Path, *, box=(10, 8, 30, 28), name="thing", coco_missing=False) -> Path:
    """A box folder (classes.txt, train/ and val/ with images/ and annotations/ VOC XML, or a
    COCO annotations.json naming an image that is not there) with one defect."""
    root = tmp / "detdata"
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("thing\n")
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "annotations").mkdir(exist_ok=True)
        for i in range(4):
            Image.fromarray(np.full((40, 48, 3), 60 * i, np.uint8)).save(
                root / split / "images" / f"{i}.png"
            )
            x1, y1, x2, y2 = box if i == 0 else (10, 8, 30, 28)
            label = name if i == 0 else "thing"
            (root / split / "annotations" / f"{i}.xml").write_text(
                f"<annotation><object><name>{label}</name><bndbox><xmin>{x1}</xmin>"
                f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
                "</annotation>"
            )
    if coco_missing:
        coco = {
            "images": [{"id": 1, "file_name": "0.png"}, {"id": 2, "file_name": "gone.png"}],
            "annotations": [],
            "categories": [{"id": 1, "name": "thing"}],
        }
        for split in ("train", "val"):
            (root / split / "annotations.json").write_text(json.dumps(coco))
    return root


DET_TRAIN = ["train", "--model", "ssdlite_mobilenet_v3_small", "--width-mult", "0.5"]
DET_TRAIN += ["--resolution", "64", "--epochs", "1", "--batch-size", "2", "--no-progress"]


def det_train(tmp: Path, **defect) -> list[str]:
    return [*DET_TRAIN, "--data", str(det_folder(tmp, **defect)), "--out", str(tmp / "run")]


ISSUE_26 = [
    Case(
        "det-box-outside-the-image",
        lambda ws, t: det_train(t, box=(30, 8, 60, 28)),
        r"0\.xml: box \(30, 8, 60, 28\) lies outside the 48×40 image; boxes must be inside it",
    ),
    Case(
        "det-box-without-area",
        lambda ws, t: det_train(t, box=(10, 8, 10, 28)),
        r"0\.xml: box \(10, 8, 10, 28\) has no area or is inverted; boxes are \(xmin, ymin, xmax",
    ),
    Case(
        "det-box-inverted",
        lambda ws, t: det_train(t, box=(30, 8, 10, 28)),
        r"0\.xml: box \(30, 8, 10, 28\) has no area or is inverted",
    ),
    Case(
        "det-class-not-in-the-names",
        lambda ws, t: det_train(t, name="bicycle"),
        r"0\.xml: class 'bicycle' is not among the classes \(thing\)",
    ),
    Case(
        "det-coco-json-naming-missing-files",
        lambda ws, t: det_train(t, coco_missing=True),
        r"annotations\.json names images that are not in .*images: gone\.png",
    ),
    Case(
        "det-eval-of-a-classifier",
        lambda ws, t: ["eval", "--checkpoint", str(ws.checkpoint), "--data", "trees"],
        r"holds mobilenet_v1, a classification network, but trees is detection data: give it "
        r"a detector",
    ),
    Case(
        "det-detector-on-masks",
        lambda ws, t: [*DET_TRAIN, "--data", "nuclei", "--out", str(t / "run")],
        r"ssdlite_mobilenet_v3_small, a detection network, but nuclei is segmentation data: "
        r"give it a segmentation model",
    ),
]
CASES += ISSUE_26


def tf_graph_file(tmp: Path, constants: dict[str, tuple[int, ...]]) -> Path:
    """A frozen GraphDef holding float ``Const`` nodes of these shapes (zeros)."""
    from mobilenets.weights.tf_graph import _graph_message

    graph = _graph_message()()
    for name, shape in constants.items():
        node = graph.node.add(name=name, op="Const")
        attr = node.attr.add(key="value")
        attr.value.tensor.dtype = 1
        for size in shape:
            attr.value.tensor.tensor_shape.dim.add(size=size)
        attr.value.tensor.tensor_content = np.zeros(shape, np.float32).tobytes()
    path = tmp / "frozen_inference_graph.pb"
    path.write_bytes(graph.SerializeToString())
    return path


def tf_ssd(src: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "--from", "tf-ssd", str(src), *extra, "--out", str(out)]


ISSUE_26_TF = [
    Case(
        "convert-tf-ssd-not-a-graph",
        lambda ws, t: tf_ssd(ws.tv_state, t / "o.safetensors"),
        r"(is not a TensorFlow GraphDef \(its bytes are not that protobuf message\)|holds no "
        r"graph nodes); convert --from tf-ssd takes an Object Detection API",
    ),
    Case(
        "convert-tf-ssd-another-feature-extractor",
        lambda ws, t: tf_ssd(
            tf_graph_file(t, {"FeatureExtractor/MobilenetV1/Conv2d_0/weights": (3, 3, 3, 8)}),
            t / "o.safetensors",
        ),
        r"is not an SSDLite-MobileNetV2 graph: its feature extractor is MobilenetV1; convert "
        r"--from tf-ssd reads",
    ),
    Case(
        "convert-tf-ssd-class-names-that-do-not-fit",
        lambda ws, t: tf_ssd(pedestrian(), t / "o.safetensors", "--classes", "person,car"),
        r"the graph detects 1 class besides the background; --classes gives 2: person, car",
    ),
    Case(
        "convert-classes-of-a-state-dict",
        lambda ws, t: convert(
            ws.tv_state, "torchvision", "mobilenet_v3_small", t / "o", "--classes", "a"
        ),
        r"--classes names a TF detector's classes \(--from tf-ssd\)",
    ),
]
CASES += ISSUE_26_TF


def pedestrian() -> Path:
    from mobilenets.weights.tf_ssd import pedestrian_graph

    return pedestrian_graph()


if not torch.cuda.is_available():  # the machine CI runs on
    CASES.append(
        Case(
            "train-on-missing-gpu",
            lambda ws, t: train(ws, t, "--device", "cuda"),
            r"--device cuda: this machine has no CUDA GPU",
        )
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_loses_nothing(
    case: Case, ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = case.build(ws, tmp_path)
    before = snapshot(ws.root, tmp_path)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    assert re.search(case.message, err, re.MULTILINE), err
    assert "Traceback" not in err
    after = snapshot(ws.root, tmp_path)
    changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"files changed or lost: {changed}"
    assert not list(tmp_path.rglob("*.mobilenets-tmp")), "a temporary was left behind"
    assert not (tmp_path / "pwned").exists()


def test_the_suite_is_large_enough() -> None:
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)
    assert 2 * Image.MAX_IMAGE_PIXELS < 15000 * 15000  # the bomb cases use PIL's own limit
