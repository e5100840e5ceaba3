"""mobilenets: the MobileNet family (V1, V2, V3), faithful to the papers, with exact complexity."""

from mobilenets.complexity import profile
from mobilenets.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models", "profile"]
