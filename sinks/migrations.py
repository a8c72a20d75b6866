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
            # Counts only: a refused event is never stored. (Version 8 adds the refused input's source.)
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

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        4,
        "identity and attribution",
        (
            f"""
            CREATE TABLE IF NOT EXISTS identity_links (
                anonymous_id String,
                user_id String,
                other_anonymous_id String,
                person_id String,
                method LowCardinality(String),
                score Float64,
                evidence String,
                linked_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (person_id, anonymous_id, user_id, other_anonymous_id, method)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS person_changes (
                kind LowCardinality(String),
                old_person_id String,
                new_person_id String,
                anonymous_ids Array(String),
                user_ids Array(String),
                reason LowCardinality(String),
                evidence String,
                changed_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (changed_at, old_person_id, new_person_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS probable_duplicates (
                user_id String,
                other_user_id String,
                person_id String,
                other_person_id String,
                method LowCardinality(String),
                score Float64,
                evidence String,
                detected_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree(detected_at)
            ORDER BY (user_id, other_user_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            # The current person of every device and account: the latest link that names it or change that
            # moved it (a merge or a split); at the same instant, a change wins over a link.
            """
            CREATE VIEW IF NOT EXISTS persons AS
            SELECT id, argMax(person_id, (at, rank)) AS person_id, max(at) AS updated_at
            FROM (
                SELECT anonymous_id AS id, person_id, linked_at AS at, 0 AS rank FROM identity_links
                WHERE anonymous_id != ''
                UNION ALL
                SELECT other_anonymous_id AS id, person_id, linked_at AS at, 0 AS rank FROM identity_links
                WHERE other_anonymous_id != ''
                UNION ALL
                SELECT user_id AS id, person_id, linked_at AS at, 0 AS rank FROM identity_links WHERE user_id != ''
                UNION ALL
                SELECT arrayJoin(arrayConcat(anonymous_ids, user_ids)) AS id, new_person_id AS person_id,
                       changed_at AS at, 1 AS rank
                FROM person_changes
            )
            GROUP BY id
            """,
            f"""
            CREATE TABLE IF NOT EXISTS attribution_credits (
                conversion_id String,
                person_id String,
                model LowCardinality(String),
                channel LowCardinality(String),
                campaign String,
                touch_index UInt16,
                credit Float64,
                revenue Float64,
                currency LowCardinality(String),
                event_at DateTime64(3, 'UTC'),
                model_version LowCardinality(String),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(event_at)
            ORDER BY (model, conversion_id, touch_index)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            """
            CREATE VIEW IF NOT EXISTS attribution_daily AS
            SELECT toDate(event_at) AS day, channel, campaign, model, currency,
                   sum(credit) AS attributed_revenue, uniqExact(conversion_id) AS conversions
            FROM attribution_credits
            GROUP BY day, channel, campaign, model, currency
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        5,
        "scores, sessions, model_metrics, alerts",
        (
            f"""
            CREATE TABLE IF NOT EXISTS scores (
                message_id String,
                person_id String,
                session_id String,
                model LowCardinality(String),
                model_version LowCardinality(String),
                score Float64,
                scored_at DateTime64(3, 'UTC'),
                latency_ms Float64,
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(scored_at)
            ORDER BY (message_id, model)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS sessions (
                session_id String,
                person_id String,
                anonymous_id String,
                started_at DateTime64(3, 'UTC'),
                ended_at DateTime64(3, 'UTC'),
                channel LowCardinality(String),
                device_type LowCardinality(String),
                events Float64,
                page_views Float64,
                product_views Float64,
                product_list_views Float64,
                cart_adds Float64,
                cart_removes Float64,
                cart_value Float64,
                checkout_starts Float64,
                checkout_failures Float64,
                searches Float64,
                dwell_seconds Float64,
                engaged_seconds Float64,
                max_scroll_depth Float64,
                clicks Float64,
                rage_clicks Float64,
                dead_clicks Float64,
                errors Float64,
                events_per_minute Float64,
                seconds_since_last_event Float64,
                visits_1h Float64,
                visits_7d Float64,
                visits_30d Float64,
                orders_30d Float64,
                orders_total Float64,
                days_since_last_order Float64,
                days_since_last_visit Float64,
                cart_abandons_7d Float64,
                purchased Bool,
                bot Bool,
                engagement Float64,
                propensity_first Float64,
                propensity Float64,
                model_version LowCardinality(String),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMM(started_at)
            ORDER BY (toDate(started_at), session_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS model_metrics (
                model LowCardinality(String),
                model_version LowCardinality(String),
                metric LowCardinality(String),
                value Float64,
                n UInt64,
                window String,
                computed_at DateTime64(3, 'UTC'),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (model, metric, window, computed_at)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            f"""
            CREATE TABLE IF NOT EXISTS alerts (
                alert_id String,
                kind LowCardinality(String),
                person_id String,
                session_id String,
                score Float64,
                threshold Float64,
                reasons Array(String),
                action LowCardinality(String),
                alerted_at DateTime64(3, 'UTC'),
                model LowCardinality(String),
                model_version LowCardinality(String),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (kind, alerted_at, alert_id)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        6,
        "marketing_spend, channel_daily, budget_recommendations",
        (
            f"""
            CREATE TABLE IF NOT EXISTS marketing_spend (
                day Date,
                channel LowCardinality(String),
                campaign String,
                cost Float64,
                currency LowCardinality(String),
                impressions UInt64,
                clicks UInt64,
                source String,
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree
            ORDER BY (day, channel, campaign)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
            # Per day and channel, for one attribution model at a time: spend, attributed revenue, ROAS, new
            # customers (first order of a person, credited to the channel by that model), CAC, and LTV:CAC with
            # LTV = the new customers' first-order revenue plus their current expected revenue (customer_value).
            """
            CREATE VIEW IF NOT EXISTS channel_daily AS
            WITH
                credits AS (
                    SELECT toDate(event_at) AS day, model, channel, conversion_id, person_id, sum(credit) AS credit,
                           any(revenue) AS revenue
                    FROM attribution_credits FINAL
                    GROUP BY day, model, channel, conversion_id, person_id
                ),
                firsts AS (
                    SELECT person_id, argMin(conversion_id, event_at) AS first_conversion
                    FROM attribution_credits FINAL GROUP BY person_id
                ),
                value AS (SELECT person_id, argMax(expected_revenue, computed_at) AS ltv FROM customer_value
                          GROUP BY person_id),
                revenue AS (
                    SELECT c.day AS day, c.model AS model, c.channel AS channel, sum(c.credit) AS attributed_revenue,
                           sumIf(c.credit / c.revenue, c.conversion_id = f.first_conversion) AS new_customers,
                           sumIf(c.credit / c.revenue * (c.revenue + ifNull(v.ltv, 0)),
                                 c.conversion_id = f.first_conversion) AS new_customer_ltv
                    FROM credits AS c
                    LEFT JOIN firsts AS f ON c.person_id = f.person_id
                    LEFT JOIN value AS v ON c.person_id = v.person_id
                    WHERE c.revenue > 0
                    GROUP BY day, model, channel
                ),
                spend AS (SELECT day, channel, sum(cost) AS spend FROM marketing_spend FINAL GROUP BY day, channel)
            SELECT r.day AS day, r.model AS model, r.channel AS channel, ifNull(s.spend, 0) AS spend,
                   r.attributed_revenue AS attributed_revenue,
                   if(spend > 0, attributed_revenue / spend, NULL) AS roas,
                   r.new_customers AS new_customers,
                   if(new_customers > 0, spend / new_customers, NULL) AS cac,
                   if(spend > 0, r.new_customer_ltv / spend, NULL) AS ltv_to_cac
            FROM revenue AS r
            LEFT JOIN spend AS s ON r.day = s.day AND r.channel = s.channel
            """,
            f"""
            CREATE TABLE IF NOT EXISTS budget_recommendations (
                day Date,
                channel LowCardinality(String),
                current_spend Float64,
                recommended_spend Float64,
                predicted_revenue Float64,
                predicted_change Float64,
                currency LowCardinality(String),
                reason String,
                computed_at DateTime64(3, 'UTC'),
                model_version LowCardinality(String),
                schema_version UInt16
            )
            ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY (day, channel)
            SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
            """,
        ),
    ),
)

# Journeys: views over ``events``, computed when queried. A session's path is its landing (the first
# event) followed by the funnel steps it reached, in time order, consecutive repeats collapsed: product
# (Product Viewed), cart (Product Added), checkout (Checkout Started), order (Order Completed). Funnel and
# transition counts are given per device type x channel and rolled up to 'all' of either or both.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        7,
        "journey views",
        (
            """
            CREATE VIEW IF NOT EXISTS journey_sessions AS
            SELECT
                session_id,
                min(event_at) AS started_at,
                toDate(started_at) AS day,
                argMin(device_type, event_at) AS device_type,
                argMin(channel, event_at) AS channel,
                arrayPushFront(arrayCompact(arrayMap(p -> p.2, arraySort(groupArrayIf((event_at, step), step > 1)))), 1)
                    AS path,
                arrayMax(path) AS deepest
            FROM (
                SELECT session_id, event_at, device_type, channel,
                       multiIf(event = 'Product Viewed', 2, event = 'Product Added', 3, event = 'Checkout Started', 4,
                               event = 'Order Completed', 5, 0) AS step
                FROM events WHERE session_id != ''
            )
            GROUP BY session_id
            """,
            """
            CREATE VIEW IF NOT EXISTS journey_funnel AS
            SELECT day, device_type, channel, count() AS sessions, countIf(deepest >= 2) AS product,
                   countIf(deepest >= 3) AS cart, countIf(deepest >= 4) AS checkout, countIf(deepest >= 5) AS orders
            FROM (
                SELECT day, deepest, segment.1 AS device_type, segment.2 AS channel
                FROM (
                    SELECT day, deepest,
                           arrayJoin([(device_type, channel), (device_type, 'all'), ('all', channel), ('all', 'all')])
                               AS segment
                    FROM journey_sessions
                )
            )
            GROUP BY day, device_type, channel
            """,
            """
            CREATE VIEW IF NOT EXISTS journey_transitions AS
            SELECT day, segment.1 AS device_type, segment.2 AS channel,
                   ['landing', 'product', 'cart', 'checkout', 'order'][from_code] AS from_step,
                   ['landing', 'product', 'cart', 'checkout', 'order', 'exit'][if(to_code = 0, 6, to_code)] AS to_step,
                   count() AS sessions
            FROM (
                SELECT day, from_code, to_code,
                       arrayJoin([(device_type, channel), (device_type, 'all'), ('all', channel), ('all', 'all')])
                           AS segment
                FROM journey_sessions
                ARRAY JOIN path AS from_code, arrayPushBack(arrayPopFront(path), 0) AS to_code
            )
            GROUP BY day, device_type, channel, from_step, to_step
            """,
            # Each step's drop-off (sessions that reached it and went no deeper) against its own baseline, the
            # same segment's previous 7 days; lost_sessions = entered x (drop-off - baseline drop-off) is what the
            # step cost today, and the step losing most is the segment's bottleneck of the day.
            """
            CREATE VIEW IF NOT EXISTS journey_steps AS
            WITH
                steps AS (
                    SELECT day, device_type, channel, step, step_index, entered, continued
                    FROM journey_funnel
                    ARRAY JOIN ['landing', 'product', 'cart', 'checkout'] AS step, [1, 2, 3, 4] AS step_index,
                               [sessions, product, cart, checkout] AS entered,
                               [product, cart, checkout, orders] AS continued
                ),
                based AS (
                    SELECT *, sum(entered) OVER w AS baseline_entered, sum(continued) OVER w AS baseline_continued
                    FROM steps
                    WINDOW w AS (PARTITION BY device_type, channel, step ORDER BY day
                                 RANGE BETWEEN 7 PRECEDING AND 1 PRECEDING)
                ),
                scored AS (
                    SELECT day, device_type, channel, step, step_index, entered, continued,
                           if(entered > 0, 1 - continued / entered, NULL) AS drop_off,
                           if(baseline_entered > 0, 1 - baseline_continued / baseline_entered, NULL)
                               AS baseline_drop_off,
                           baseline_entered,
                           if(entered > 0 AND baseline_entered > 0, entered * (drop_off - baseline_drop_off), 0)
                               AS lost_sessions
                    FROM based
                )
            SELECT *,
                   lost_sessions > 0
                   AND lost_sessions = max(lost_sessions) OVER (PARTITION BY day, device_type, channel) AS is_bottleneck
            FROM scored
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        8,
        "consent_refusals by source",
        (
            # One row per refused input, keyed by its source, so a replay after a crash is not counted twice
            # (the workers insert only sources not yet there). Earlier rows keep source = ''.
            """
            ALTER TABLE consent_refusals
                ADD COLUMN IF NOT EXISTS source String AFTER refused,
                MODIFY ORDER BY (day, purpose, source)
            """,
        ),
    ),
)

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        9,
        "identity decision order",
        (
            "ALTER TABLE identity_links ADD COLUMN IF NOT EXISTS seq UInt64 DEFAULT 0 AFTER linked_at",
            "ALTER TABLE person_changes ADD COLUMN IF NOT EXISTS seq UInt64 DEFAULT 0 AFTER changed_at",
            # The current person of every device and account: the one named by the last record the person
            # stage decided (``seq``; event time and, at the same instant, a change over a link for rows
            # written before ``seq`` existed). Event times arrive out of order, decisions do not.
            """
            CREATE OR REPLACE VIEW persons AS
            SELECT id, argMax(person_id, (seq, at, rank)) AS person_id, max(at) AS updated_at
            FROM (
                SELECT anonymous_id AS id, person_id, linked_at AS at, seq, 0 AS rank FROM identity_links
                WHERE anonymous_id != ''
                UNION ALL
                SELECT other_anonymous_id AS id, person_id, linked_at AS at, seq, 0 AS rank FROM identity_links
                WHERE other_anonymous_id != ''
                UNION ALL
                SELECT user_id AS id, person_id, linked_at AS at, seq, 0 AS rank FROM identity_links
                WHERE user_id != ''
                UNION ALL
                SELECT arrayJoin(arrayConcat(anonymous_ids, user_ids)) AS id, new_person_id AS person_id,
                       changed_at AS at, seq, 1 AS rank
                FROM person_changes
            )
            GROUP BY id
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
    "identity_links": ("linked_at", "retention_days"),
    "person_changes": ("changed_at", "retention_days"),
    "probable_duplicates": ("detected_at", "retention_days"),
    "attribution_credits": ("event_at", "retention_days"),
    "scores": ("scored_at", "retention_days"),
    "sessions": ("started_at", "retention_days"),
    "model_metrics": ("computed_at", "retention_days"),
    "alerts": ("alerted_at", "retention_days"),
    "marketing_spend": ("day", "retention_days"),
    "budget_recommendations": ("day", "retention_days"),
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
