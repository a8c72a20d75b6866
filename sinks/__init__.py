"""Writers to ClickHouse (a server over HTTP, or embedded chDB) and the warehouse DDL."""

from sinks.clickhouse import ClickHouseSink, connect
from sinks.migrations import MIGRATIONS, Migration

__all__ = ["MIGRATIONS", "ClickHouseSink", "Migration", "connect"]
