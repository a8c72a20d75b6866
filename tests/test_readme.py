"""The README's SQL examples run against a warehouse filled by the embedded pipeline."""

from __future__ import annotations

import io
import re

import pytest

from sinks import ClickHouseSink
from streams.embedded import EmbeddedRunner, ndjson_lines
from streams.pipeline import Pipeline
from streams.settings import Settings
from tests.conftest import ROOT, segment


def readme_queries() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if s and not all(line.startswith("--") for line in s.splitlines())]


def test_readme_has_queries() -> None:
    assert len(readme_queries()) >= 3


@pytest.mark.parametrize("query", readme_queries())
def test_readme_query_runs(query: str, warehouse_dsn: str) -> None:
    order = segment(type="track", event="Order Completed", properties={"order_id": "o1", "revenue": 12.5})
    data = b"\n".join([segment(messageId="a"), order, b"broken"])
    with ClickHouseSink(dsn=warehouse_dsn) as sink:
        sink.migrate()
        EmbeddedRunner(pipeline=Pipeline(Settings()), sink=sink).run(ndjson_lines(io.BytesIO(data), "readme"))
        rows = sink.query(query).result_rows
    assert rows
