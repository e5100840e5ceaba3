"""Keras applications' MobileNets converted by ``mobilenets convert --from keras``: outputs equal
to Keras's (torch backend, no TensorFlow) at 224 px and at an odd size, in PyTorch and in ONNX
Runtime, with BN statistics randomised; and timm's ``tf_mobilenetv3_*`` ports.

Keras pads stride-2 convs as TensorFlow's "same" (V1: a fixed (0, 1) before each stride-2
depthwise conv): every comparison is also made with our default symmetric padding, which must
*differ*, so the equality cannot come from padding that happens not to matter.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported: no TensorFlow needed

import keras
import numpy as np
import pytest
import torch

from mobilenets.cli.main import main
from mobilenets.models import create_model
from mobilenets.weights import load

TOLERANCE = 1e-4
CASES = [
    *[("MobileNet", a, False) for a in (0.25, 0.5, 0.75, 1.0)],
    *[("MobileNetV2", a, False) for a in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)],
    *[
        (f"MobileNetV3{size}", a, m)
        for size in ("Large", "Small")
        for a in (0.75, 1.0)
        for m in (False, True)
    ],
]
OURS = {
    "MobileNet": "mobilenet_v1",
    "MobileNetV2": "mobilenet_v2",
    "MobileNetV3Large": "mobilenet_v3_large",
    "MobileNetV3Small": "mobilenet_v3_small",
}


def randomised(model: keras.Model, seed: int = 0) -> keras.Model:
    """Every BN's affine terms and every bias drawn at random (Keras's initial ones and zeros
    would hide a mismatched or transposed tensor); the BN statistics follow in
    :func:`calibrated`."""
    rng = np.random.default_rng(seed)
    draw = {
        "gamma": lambda shape: rng.uniform(0.5, 1.5, shape),
        "beta": lambda shape: rng.normal(0.0, 0.2, shape),
        "bias": lambda shape: rng.normal(0.0, 0.2, shape),
    }
    for layer in model.layers:
        values = layer.get_weights()
        if values:
            drawn = [
                draw[v.name](x.shape) if v.name in draw else x
                for x, v in zip(values, layer.weights, strict=True)
            ]
            layer.set_weights([np.asarray(v, dtype="float32") for v in drawn])
    return model


def calibrated(model: keras.Model, tmp_path) -> keras.Model:
    """Each BN's moving statistics set to its input's statistics on the photographs, as in a
    trained network (random statistics let the signal fade until every image gives the same
    logits, and a comparison of logits would prove nothing). Computed in one pass of our
    converted network (BN in training mode), written back into the Keras layers by name."""
    from mobilenets.weights import convert_keras, key_map

    source = tmp_path / "uncalibrated.weights.h5"
    model.save_weights(source)
    net, info = convert_keras(source)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # the plain average of what it sees: this one batch
    net.train()
    with torch.no_grad():
        net(normalised(images(model.input_shape[1]), info))
    mapping = key_map("keras", net)
    state = net.state_dict()
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            layer = model.get_layer(mapping[f"{name}.weight"].rsplit(".", 1)[0])
            gamma, beta, _, _ = layer.get_weights()
            mean = state[f"{name}.running_mean"].numpy()
            var = state[f"{name}.running_var"].numpy()
            layer.set_weights([gamma, beta, mean, var])
    return model


PREPROCESS = {  # each application's own preprocess_input (V3's rescaling is inside the model)
    "MobileNet": keras.applications.mobilenet.preprocess_input,
    "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
    "MobileNetV3Large": keras.applications.mobilenet_v3.preprocess_input,
    "MobileNetV3Small": keras.applications.mobilenet_v3.preprocess_input,
}


def keras_logits(model: keras.Model, family: str, pixels: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(PREPROCESS[family](pixels.copy()), verbose=0))


def keras_model(family: str, alpha: float, minimal: bool, size: int, tmp_path) -> keras.Model:
    kwargs = {"minimalistic": minimal} if family.startswith("MobileNetV3") else {}
    keras.utils.set_random_seed(0)  # Keras's initial kernels: the same every run
    build = getattr(keras.applications, family)
    model = build(
        weights=None,
        alpha=alpha,
        input_shape=(size, size, 3),
        classifier_activation=None,
        **kwargs,
    )
    return calibrated(randomised(model), tmp_path)


def images(size: int) -> np.ndarray:
    """Two photographs (scikit-image's astronaut and cat), ``size`` px square, pixels in
    [0, 255], NHWC as Keras applications take them. (Noise would not do: pooled over the
    image, any two noise images give the same logits.)"""
    from skimage import data
    from skimage.transform import resize

    photos = [data.astronaut(), data.chelsea()]
    return np.stack(
        [resize(p, (size, size), preserve_range=True, anti_aliasing=True) for p in photos]
    ).astype("float32")


def normalised(pixels: np.ndarray, info) -> torch.Tensor:
    """NHWC pixels in [0, 255] → the NCHW input our network takes, by its stored mean/std."""
    x = torch.from_numpy(pixels / 255.0).permute(0, 3, 1, 2).float()
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    return (x - mean) / std


def our_logits(net: torch.nn.Module, pixels: np.ndarray, info) -> np.ndarray:
    """Our network on the same pixels, through the preprocessing stored with the weights."""
    with torch.no_grad():
        return net.eval()(normalised(pixels, info)).numpy()


def assert_equal_logits(ours: np.ndarray, expected: np.ndarray) -> None:
    """Within ``TOLERANCE`` (relative to the logits' scale, at least 1), and the two photographs
    give different logits, so the comparison is not between two constants."""
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(ours - expected).max() <= TOLERANCE * scale
    assert np.abs(expected[0] - expected[1]).max() > 1000 * TOLERANCE * scale


def convert(tmp_path, model: keras.Model, name: str = "m.weights.h5") -> tuple:
    source = tmp_path / name
    if name.endswith(".weights.h5"):
        model.save_weights(source)
    else:
        model.save(source)
    out = tmp_path / "m.safetensors"
    assert main(["convert", "--from", "keras", str(source), "--out", str(out)]) == 0
    return load(out)


@pytest.mark.parametrize(("family", "alpha", "minimal"), CASES)
def test_keras_weights_give_keras_outputs_at_224_px(tmp_path, family, alpha, minimal) -> None:
    model = keras_model(family, alpha, minimal, 224, tmp_path)
    net, info = convert(tmp_path, model)
    assert info.model == OURS[family] and info.kwargs["width_mult"] == alpha
    assert info.mean == info.std == (0.5, 0.5, 0.5)  # x / 127.5 - 1
    pixels = images(224)
    expected = keras_logits(model, family, pixels)
    assert_equal_logits(our_logits(net, pixels, info), expected)
    symmetric = create_model(info.model, **{**info.kwargs, "padding": "symmetric"})
    symmetric.load_state_dict(net.state_dict())
    assert np.abs(our_logits(symmetric, pixels, info) - expected).max() > 100 * TOLERANCE


@pytest.mark.parametrize(
    ("family", "alpha", "minimal"),
    [
        ("MobileNet", 0.25, False),
        ("MobileNetV2", 0.35, False),
        ("MobileNetV3Large", 0.75, False),
        ("MobileNetV3Small", 1.0, True),
    ],
)
def test_keras_weights_at_an_odd_size_in_pytorch_and_onnx_runtime(
    tmp_path, family, alpha, minimal
) -> None:
    """225 px: TensorFlow pads the stride-2 convs of V2/V3 symmetrically at odd sizes, Keras's
    V1 still (0, 1); both follow the size at run time, also in the exported ONNX graph."""
    size = 225
    model = keras_model(family, alpha, minimal, size, tmp_path)
    net, info = convert(tmp_path, model)
    pixels = images(size)
    expected = keras_logits(model, family, pixels)
    assert_equal_logits(our_logits(net, pixels, info), expected)

    onnx_file = tmp_path / "m.onnx"
    assert (
        main(
            [
                "export",
                str(tmp_path / "m.safetensors"),
                "--resolution",
                str(size),
                "--out",
                str(onnx_file),
            ]
        )
        == 0
    )
    session, onnx_info = load(onnx_file)  # ONNX Runtime
    with torch.no_grad():
        exported = np.concatenate(
            [session(normalised(pixels[i : i + 1], onnx_info)).numpy() for i in range(2)]
        )
    assert_equal_logits(exported, expected)


@pytest.mark.parametrize("name", ["m.h5", "m.keras"])
def test_legacy_h5_and_keras_archive(tmp_path, name) -> None:
    """``model.save("m.h5")`` (Keras 2's HDF5 layout, as the published weight files) and
    ``model.save("m.keras")`` (a zip) convert like ``.weights.h5``."""
    model = keras_model("MobileNetV2", 0.5, False, 224, tmp_path)
    net, info = convert(tmp_path, model, name)
    pixels = images(224)
    assert_equal_logits(our_logits(net, pixels, info), keras_logits(model, "MobileNetV2", pixels))


@pytest.mark.parametrize(
    "timm_name",
    ["tf_mobilenetv3_large_100", "tf_mobilenetv3_small_075", "tf_mobilenetv3_large_minimal_100"],
)
def test_timm_tf_ports_convert_with_tf_padding(timm_name) -> None:
    import timm

    from mobilenets.weights import convert_state_dict, timm_target

    reference = timm.create_model(timm_name, pretrained=False)
    generator = torch.Generator().manual_seed(0)
    for module in reference.modules():  # random affine terms, statistics from the photographs
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5, generator=generator)
            module.bias.data.normal_(0, 0.2, generator=generator)
            module.reset_running_stats()
            module.momentum = None
    for size in (224, 225):
        x = (torch.from_numpy(images(size) / 255.0).permute(0, 3, 1, 2).float() - 0.5) / 0.5
        with torch.no_grad():
            if size == 224:
                reference.train()(x)
                reference.eval()
                ours = convert_state_dict(reference.state_dict(), timm_target(timm_name))
                assert ours.model_kwargs["padding"] == "tf_same"
            assert_equal_logits(ours(x).numpy(), reference(x).numpy())
