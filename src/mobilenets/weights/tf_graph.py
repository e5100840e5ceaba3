"""A TensorFlow frozen graph (``frozen_inference_graph.pb``) read without TensorFlow.

The TF Object Detection API exports its detectors as a frozen ``GraphDef``: every variable is a
``Const`` node holding its value. This module parses the file with ``protobuf`` against the
part of TensorFlow's own schema it needs (``graph.proto``, ``node_def.proto``,
``attr_value.proto``, ``tensor.proto``, ``tensor_shape.proto``; same field numbers, so the wire
format is TensorFlow's and every field it does not name is skipped), and gives back the nodes
by name: their op, inputs and attributes, and the constants as NumPy arrays.

The file is data from elsewhere: it is parsed, never executed, and a file that is not a
``GraphDef`` (or is one holding malformed constants) is one line saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from mobilenets.errors import WeightsError, display
from mobilenets.fileio import require_file

#: The largest file read (protobuf's own limit is 2 GiB; a MobileNet detector is ~20 MB).
MAX_GRAPH_BYTES = 1 << 30
#: The most values one constant may hold (a MobileNet's largest holds ~1.3 M; a splat, one
#: stored value for a whole shape, is expanded only up to this).
MAX_CONSTANT_VALUES = 1 << 26
#: TensorFlow's ``DataType`` codes of the constants we read (``types.proto``).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}


@cache
def _graph_message() -> type:
    """The ``GraphDef`` message class, from TensorFlow's field numbers (only what is read)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field_type = descriptor_pb2.FieldDescriptorProto
    one, many = field_type.LABEL_OPTIONAL, field_type.LABEL_REPEATED
    i32, i64, f32 = field_type.TYPE_INT32, field_type.TYPE_INT64, field_type.TYPE_FLOAT
    text, raw, flag, sub = (
        field_type.TYPE_STRING,
        field_type.TYPE_BYTES,
        field_type.TYPE_BOOL,
        field_type.TYPE_MESSAGE,
    )
    messages = {  # message: (field, number, type, label, message type)
        "Dim": [("size", 1, i64, one), ("name", 2, text, one)],
        "Shape": [("dim", 2, sub, many, "Dim"), ("unknown_rank", 3, flag, one)],
        "Tensor": [
            ("dtype", 1, i32, one),
            ("tensor_shape", 2, sub, one, "Shape"),
            ("tensor_content", 4, raw, one),
            ("float_val", 5, f32, many),
            ("double_val", 6, field_type.TYPE_DOUBLE, many),
            ("int_val", 7, i32, many),
            ("int64_val", 10, i64, many),
            ("bool_val", 11, flag, many),
        ],
        "List": [("s", 2, raw, many), ("i", 3, i64, many), ("f", 4, f32, many)],
        "Attr": [
            ("list", 1, sub, one, "List"),
            ("s", 2, raw, one),
            ("i", 3, i64, one),
            ("f", 4, f32, one),
            ("b", 5, flag, one),
            ("tensor", 8, sub, one, "Tensor"),
        ],
        "AttrEntry": [("key", 1, text, one), ("value", 2, sub, one, "Attr")],  # map<string, Attr>
        "Node": [
            ("name", 1, text, one),
            ("op", 2, text, one),
            ("input", 3, text, many),
            ("attr", 5, sub, many, "AttrEntry"),
        ],
        "Graph": [("node", 1, sub, many, "Node")],
    }
    proto = descriptor_pb2.FileDescriptorProto(
        name="mobilenets_tf_graph.proto", package="mobilenets_tf", syntax="proto3"
    )
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for spec in fields:
            added = message.field.add(name=spec[0], number=spec[1], type=spec[2], label=spec[3])
            if len(spec) == 5:
                added.type_name = f".mobilenets_tf.{spec[4]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("mobilenets_tf.Graph"))


