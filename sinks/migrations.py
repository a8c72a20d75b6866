"""Versioned DDL for every warehouse table, applied in order and recorded in ``schema_migrations``.

Append a new :class:`Migration` to change the schema; never edit one that has shipped. Tables that take
batched inserts set ``non_replicated_deduplication_window`` so that a retried insert carrying the same
``insert_deduplication_token`` is stored once, and use ``ReplacingMergeTree`` keyed on the row's identity
as a second line of defence.
"""

from __future__ import annotations

from dataclasses import dataclass

DEDUP_WINDOW = 10_000


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "events and failed_events",
        (
            f"""
            CREATE TABLE IF NOT EXISTS events (
                message_id String,
                type LowCardinality(String),
                event LowCardinality(String),
                anonymous_id String,
                user_id String,
                person_id String,
                session_id String,
                event_at DateTime64(3, 'UTC'),
                received_at DateTime64(3, 'UTC'),
                sent_at Nullable(DateTime64(3, 'UTC')),
                channel LowCardinality(String),
                campaign String,
                utm_source String,
                utm_medium String,
                utm_term String,
                utm_content String,
                referrer String,
                page_url String,
                page_path String,
                page_title String,
                ip String,
                user_agent String,
                locale LowCardinality(String),
                device_type LowCardinality(String),
                os_name LowCardinality(String),
                order_id String,
                revenue Nullable(Float64),
                currency LowCardinality(String),
                consent Map(String, Bool),
                properties String,
                traits String,
                source String,
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(event_at)
            ORDER BY (toDate(event_at), type, event, message_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS failed_events (
                message_id String,
                stage LowCardinality(String),
                error String,
                raw String,
                source String,
                received_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(received_at)
            ORDER BY (stage, source)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        2,
        "customer_value and high_value_alerts",
        (
            f"""
            CREATE TABLE IF NOT EXISTS customer_value (
                person_id String,
                recency_days Float64,
                frequency UInt32,
                monetary Float64,
                r_score UInt8,
                f_score UInt8,
                m_score UInt8,
                segment LowCardinality(String),
                p_alive Float64,
                expected_purchases Float64,
                expected_revenue Float64,
                currency LowCardinality(String),
                horizon_days Float64,
                model_version LowCardinality(String),
                computed_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY person_id
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS high_value_alerts (
                person_id String,
                expected_revenue Float64,
                threshold Float64,
                currency LowCardinality(String),
                reasons Array(String),
                alerted_at DateTime64(3, 'UTC'),
                model_version LowCardinality(String),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (alerted_at, person_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        3,
        "erasure_log and consent_refusals",
        (
            """
            CREATE TABLE IF NOT EXISTS erasure_log (
                request_id String,
                subject String,
                subjects Array(String),
                table LowCardinality(String),
                rows_removed UInt64,
                requested_at DateTime64(3, 'UTC'),
                erased_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (request_id, table)
            """,
            # Counts only: a refused event is never stored. Replays after a crash may count a batch twice.
            """
            CREATE TABLE IF NOT EXISTS consent_refusals (
                day Date,
                purpose LowCardinality(String),
                refused UInt64,
                schema_version UInt16
            )
            ENGINE = SummingMergeTree(refused)
            ORDER BY (day, purpose)
            """,
        ),
    ),
)

# Retention (``ALTER TABLE ... MODIFY TTL``, set from settings at every start): table -> time column and
# which setting bounds it. ``erasure_log`` is kept: it is what stops an erased id from coming back.
RETENTION: dict[str, tuple[str, str]] = {
    "events": ("event_at", "retention_days"),
    "failed_events": ("received_at", "failed_retention_days"),
    "customer_value": ("computed_at", "retention_days"),
    "high_value_alerts": ("alerted_at", "retention_days"),
    "consent_refusals": ("day", "retention_days"),
}

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""
