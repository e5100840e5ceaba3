"""torchao's conv + BatchNorm rewrites for quantization-aware training, without their waste.

``prepare_qat_pt2e`` and ``convert_pt2e`` find a QAT network's conv + BatchNorm pairs by
subgraph matching: each pattern is first captured with ``torch.export`` (about 0.28 s each on
the 2-core VNNI Xeon), for four kinds of convolution (1-D, 2-D and both transposed), 24 patterns
to prepare and 96 to convert (and XNNPACK's QAT annotation captures 12 more). A MobileNet has
2-D convolutions only; the other kinds' patterns cannot match it, yet cost most of the time: 14.5
s to prepare and 28.7 s to convert a two-layer network, every time.

:func:`install` changes two things in torchao (and in XNNPACK's quantizer, which imports its
pattern capture), neither the result:

- a rewrite for a kind of convolution the graph does not hold returns the graph as it is (the
  pattern would match nothing);
- a pattern captured once in a process is reused (a deep copy each time): the same pattern
  function (code and closure), the same example shapes and dtypes, the same other arguments.

If torchao's internals change shape, :func:`install` leaves them alone (slower, the same).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

#: The operator each kind of convolution leaves in an exported graph.
_CONVOLUTIONS: dict[Callable, str] = {
    F.conv1d: "aten.conv1d.default",
    F.conv2d: "aten.conv2d.default",
    F.conv_transpose1d: "aten.conv_transpose1d.input",
    F.conv_transpose2d: "aten.conv_transpose2d.input",
}
_HELPERS = ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper")
_CAPTURE = "_get_aten_graph_module_for_pattern"
#: Where the pattern capture is called from, by its imported name.
_CAPTURE_USERS = (
    "torchao.quantization.pt2e.utils",
    "torchao.quantization.pt2e.qat_utils",
    "executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils",
)


@functools.cache
def install() -> bool:
    """Speed up torchao's conv + BN rewrites in this process; whether it could."""
    import importlib

    from torchao.quantization.pt2e import qat_utils, utils

    capture = getattr(utils, _CAPTURE, None)
    users = [importlib.import_module(name) for name in _CAPTURE_USERS]
    if not callable(capture) or not all(callable(getattr(qat_utils, n, None)) for n in _HELPERS):
        return False
    for name in _HELPERS:
        setattr(qat_utils, name, _only_present_convolutions(getattr(qat_utils, name)))
    captured_once = _captured_once(capture)
    for module in users:
        if getattr(module, _CAPTURE, None) is capture:
            setattr(module, _CAPTURE, captured_once)
    return True


def _only_present_convolutions(rewrite: Callable) -> Callable:
    @functools.wraps(rewrite)
    def wrapper(m: torch.fx.GraphModule, conv_fn: Callable, *args: Any, **kwargs: Any) -> Any:
        op = _CONVOLUTIONS.get(conv_fn)
        if op is not None and all(str(node.target) != op for node in m.graph.nodes):
            return m
        return rewrite(m, conv_fn, *args, **kwargs)

    return wrapper


def _captured_once(capture: Callable) -> Callable:
    cache: dict[tuple, torch.fx.GraphModule] = {}

    @functools.wraps(capture)
    def wrapper(pattern: Callable, example_inputs: tuple, is_cuda: bool = False, **kwargs: Any):
        try:
            key = _pattern_key(pattern, example_inputs, is_cuda, kwargs)
            hash(key)
        except (AttributeError, TypeError):  # not a plain function of hashable settings
            return capture(pattern, example_inputs, is_cuda, **kwargs)
        if key not in cache:
            cache[key] = capture(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(cache[key])

    wrapper.cache = cache
    return wrapper


def _pattern_key(pattern: Callable, example_inputs: tuple, is_cuda: bool, kwargs: dict) -> tuple:
    """What a captured pattern depends on: its code and closure, the example inputs' shapes and
    dtypes (not their values: a pattern has no data-dependent branch), the other arguments."""
    if isinstance(pattern, torch.nn.Module):  # torchao's WrapperModule(fn), nothing else
        if type(pattern).__name__ != "WrapperModule" or list(pattern.state_dict()):
            raise TypeError("not a wrapped pattern function")
        pattern = pattern.fn
    cells = tuple(cell.cell_contents for cell in pattern.__closure__ or ())
    settings = tuple(sorted((name, _shape_of(value)) for name, value in kwargs.items()))
    return pattern.__code__, cells, _shape_of(example_inputs), is_cuda, settings


def _shape_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, (tuple, list)):
        return tuple(_shape_of(item) for item in value)
    return value
