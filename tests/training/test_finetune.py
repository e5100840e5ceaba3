"""Fine-tuning from weights (``--weights``, ``--freeze-epochs``, ``--freeze-bn``) and
distillation (``--teacher``): what is copied, what is frozen, what the loss is, what is refused,
and that a fine-tuned run depends on nothing but its own checkpoint."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mobilenets.errors import ConfigError, DataError
from mobilenets.export.model_export import export_model
from mobilenets.models import create_model
from mobilenets.saved import NetworkInfo
from mobilenets.saved.safetensors import save_weights
from mobilenets.training import TrainConfig, evaluate_checkpoint, fit
from mobilenets.training.finetune import Teacher, distillation_loss, load_initial_weights
from mobilenets.weights import load

FOLDER_CLASSES = ("circle", "square", "stripes")


def source_file(tmp_path, randomize_bn, classes=("a", "b", "c", "d", "e"), name="src") -> str:
    """A V1 α=0.25 weights file with non-trivial BN statistics and ``classes``."""
    model = randomize_bn(create_model("mobilenet_v1", width_mult=0.25, num_classes=len(classes)))
    info = NetworkInfo("mobilenet_v1", model.model_kwargs, input_size=32, classes=classes)
    path = tmp_path / f"{name}.safetensors"
    save_weights(model, path, info)
    return str(path)


def run(folder, tmp_path, name="run", **kw) -> tuple:
    settings = {"data": str(folder), "resolution": 32, "epochs": 2, "batch_size": 6}
    config = TrainConfig(**{**settings, **kw}, progress=False, out=str(tmp_path / name))
    return fit(config, log=lambda _m: None), config


def body(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("classifier.")}


def test_head_only_epochs_keep_every_body_tensor(tiny_image_folder, tmp_path, randomize_bn) -> None:
    src = source_file(tmp_path, randomize_bn)
    result, _ = run(tiny_image_folder, tmp_path, weights=src, freeze_epochs=2)
    source, _ = load(src)
    trained = result.model.state_dict()
    for key, value in body(source.state_dict()).items():  # BN statistics included
        assert torch.equal(trained[key], value), key
    assert trained["classifier.weight"].shape == (3, 256)  # replaced: 5 classes → 3
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["recipe"] == {
        "start": "weights",
        "lr": 0.002,
        "warmup_epochs": 1.0,
        "schedule": "cosine",
        "weights": src,
        "freeze_epochs": 2,
        "freeze_bn": False,
    }
    assert summary["config"]["model"] == "mobilenet_v1" and summary["width_mult"] == 0.25


def test_freeze_bn_keeps_the_statistics_and_trains_the_rest(
    tiny_image_folder, tmp_path, randomize_bn
) -> None:
    src = source_file(tmp_path, randomize_bn)
    result, _ = run(tiny_image_folder, tmp_path, weights=src, freeze_bn=True)
    source = load(src)[0].state_dict()
    trained = result.model.state_dict()
    stats = [k for k in source if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(trained[k], source[k]) for k in stats)
    assert not torch.equal(trained["stem.conv.weight"], source["stem.conv.weight"])
    unfrozen, _ = run(tiny_image_folder, tmp_path, name="unfrozen", weights=src)
    assert not torch.equal(unfrozen.model.state_dict()[stats[0]], source[stats[0]])


def test_same_class_names_keep_the_classifier(randomize_bn, tmp_path) -> None:
    src = load(source_file(tmp_path, randomize_bn, classes=FOLDER_CLASSES))[0]
    fresh = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    said = []
    load_initial_weights(fresh, src, FOLDER_CLASSES, FOLDER_CLASSES, said.append)
    assert torch.equal(fresh.classifier.weight, src.classifier.weight) and not said
    renamed = create_model("mobilenet_v1", width_mult=0.25, num_classes=3)
    load_initial_weights(renamed, src, FOLDER_CLASSES, ("x", "y", "z"), said.append)
    assert not torch.equal(renamed.classifier.weight, src.classifier.weight)
    assert "classifier starts afresh" in said[0]


def test_a_fine_tuned_run_does_not_need_its_source(
    tiny_image_folder, tmp_path, randomize_bn
) -> None:
    src = source_file(tmp_path, randomize_bn)
    _, config = run(tiny_image_folder, tmp_path, weights=src, epochs=1)
    (tmp_path / "src.safetensors").unlink()
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    _, info = load(checkpoint)
    assert "weights" not in info.kwargs and info.kwargs["width_mult"] == 0.25
    assert "fine-tuned from" in info.source
    assert evaluate_checkpoint(checkpoint, progress=False, log=lambda _m: None).images == 9
    export_model(str(checkpoint), tmp_path / "run.onnx")
    # and it extends without the source too (the checkpoint holds the network)
    from dataclasses import replace

    fit(replace(config, epochs=2, resume=True), log=lambda _m: None)


def test_recipe_settings_are_checked(tiny_image_folder, tmp_path, randomize_bn) -> None:
    src = source_file(tmp_path, randomize_bn)
    with pytest.raises(ConfigError, match="freeze_epochs needs weights"):
        TrainConfig(freeze_epochs=1)
    with pytest.raises(ConfigError, match="freeze_bn needs weights"):
        TrainConfig(freeze_bn=True)
    with pytest.raises(ConfigError, match="at most epochs"):
        TrainConfig(weights=src, epochs=2, freeze_epochs=3)
    with pytest.raises(ConfigError, match="needs a teacher"):
        TrainConfig(distill_weight=0.9)
    with pytest.raises(ConfigError, match="distill_temperature must be"):
        TrainConfig(teacher=src, distill_temperature=0)
    with pytest.raises(ConfigError, match="disagrees with --weights"):
        run(tiny_image_folder, tmp_path, weights=src, model="mobilenet_v2")
    with pytest.raises(ConfigError, match="disagrees with --weights"):
        run(tiny_image_folder, tmp_path, weights=src, width_mult=0.5)
    assert TrainConfig().learning_rate == 0.05 and TrainConfig(weights=src).learning_rate == 0.002
    assert TrainConfig().warmup == 3 and TrainConfig(weights=src).warmup == 1


def test_distillation_loss_is_the_formula() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    t, w = 3.0, 0.7
    p_t = (teacher / t).softmax(1)
    kl = (p_t * (p_t.log() - (student / t).log_softmax(1))).sum(1).mean()
    expected = (1 - w) * F.cross_entropy(student, y) + w * t * t * kl
    got = distillation_loss(student, y, teacher, temperature=t, weight=w)
    assert math.isclose(float(got), float(expected), rel_tol=1e-6)
    ce = distillation_loss(student, y, teacher, temperature=t, weight=0.0)
    assert torch.equal(ce, F.cross_entropy(student, y))
    assert float(
        distillation_loss(teacher, y, teacher, temperature=t, weight=1.0)
    ) == pytest.approx(0, abs=1e-6)


def test_teacher_renormalises_and_caches(randomize_bn, tmp_path) -> None:
    model = randomize_bn(create_model("mobilenet_v1", width_mult=0.25, num_classes=3))

    def record(mean: tuple, std: tuple) -> NetworkInfo:
        return NetworkInfo(
            "mobilenet_v1", input_size=32, mean=mean, std=std, classes=FOLDER_CLASSES
        )

    def normalise(x: torch.Tensor, info: NetworkInfo) -> torch.Tensor:
        return (x - torch.tensor(info.mean)[:, None, None]) / torch.tensor(info.std)[:, None, None]

    own, student = record((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), record((0.1, 0.2, 0.3), (0.5,) * 3)
    raw = torch.rand(4, 3, 32, 32)
    as_student, as_teacher = normalise(raw, student), normalise(raw, own)
    teacher = Teacher(model, own, student, device=torch.device("cpu"), cache=True)
    with torch.no_grad():
        expected = model(as_teacher)
    got = teacher(as_student, torch.arange(4))
    assert (got - expected).abs().max() < 1e-4
    again = teacher(torch.zeros(4, 3, 32, 32), torch.arange(4))  # cached by index: not recomputed
    assert torch.equal(again, got) and teacher.calls == 1
    with pytest.raises(DataError, match="do not match"):
        Teacher(
            model,
            own,
            NetworkInfo("mobilenet_v1", input_size=32, classes=("a", "b", "c")),
            device=torch.device("cpu"),
        )


def test_distillation_through_fit(tiny_image_folder, tmp_path, randomize_bn) -> None:
    teacher = source_file(tmp_path, randomize_bn, classes=FOLDER_CLASSES, name="teacher")
    result, _ = run(tiny_image_folder, tmp_path, teacher=teacher, distill_weight=0.8, augment=False)
    summary = result.summary
    assert summary["recipe"]["teacher"] == teacher and summary["recipe"]["distill_weight"] == 0.8
    wrong = source_file(tmp_path, randomize_bn, name="wrong")
    with pytest.raises(DataError, match="teacher"):
        run(tiny_image_folder, tmp_path, name="wrong", teacher=wrong)
    with pytest.raises(ConfigError, match="ONNX"):
        run(tiny_image_folder, tmp_path, name="onnx", teacher=str(tmp_path / "t.onnx"))


def test_fine_tuning_real_weights_learns_real_photos_in_three_epochs(real_v2_file, tmp_path):
    """torchvision's ImageNet V2 fine-tuned on the photos task (64 px patches, train and val from
    disjoint parts of 13 photographs), 3 epochs. Measured in the suite (a thread per worker) on
    the VNNI Xeon: 77.31%, the curve rising 40.00 → 61.15 → 77.31%; with torch held to AVX2
    (docs/cpu.md) 71.15%, 40.38 → 56.92 → 71.15%. With two threads per worker it was 78.46%
    (40.38 → 78.08 → 78.46%) and 80.38% held: the second epoch's figure moves by 20 points with
    the order of the sums, so only the last is floored. The same network from scratch stayed
    at chance (7.69%, 1 in 13) after 3 epochs on both; that control is
    ``benchmarks/finetune.py``'s (scratch reaches 73.46% after 10 epochs there), no longer run
    here, to keep the suite within its time (issue 30)."""
    tuned = fit(
        TrainConfig(
            weights="torchvision:mobilenet_v2.IMAGENET1K_V1",
            data="photos",
            resolution=64,
            epochs=3,
            progress=False,
            out=str(tmp_path / "f"),
        ),
        log=lambda _message: None,
    )
    assert tuned.summary["recipe"]["lr"] == 0.002 and tuned.summary["model"] == "mobilenet_v2"
    assert tuned.top1 >= 60.0  # chance is 7.69%
    with open(tmp_path / "f" / "metrics.csv") as f:
        curve = [float(row["val_top1"]) for row in csv.DictReader(f)]
    assert curve == sorted(curve), curve  # rising: no collapse after warmup
