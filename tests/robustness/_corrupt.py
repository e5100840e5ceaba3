"""Hypothesis strategies that damage a file the toolkit reads back, the way a crash, a disk
error or a person would: truncation, random bytes, another encoding, another top-level value,
and mutations at any place inside the JSON (a wrong type, NaN, ±inf, a negative or huge
number, a control character, a missing key, an unknown key)."""

from __future__ import annotations

import copy
import json

from hypothesis import strategies as st

HOSTILE = [
    None,
    True,
    "x",
    "",
    "\x1b[31m\nforged line",
    "a" * 5000,
    -1,
    0,
    2**64,
    -(2**63),
    1e308,
    -1e308,
    float("nan"),
    float("inf"),
    float("-inf"),
    0.5,
    [],
    {},
    [1, 2],
    {"a": 1},
]


def places(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys and indices) inside a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += places(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += places(item, (*prefix, index))
    return found


def _at(root: object, path: tuple) -> object:
    for part in path:
        root = root[part]
    return root


@st.composite
def mutated(draw: st.DrawFn, valid: object) -> object:
    """``valid`` with one place replaced by a hostile value, deleted, or given an unknown key."""
    value = copy.deepcopy(valid)
    path = draw(st.sampled_from(places(value)))
    action = draw(st.sampled_from(["replace", "delete", "extra"]))
    if not path:
        return draw(st.sampled_from(HOSTILE)) if action == "replace" else value
    parent = _at(value, path[:-1])
    if action == "replace":
        parent[path[-1]] = draw(st.sampled_from(HOSTILE))
    elif action == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "\x00", "model"]))] = draw(st.sampled_from(HOSTILE))
    else:
        parent.append(draw(st.sampled_from(HOSTILE)))
    return value


@st.composite
def damaged_bytes(draw: st.DrawFn, valid: object) -> bytes:
    """The JSON bytes of ``valid``, damaged in one of the ways a file gets damaged."""
    text = json.dumps(valid)
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "truncate", "bytes", "encoding"]))
    if kind == "truncate":
        return text.encode()[: draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "encoding":
        return text.encode(draw(st.sampled_from(["utf-16", "utf-32"])))
    return json.dumps(draw(mutated(valid))).encode()
