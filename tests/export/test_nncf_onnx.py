"""NNCF's int8 made for ONNX Runtime's fused kernels (issue 27): exact rewriting, full fusion,
the default per graph, one-line failures."""

import numpy as np
import pytest

from mobilenets.errors import ConfigError, MobilenetsError
from mobilenets.export.nncf_onnx import quantized_classifier, run_nncf, unsigned_activations
from mobilenets.export.quantize import _quantizer


def _qdq_conv(zero: int):
    """x → Q/DQ (int8 activation, zero point ``zero``) → Conv (int8 per-channel weight) →
    Q/DQ (int8) → y: the shape of NNCF's graphs, small enough for ONNX's reference runtime."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s_x"),
        numpy_helper.from_array(np.array(zero, np.int8), "z_x"),
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(rng.uniform(1e-3, 1e-2, 4).astype(np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(4, np.int8), "z_w"),
        numpy_helper.from_array(np.array(0.05, np.float32), "s_y"),
        numpy_helper.from_array(np.array(-7, np.int8), "z_y"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s_x", "z_x"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s_y", "z_y"], ["c_q"]),
        helper.make_node("DequantizeLinear", ["c_q", "s_y", "z_y"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
        value_info=[helper.make_tensor_value_info("x_q", TensorProto.INT8, [1, 3, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_unsigned_activations_compute_exactly_what_the_int8_graph_did() -> None:
    """Each int8 activation becomes uint8 with zero point z + 128 (ONNX Runtime's x86 kernels
    read uint8 activations): the same grid, so the same outputs to the bit; weights stay int8."""
    from onnx import TensorProto, checker
    from onnx.numpy_helper import to_array
    from onnx.reference import ReferenceEvaluator

    model = _qdq_conv(zero=-5)
    x = np.random.default_rng(1).normal(0, 1.5, (1, 3, 8, 8)).astype(np.float32)
    before = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert unsigned_activations(model) == 2  # z_x and z_y; the weight's z_w stays
    checker.check_model(model, full_check=True)  # the Q outputs' types agree again
    zeros = {i.name: i for i in model.graph.initializer}
    assert zeros["z_x"].data_type == zeros["z_y"].data_type == TensorProto.UINT8
    assert int(to_array(zeros["z_x"])) == 123 and int(to_array(zeros["z_y"])) == 121
    assert zeros["z_w"].data_type == TensorProto.INT8
    after = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_array_equal(after, before)
    assert np.abs(before).max() > 1  # not a graph of zeros


def _classifier():
    """pooled features → Q/DQ (uint8) → Flatten → Gemm (int8 per-channel weight, float bias):
    NNCF's classifier, which ONNX Runtime runs in float."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    inits = [
        numpy_helper.from_array(np.array(0.03, np.float32), "s_x"),
        numpy_helper.from_array(np.array(0, np.uint8), "z_x"),
        numpy_helper.from_array(rng.integers(-127, 128, (10, 16)).astype(np.int8), "w_q"),
        numpy_helper.from_array(rng.uniform(1e-3, 1e-2, 10).astype(np.float32), "s_w"),
        numpy_helper.from_array(np.zeros(10, np.int8), "z_w"),
        numpy_helper.from_array(rng.normal(0, 0.5, 10).astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_x", "z_x"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s_x", "z_x"], ["x_dq"]),
        helper.make_node("Flatten", ["x_dq"], ["flat"]),
        helper.make_node("DequantizeLinear", ["w_q", "s_w", "z_w"], ["w"], axis=0),
        helper.make_node("Gemm", ["flat", "w", "bias"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 1, 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 10])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_the_classifier_becomes_one_int8_gemm_with_the_same_logits(tmp_path) -> None:
    """The Gemm gets its input dequantized right before it and an int32 bias: ONNX Runtime then
    runs it as a QGemm (before: float, dequantizing its weights on every call), with logits
    within a bias step of the reference runtime's (ONNX's)."""
    import onnx
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    model = _classifier()
    x = np.random.default_rng(3).uniform(0, 7, (2, 16, 1, 1)).astype(np.float32)
    before = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert quantized_classifier(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert "bias" not in {i.name for i in model.graph.initializer}  # the float bias is gone
    half_step = 0.03 * 1e-2 / 2 + 1e-5  # the int32 bias's rounding, at the largest s_w
    after = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=0, atol=half_step)
    assert np.abs(after - before).max() > 0  # the bias was rounded, so the check bites
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(model.SerializeToString(), options)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], before, rtol=0, atol=half_step)
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "QGemm" in ops and "Gemm" not in ops


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_the_default_int8_runs_every_convolution_in_onnx_runtimes_int8_kernels(
    int8_onnx, name: str, tmp_path
) -> None:
    """The default for a classifier is NNCF, and ONNX Runtime fuses every one of its
    convolutions into a QLinearConv and its classifier into a QGemm: nothing is left in float
    (NNCF as it writes its files left 34 of the real V2's 52 convolutions in float, 2.4× slower
    than fp32)."""
    import onnxruntime as ort

    from mobilenets.saved.onnx import load_onnx

    fp32, int8, report = int8_onnx[name]
    assert report.calibration.startswith("NNCF post-training quantization")
    convolutions = sum(n.op_type == "Conv" for n in load_onnx(fp32).graph.node)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in load_onnx(tmp_path / "optimized.onnx").graph.node]
    assert ops.count("QLinearConv") == convolutions > 20 and "Conv" not in ops
    assert ops.count("QGemm") == 1 and "Gemm" not in ops  # the classifier too


def test_the_default_quantizer_follows_the_task_and_the_graph() -> None:
    conv = {"Conv", "Clip", "Add"}
    assert _quantizer(None, "classification", None, conv) == "nncf"
    assert _quantizer(None, "classification", None, conv | {"HardSwish"}) == "onnxruntime"
    assert _quantizer(None, "segmentation", None, conv) == "onnxruntime"
    assert _quantizer(None, "detection", None, conv) == "onnxruntime"
    assert _quantizer(None, "classification", "minmax", conv) == "onnxruntime"
    assert _quantizer("nncf", "classification", None, conv | {"HardSwish"}) == "nncf"
    with pytest.raises(ConfigError, match=r"^--quantizer must be one of nncf, onnxruntime"):
        _quantizer("tensorrt", "classification", None, conv)


def test_an_nncf_failure_is_one_line(tmp_path) -> None:
    spec = {"fp32": str(tmp_path / "gone.onnx"), "samples": str(tmp_path / "gone.npy")}
    with pytest.raises(MobilenetsError, match=r"^NNCF's quantization failed: \S.*") as error:
        run_nncf(spec | {"out": str(tmp_path / "q.onnx"), "ignored": []}, tmp_path)
    assert "\n" not in str(error.value)
