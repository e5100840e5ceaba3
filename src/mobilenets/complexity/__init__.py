"""Parameters and multiply-adds per layer and per layer kind, and the papers' figures."""

from mobilenets.complexity.counter import LayerRow, Profile, SeparableCost, layer_kind, profile

__all__ = ["LayerRow", "Profile", "SeparableCost", "layer_kind", "profile"]
