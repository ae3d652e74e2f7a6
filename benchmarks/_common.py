"""What every benchmark shares: the repository root on ``sys.path`` (so that a benchmark
runs from a clean checkout without installing), and one JSON line per figure.

A benchmark imports it first: ``from _common import ROOT, emit``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def emit(metric: str, value: float, unit: str, **extra) -> None:
    """Print one figure as a JSON line: ``{"metric", "value" (6 significant digits), "unit", ...}``."""
    print(json.dumps({"metric": metric, "value": float(f"{float(value):.6g}"), "unit": unit, **extra}), flush=True)
