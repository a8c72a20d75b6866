"""Reproducible benchmarks; each prints its figures and can write them to a JSON file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson


def figures_json(figures: Mapping[str, Any], path: Path | None) -> str:
    """The figures as indented JSON; also written to ``path`` (its folder created) when one is given."""
    text = orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
    return text.decode()
