"""Small helpers shared by the CLI commands."""

from __future__ import annotations

import json
import sys


def print_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
