"""Starting from weights and learning from a teacher: fine-tuning and distillation.

* :func:`start_from`: the network a run starts from (``--weights``): its registry name, width and
  keywords become the run's, its tensors the initial weights; the classifier is replaced when the
  data's classes differ from the weights' (by name), every other tensor must load.
* :func:`set_frozen` and :func:`train_modes`: ``--freeze-epochs`` (only the classifier trains)
  and ``--freeze-bn`` (BatchNorm statistics kept).
* :class:`Teacher` and :func:`distillation_loss`: Hinton et al.'s knowledge distillation, which
  the V1 paper uses in Section 4.4: ``(1-W)·CE(student, y) + W·T²·KL(p_teacher^T ‖ p_student^T)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from mobilenets.data import check_classes
from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.models.registry import get_model_entry, model_task
from mobilenets.saved.info import NetworkInfo
from mobilenets.training.config import TrainConfig
from mobilenets.weights import load

CLASSIFIER = "classifier."  # the prefix of every model's classifier tensors


def load_network(spec: str, flag: str) -> tuple[nn.Module, NetworkInfo]:
    """A PyTorch network to start from or learn from (not an exported ONNX model)."""
    if str(spec).endswith(".onnx"):
        raise ConfigError(
            f"{flag} {display(spec)} is an exported ONNX model; give the .safetensors or "
            "checkpoint.pt it was exported from"
        )
    return load(spec)


#: Tensors of a classifier that a dense model's backbone has no place for (the pooled head).
CLASSIFIER_ONLY = ("classifier.", "pre_logits.", "head.")
#: A detector backbone's own layers, which no classifier holds: the SSD extra layers.
DETECTOR_OWN = ("extra.",)


def start_from(config: TrainConfig) -> tuple[TrainConfig, nn.Module, NetworkInfo]:
    """``config`` with the network of its ``weights`` (name, width, keywords), and that
    network with its record. A ``model`` or ``width_mult`` also given must agree.

    A dense model (``--model lraspp_mobilenet_v2``) given a classifier's weights (its
    backbone's family) starts its backbone from them: see :func:`backbone_start`.
    """
    network, info = load_network(config.weights, "--weights")
    if config.model and model_task(config.model) != "classification" == info.task:
        return backbone_start(config, info), network, info
    width = info.kwargs.get("width_mult", 1.0)
    for name, asked, found in (
        ("model", config.model, info.model),
        ("width_mult", config.width_mult, width),
    ):
        if asked is not None and asked != found:
            raise ConfigError(
                f"--{name.replace('_', '-')} {asked} disagrees with --weights "
                f"{display(config.weights)}, which hold {info.model} α={width}: leave "
                f"--{name.replace('_', '-')} out to train the weights' network"
            )
    kwargs = {k: v for k, v in info.kwargs.items() if k not in ("width_mult", "num_classes")}
    config = replace(
        config, model=info.model, width_mult=width, model_kwargs={**kwargs, **config.model_kwargs}
    )
    return config, network, info


def load_initial_weights(
    model: nn.Module,
    source: nn.Module,
    source_classes: tuple[str, ...],
    classes: tuple[str, ...],
    log: Callable[[str], None],
) -> None:
    """Copy ``source``'s tensors into ``model``: all of them when the classes are the same
    names in the same order, else all but the classifier (which keeps its fresh init)."""
    state = source.state_dict()
    keep_classifier = tuple(source_classes) == tuple(classes)
    if not keep_classifier:
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER)}
        log(
            f"fine-tuning: the weights' {len(source_classes)} classes are not the data's "
            f"{len(classes)}; the classifier starts afresh, every other tensor from the weights"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if keep_classifier or not k.startswith(CLASSIFIER)]
    if missing or unexpected:
        raise WeightsError(
            "the weights do not fit the network they describe: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}"
        )


def set_frozen(model: nn.Module, frozen: bool) -> None:
    """Only the classifier trains while ``frozen`` (its body gets no gradients)."""
    for name, param in model.named_parameters():
        param.requires_grad_(not frozen or name.startswith(CLASSIFIER))


def train_modes(frozen_body: bool, freeze_bn: bool) -> Callable[[nn.Module], None] | None:
    """What to do after ``model.train()``: BatchNorm layers back in eval mode (statistics kept)
    when the body is frozen or ``freeze_bn``; ``None`` when nothing."""
    if not (frozen_body or freeze_bn):
        return None

    def apply(model: nn.Module) -> None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    return apply


def distillation_loss(
    student: torch.Tensor,
    targets: torch.Tensor,
    teacher: torch.Tensor,
    *,
    temperature: float,
    weight: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``(1-W)·CE + W·T²·KL(softmax(teacher/T) ‖ softmax(student/T))``, batch mean (the T²
    keeps the soft term's gradients on the scale of the hard one's, as Hinton et al.)."""
    hard = F.cross_entropy(student, targets, label_smoothing=label_smoothing)
    soft = F.kl_div(
        F.log_softmax(student.float() / temperature, dim=1),
        F.log_softmax(teacher.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - weight) * hard + weight * temperature**2 * soft


class Teacher:
    """The teacher's logits for a batch of the student's images.

    The images are renormalised from the student's mean/std to the teacher's when they differ.
    With ``cache`` (no augmentation: every epoch sees the same images), each image's logits are
    computed once and kept by dataset index.
    """

    def __init__(
        self,
        model: nn.Module,
        info: NetworkInfo,
        student_info: NetworkInfo,
        *,
        device: torch.device,
        channels_last: bool = False,
        cache: bool = False,
    ) -> None:
        check_classes(
            list(student_info.classes),
            list(info.classes),
            expected_from="the training data",
            found_in="the teacher",
        )
        self.model = model.to(device).eval()
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        for param in self.model.parameters():
            param.requires_grad_(False)
        mean, std = (torch.tensor(v, device=device)[:, None, None] for v in (info.mean, info.std))
        s_mean, s_std = (
            torch.tensor(v, device=device)[:, None, None]
            for v in (student_info.mean, student_info.std)
        )
        same = torch.equal(mean, s_mean) and torch.equal(std, s_std)
        # x_teacher = (x·s_std + s_mean - mean) / std
        self.scale, self.shift = (None, None) if same else (s_std / std, (s_mean - mean) / std)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None
        self.calls = 0  # forward passes run (for tests of the cache)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        keys = indices.tolist()
        if self.cache is not None and all(k in self.cache for k in keys):
            return torch.stack([self.cache[k] for k in keys]).to(images.device)
        x = images if self.scale is None else images * self.scale + self.shift
        self.calls += 1
        logits = self.model(x).float()
        if self.cache is not None:
            for k, row in zip(keys, logits.cpu(), strict=True):
                self.cache[k] = row
        return logits


def backbone_start(config: TrainConfig, info: NetworkInfo) -> TrainConfig:
    """``config`` for a dense model whose backbone starts from the classifier of ``info``: the
    same family, width and keywords (``backbone_kwargs``)."""
    family = get_model_entry(config.model).preset.get("backbone_name")
    if family != info.model:
        raise ConfigError(
            f"--weights {display(config.weights)} hold {info.model}, but {config.model}'s "
            f"backbone is {family}: give {family} weights (or that model's own checkpoint)"
        )
    width = info.kwargs.get("width_mult", 1.0)
    if config.width_mult is not None and config.width_mult != width:
        raise ConfigError(
            f"--width-mult {config.width_mult} disagrees with --weights "
            f"{display(config.weights)} (α={width}): leave --width-mult out"
        )
    own = ("width_mult", "num_classes", "dropout", "features_only", "out_indices")
    backbone_kwargs = {k: v for k, v in info.kwargs.items() if k not in own}
    kwargs = {**config.model_kwargs}
    if backbone_kwargs:
        kwargs["backbone_kwargs"] = {**backbone_kwargs, **kwargs.get("backbone_kwargs", {})}
    return replace(config, width_mult=width, model_kwargs=kwargs)


def load_backbone_weights(model: nn.Module, source: nn.Module, log: Callable[[str], None]) -> None:
    """Copy a classifier's tensors into ``model.backbone``: every backbone tensor must load
    but a detector's extra layers (its own); the classifier's pooled head (classifier,
    pre-logits) is left out, and V2's 1280 conv unless the backbone keeps it (a detector's
    last map, as the TF reference)."""
    wanted = model.backbone.state_dict()
    state = {
        k: v
        for k, v in source.state_dict().items()
        if not k.startswith(CLASSIFIER_ONLY) or (k.startswith("head.") and k in wanted)
    }
    try:
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape (another width or tail)
        first = str(error).strip().splitlines()[-1].strip()
        raise WeightsError(f"the weights do not fit the backbone: {first}") from None
    missing = [k for k in missing if not k.startswith(DETECTOR_OWN)]
    if missing or unexpected:
        raise WeightsError(
            "the weights do not fit the backbone: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}"
        )
    log(
        f"fine-tuning: the backbone starts from the weights ({len(state)} tensors); the "
        f"{getattr(model, 'task', 'dense')} head starts afresh"
    )
