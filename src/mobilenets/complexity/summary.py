"""One line per registered variant: parameters, mult-adds, default input size, paper table."""

from __future__ import annotations

from dataclasses import dataclass

from mobilenets.complexity.counter import profile
from mobilenets.models.registry import create_model, get_model_entry, list_models


@dataclass(frozen=True)
class ModelSummary:
    name: str
    params: int
    paper_params: int
    macs: int
    input_size: int
    paper: str


def summarize_models(pattern: str | None = None) -> list[ModelSummary]:
    """Count every registered variant (default keywords) at its default input size."""
    out = []
    for name in list_models(pattern):
        entry = get_model_entry(name)
        prof = profile(create_model(name), entry.input_size)
        out.append(
            ModelSummary(
                name, prof.total_params, prof.paper_params, prof.macs, entry.input_size, entry.paper
            )
        )
    return out