@dataclass(frozen=True)
class Node:
    """One node of the graph: its op, its inputs (``name`` or ``name:k``), its attributes."""

    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(repr=False)

    def attr(self, key: str, kind: str) -> object:
        """The attribute ``key`` read as ``kind``: ``"s"`` (text), ``"i"``, ``"f"``, ``"b"``, or
        ``"list"`` (its integers, as a tuple)."""
        value = self.attrs.get(key)
        if value is None:
            raise WeightsError(f"node {display(self.name)} ({self.op}) has no attribute {key!r}")
        if kind == "s":
            return value.s.decode("utf-8", "replace")
        if kind == "list":
            return tuple(value.list.i)
        return getattr(value, kind)


class FrozenGraph:
    """The nodes of a frozen ``GraphDef`` by name, and its constants as arrays."""

    def __init__(self, path: str | Path) -> None:
        path = require_file(path, "a TensorFlow frozen graph (.pb)")
        size = path.stat().st_size
        if size > MAX_GRAPH_BYTES:
            raise WeightsError(
                f"{display(path)} is {size / 2**30:.1f} GiB: larger than any MobileNet graph "
                f"(at most {MAX_GRAPH_BYTES >> 30} GiB is read)"
            )
        from google.protobuf.message import DecodeError

        graph = _graph_message()()
        try:
            graph.ParseFromString(path.read_bytes())
        except (DecodeError, RuntimeError, ValueError):
            raise WeightsError(
                f"{display(path)} is not a TensorFlow GraphDef (its bytes are not that protobuf "
                "message); convert --from tf-ssd takes an Object Detection API "
                "frozen_inference_graph.pb"
            ) from None
        self.path = path
        self.nodes: dict[str, Node] = {}
        for node in graph.node:
            attrs = {entry.key: entry.value for entry in node.attr}
            self.nodes[node.name] = Node(node.name, node.op, tuple(node.input), attrs)
        if not self.nodes:
            raise WeightsError(
                f"{display(path)} holds no graph nodes; convert --from tf-ssd takes an Object "
                "Detection API frozen_inference_graph.pb"
            )

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def node(self, name: str) -> Node:
        found = self.nodes.get(name)
        if found is None:
            raise WeightsError(f"{display(self.path)} has no node {display(name)}")
        return found

    def constant(self, name: str) -> np.ndarray:
        """The value of the ``Const`` node ``name`` (also through an ``Identity`` read)."""
        node = self.node(name)
        while node.op == "Identity" and node.inputs:
            node = self.node(node.inputs[0])
        if node.op != "Const":
            raise WeightsError(f"node {display(name)} is a {node.op}, not a constant")
        tensor = node.attrs["value"].tensor if "value" in node.attrs else None
        dtype = _DTYPES.get(tensor.dtype) if tensor is not None else None
        if dtype is None:
            raise WeightsError(f"constant {display(name)} has a type we do not read")
        shape = tuple(int(d.size) for d in tensor.tensor_shape.dim)
        count = math.prod(shape)  # Python integers: a hostile shape cannot overflow
        if any(d < 0 for d in shape) or count > MAX_CONSTANT_VALUES:
            raise WeightsError(
                f"constant {display(name)} has shape {shape}: dimensions must be ≥ 0 and hold "
                f"at most {MAX_CONSTANT_VALUES} values"
            )
        if tensor.tensor_content:
            values = np.frombuffer(tensor.tensor_content, dtype=dtype)
        else:
            repeated = {
                np.float32: tensor.float_val,
                np.float64: tensor.double_val,
                np.int32: tensor.int_val,
                np.int64: tensor.int64_val,
                np.bool_: tensor.bool_val,
            }[dtype]
            values = np.asarray(repeated, dtype=dtype)
            if values.size == 1 and count > 1:  # TF stores a splat as its one value
                values = np.full(count, values[0], dtype=dtype)
        if values.size != count:
            raise WeightsError(
                f"constant {display(name)} holds {values.size} values for shape {shape}"
            )
        return values.reshape(shape).copy()

    def names(self, prefix: str = "") -> list[str]:
        return [name for name in self.nodes if name.startswith(prefix)]
