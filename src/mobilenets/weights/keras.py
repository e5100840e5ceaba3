"""Keras applications' MobileNet, MobileNetV2 and MobileNetV3 weights, read without TensorFlow.

The weights the papers' authors released exist as Keras/TensorFlow files. This module reads
them with ``h5py`` in the three layouts Keras writes: the legacy HDF5 of Keras 2 and
``tf.keras`` (``model.save("m.h5")``, ``save_weights("w.h5")`` and the published
``mobilenet_1_0_224_tf.h5``-style files: one group per layer, ``weight_names`` attributes),
Keras 3's ``.weights.h5`` (``layers/<object>/vars/<i>``, the layer's name in an attribute) and
Keras 3's ``.keras`` archive (a zip holding ``model.weights.h5``).

Every layer is returned by its Keras name with its tensors in PyTorch's layout (conv kernels
``(kh, kw, in, out)`` → ``(out, in, kh, kw)``, depthwise ``(kh, kw, c, 1)`` → ``(c, 1, kh, kw)``,
dense ``(in, out)`` → ``(out, in)``, BN's gamma/beta/moving statistics → weight/bias/running_*),
keyed ``"<layer>.<tensor>"``, so the converters pair them with our modules by name
(:func:`keras_module`), never by position.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from mobilenets.errors import ConfigError, WeightsError, display
from mobilenets.fileio import require_file

#: Keras variable name → ours (``depthwise_kernel`` is Keras 2's name for a depthwise kernel).
_TENSOR = {
    "kernel": "weight",
    "depthwise_kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
#: Keras 3 stores a layer's variables by index: their names, by the number of them.
_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")
_CONV_VARIABLES = ("kernel", "bias")
_DEPTHWISE = re.compile(r"(^|_)(dw|depthwise)(_|$)")


def _torch_layout(layer: str, variable: str, value: np.ndarray) -> tuple[str, torch.Tensor]:
    """``("<layer>.<our tensor name>", tensor)`` in PyTorch's layout."""
    name = _TENSOR.get(variable)
    if name is None:
        raise WeightsError(f"layer {layer!r} holds a variable {variable!r} we do not know")
    tensor = torch.from_numpy(np.array(value, dtype=np.float32))
    if tensor.dim() == 4:  # (kh, kw, in, out) or, depthwise, (kh, kw, channels, multiplier)
        depthwise = variable == "depthwise_kernel" or bool(_DEPTHWISE.search(layer))
        if depthwise:
            kh, kw, channels, multiplier = tensor.shape
            tensor = tensor.permute(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
        else:
            tensor = tensor.permute(3, 2, 0, 1)
    elif tensor.dim() == 2:  # Dense (in, out)
        tensor = tensor.t()
    return f"{layer}.{name}", tensor.contiguous()


def _read_legacy(group: object) -> dict[str, torch.Tensor]:
    """Keras 2 / tf.keras HDF5: ``layer_names`` on the group, ``weight_names`` on each layer."""
    out = {}
    for raw in group.attrs["layer_names"]:
        layer = raw.decode() if isinstance(raw, bytes) else str(raw)
        names = group[layer].attrs.get("weight_names", [])
        for raw_weight in names:
            weight = raw_weight.decode() if isinstance(raw_weight, bytes) else str(raw_weight)
            variable = weight.rsplit("/", 1)[-1].split(":")[0]
            key, tensor = _torch_layout(layer, variable, group[layer][weight][()])
            out[key] = tensor
    return out


def _read_keras3(group: object) -> dict[str, torch.Tensor]:
    """Keras 3 ``.weights.h5``: ``layers/<object>/vars/<i>``, the layer's name in ``vars``'s
    ``name`` attribute (older Keras 3 releases: the object path is the name)."""
    out = {}
    for path, entry in group["layers"].items():
        variables = entry.get("vars")
        if variables is None or len(variables) == 0:
            continue
        layer = variables.attrs.get("name", path)
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        count = len(variables)
        if count == 4:
            names = _BN_VARIABLES
        elif count <= 2:
            names = _CONV_VARIABLES
        else:
            raise WeightsError(f"layer {layer!r} has {count} variables; not a MobileNet layer")
        depthwise = path.startswith("depthwise_conv2d")
        for index, variable in enumerate(names[:count]):
            variable = "depthwise_kernel" if depthwise and variable == "kernel" else variable
            key, tensor = _torch_layout(layer, variable, variables[str(index)][()])
            out[key] = tensor
    return out


def read_keras_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Every layer's tensors of a Keras file (``.h5``, ``.weights.h5``, ``.keras``), keyed
    ``"<layer name>.<weight|bias|running_mean|running_var>"`` in PyTorch's layout."""
    try:
        import h5py
    except ModuleNotFoundError:
        raise ConfigError(
            "reading Keras files needs h5py: pip install 'mobilenets[keras]' (no TensorFlow)"
        ) from None

    path = require_file(path, "a Keras weights file")
    try:
        if zipfile.is_zipfile(path):  # .keras: config.json, metadata.json, model.weights.h5
            with zipfile.ZipFile(path) as archive:
                if "model.weights.h5" not in archive.namelist():
                    raise WeightsError(f"{display(path)} is a zip without model.weights.h5")
                data = io.BytesIO(archive.read("model.weights.h5"))
            handle = h5py.File(data, "r")
        else:
            handle = h5py.File(path, "r")
    except WeightsError:
        raise
    except (OSError, zipfile.BadZipFile) as err:
        raise WeightsError(
            f"{display(path)} is not a Keras weights file (.h5, .weights.h5, .keras) or is "
            f"truncated: {display(str(err).splitlines()[0] if str(err) else type(err).__name__)}"
        ) from err
    with handle:
        if "layers" in handle:
            tensors = _read_keras3(handle)
        elif "model_weights" in handle:
            tensors = _read_legacy(handle["model_weights"])
        elif "layer_names" in handle.attrs:
            tensors = _read_legacy(handle)
        else:
            raise WeightsError(
                f"{display(path)} is an HDF5 file without Keras weights (no layers/ group, "
                "model_weights/ group or layer_names attribute)"
            )
    if not tensors:
        raise WeightsError(f"{display(path)} holds no weights")
    return tensors


def layer_names(tensors: dict[str, torch.Tensor]) -> set[str]:
    return {key.rsplit(".", 1)[0] for key in tensors}


def keras_family(tensors: dict[str, torch.Tensor]) -> tuple[str, bool]:
    """Our registry name of the Keras model whose layers these are, and whether it is a
    minimalistic V3 (no squeeze-excite), told by the layers' names."""
    names = layer_names(tensors)
    if "conv_dw_1" in names:
        return "mobilenet_v1", False
    if "Conv1" in names and "block_1_expand" in names:
        return "mobilenet_v2", False
    if "conv" in names and "expanded_conv_depthwise" in names:
        blocks = sum(1 for n in names if n.endswith("_project") and n.startswith("expanded_conv"))
        minimal = not any("squeeze_excite" in n for n in names)
        if blocks == 15:
            return "mobilenet_v3_large", minimal
        if blocks == 11:
            return "mobilenet_v3_small", minimal
    raise WeightsError(
        "the file's layers are not those of Keras applications' MobileNet, MobileNetV2, "
        f"MobileNetV3Large or MobileNetV3Small (layers: {', '.join(sorted(names)[:8])}, ...)"
    )


def keras_classes(tensors: dict[str, torch.Tensor], family: str) -> int:
    """The classifier's outputs (Keras's ``conv_preds``, ``predictions`` or ``logits``)."""
    layer = {"mobilenet_v1": "conv_preds", "mobilenet_v2": "predictions"}.get(family, "logits")
    weight = tensors.get(f"{layer}.weight")
    if weight is None:
        raise WeightsError(
            f"the file has no classifier layer {layer!r}: Keras models saved with "
            "include_top=False are not supported (convert the full model)"
        )
    return int(weight.shape[0])
