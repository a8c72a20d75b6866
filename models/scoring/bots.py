"""Bots and anomalous sessions: cheap rules for what is certainly a machine, an online detector for the rest.

Four pieces of evidence, each a probability-like number in [0, 1], combined by noisy-OR
(``score = 1 - prod(1 - e_i)``, so independent evidence accumulates and any single strong piece suffices):

* ``user_agent``: a known crawler, HTTP library or headless browser token (:data:`BOT_UA`) -> 0.98.
  Honest crawlers say who they are; a human browser never contains these tokens ("Cubot" phones excepted).
* ``machine_timing``: at least ``min_pages`` pages at under ``min_seconds_per_page`` each on average
  (``dwell_seconds / (page_views - 1)``, ``dwell_seconds`` being the session's first to latest event)
  -> 0.9. A person needs a second or two to even see a page; scrapers fetch several a second.
* ``no_human_signals``: at least ``min_pages`` pages with no scroll, no click and no engaged time -> 0.9.
  Pages without any of the signals a browser tab in front of a person emits.
* ``anomaly``: River's Half-Space Trees (Tan, Ting & Liu 2011) over eight scale-free session features,
  each mapped to [0, 1] with a fixed transform (``log1p`` over a fixed cap, or a share) rather than a
  running min-max: a running min-max is stretched by one freak session and then squeezes everyone else
  into a corner, while fixed bounds are known up front (HST needs bounded inputs) and cost nothing to learn.
  The raw HST score is not calibrated (with eight features most ordinary sessions score 0.6-0.8), so it is
  turned into its rank among the learned sessions' scores (:class:`models.scoring.engagement.HistogramCDF`;
  each session is scored just before it is learned), and only ranks above ``anomaly_quantile`` count:
  ``anomaly_weight * (rank - q) / (1 - q)``. Like the timing rules it needs ``min_pages`` pages (a live
  session of one or two events looks unlike any finished one) and it waits for one ``window_size`` of
  sessions to fill the trees and another to rank against. Its weight (0.45) is below the threshold on
  purpose: an unusual session is not necessarily a machine. Measured on simulator traffic
  (``benchmarks/behaviour.py``), the trees rank finished bot sessions above human ones almost perfectly,
  but scored at every event of every live session, the top 1% tail is reached by very deep, engaged
  human visits too (with ``anomaly_weight=0.6`` alone it flagged 32 of 21,000 human sessions). So by
  default it raises the score of a suspicious session without flagging it alone; raise ``anomaly_weight``
  above ``threshold`` to let it.

Learning: ``learn_one(x)`` feeds a finished session to the trees. Feed only sessions that are not flagged,
so the trees describe people and bots stay isolated; flagged sessions should also be kept out of every other
model's learning and out of attribution (the caller's job). The trees score with the masses of the last
complete window, so a window's sessions are walked into them when it ends (same scores, and the trees'
pickle is remade once a window rather than at every checkpoint). ``process_one`` returns one
``Alert(kind="bot")`` per session (it remembers the last ``remember_sessions`` flagged session ids).

>>> detector = BotDetector()
>>> human = {"events": 14.0, "page_views": 3.0, "dwell_seconds": 95.0, "engaged_seconds": 60.0,
...          "max_scroll_depth": 75.0, "clicks": 2.0}
>>> crawler = {"events": 25.0, "page_views": 25.0, "dwell_seconds": 12.0}
>>> detector.score_one(human, user_agent="Mozilla/5.0 (iPhone)"), detector.is_bot(crawler)
(0.0, True)
>>> detector.reasons(crawler, user_agent="python-requests/2.32.3")
['user agent python-requests', 'machine timing: 25 pages at 0.5 s/page', 'no scroll, click or engagement on 25 pages']
"""

from __future__ import annotations

import functools
import math
import pickle
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from river import anomaly

from models.scoring.engagement import HistogramCDF
from schemas.alerts import Alert

MODEL = "bots"
MODEL_VERSION = "bots-rules-hst.1"
BOT_UA = re.compile(
    r"(?<!cu)bot\b|crawl|spider|slurp|headless|python-requests|python-urllib|aiohttp|httpx|curl/|wget|scrapy"
    r"|go-http-client|okhttp|java/|libwww|apache-httpclient|phantomjs|selenium|puppeteer|playwright"
    r"|facebookexternalhit|lighthouse|pingdom|uptimerobot|axios/|node-fetch",
    re.IGNORECASE,
)
UA_EVIDENCE = 0.98


@functools.lru_cache(maxsize=4096)
def is_bot_user_agent(user_agent: str) -> bool:
    """Whether :data:`BOT_UA` matches. Memoised: the search takes ~28 us on a browser's user agent (case-
    insensitive alternation), it runs at every event of a session at a checked page count, and a site sees
    a few thousand distinct user agents, each with many events.

    >>> is_bot_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1)"), is_bot_user_agent("Mozilla/5.0 Cubot X30")
    (True, False)
    """
    return BOT_UA.search(user_agent) is not None


RULE_EVIDENCE = 0.9
# fixed caps of the log1p transforms: beyond them a feature is simply "very large" (1.0)
_CAPS = {
    "events": math.log1p(1000.0),
    "page_views": math.log1p(300.0),
    "seconds_per_page": math.log1p(3600.0),
    "events_per_page": math.log1p(50.0),
    "clicks_per_page": math.log1p(10.0),
    "commerce": math.log1p(100.0),
}
HST_FEATURES = (
    "events",
    "page_views",
    "seconds_per_page",
    "events_per_page",
    "clicks_per_page",
    "commerce",
    "engaged_share",
    "scroll",
)


def hst_features(x: Mapping[str, float]) -> dict[str, float]:
    """The anomaly detector's inputs, each in [0, 1] (see the module docstring).

    >>> round(hst_features({"events": 10.0, "page_views": 10.0, "dwell_seconds": 9.0})["seconds_per_page"], 4)
    0.0784
    """
    get = x.get
    pages = max(get("page_views", 0.0), 1.0)
    dwell = max(get("dwell_seconds", 0.0), 0.0)
    commerce = get("product_views", 0.0) + get("cart_adds", 0.0) + get("searches", 0.0)
    raw = {
        "events": math.log1p(max(get("events", 0.0), 0.0)) / _CAPS["events"],
        "page_views": math.log1p(max(get("page_views", 0.0), 0.0)) / _CAPS["page_views"],
        "seconds_per_page": math.log1p(dwell / pages) / _CAPS["seconds_per_page"],
        "events_per_page": math.log1p(max(get("events", 0.0), 0.0) / pages) / _CAPS["events_per_page"],
        "clicks_per_page": math.log1p(max(get("clicks", 0.0), 0.0) / pages) / _CAPS["clicks_per_page"],
        "commerce": math.log1p(max(commerce, 0.0)) / _CAPS["commerce"],
        "engaged_share": max(get("engaged_seconds", 0.0), 0.0) / max(dwell, 1.0),
        "scroll": max(get("max_scroll_depth", 0.0), 0.0) / 100.0,
    }
    return {k: min(max(v, 0.0), 1.0) for k, v in raw.items()}


class BotDetector:
    """Bot score per session snapshot: known user agents, machine timing, silence, and Half-Space Trees.

    ``score_one(x, user_agent=...)`` in [0, 1]; ``is_bot`` compares it with ``threshold``; ``reasons`` says
    why; ``process_one`` returns the session's alert the first time it is flagged; ``learn_one(x)`` teaches
    the anomaly detector a finished, unflagged session.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_pages: int = 5,
        min_seconds_per_page: float = 2.0,
        anomaly_weight: float = 0.45,
        anomaly_quantile: float = 0.99,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
        remember_sessions: int = 50_000,
    ) -> None:
        self.threshold = threshold
        self.min_pages = min_pages
        self.min_seconds_per_page = min_seconds_per_page
        self.anomaly_weight = anomaly_weight
        self.anomaly_quantile = anomaly_quantile
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.remember_sessions = remember_sessions
        # learned state
        self.n_learned = 0
        self.flagged: dict[str, None] = {}
        self.ranks = HistogramCDF(bins=1000, lo=0.0, hi=1.0)
        self._trees: Any = anomaly.HalfSpaceTrees(  # River's estimators carry no annotations
            n_trees=n_trees,
            height=height,
            window_size=window_size,
            limits=dict.fromkeys(HST_FEATURES, (0.0, 1.0)),
            seed=seed,
        )
        self._window: list[dict[str, float]] = []  # learned, not yet walked into the trees (see learn_one)
        self._trees_pickle: bytes | None = None  # the trees' pickle while they do not change

    def __getstate__(self) -> dict[str, Any]:
        """The trees change once a window (see :meth:`learn_one`), so their pickle (5,110 nodes, ~4 ms; the
        worker checkpoints this several times a second) is made once per window and reused."""
        state = dict(self.__dict__)
        if self._trees_pickle is None:
            self._trees_pickle = pickle.dumps(self._trees, protocol=pickle.HIGHEST_PROTOCOL)
        state["_trees"], state["_trees_pickle"] = self._trees_pickle, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        trees = state["_trees"]
        if isinstance(trees, bytes):
            state["_trees"], state["_trees_pickle"] = pickle.loads(trees), trees  # noqa: S301 - our own state
        state.setdefault("_window", [])  # pickled before the window was kept (every session walked at once)
        state.setdefault("_trees_pickle", None)
        self.__dict__.update(state)

    # -- evidence ------------------------------------------------------------------------------------------

    def _timing(self, x: Mapping[str, float]) -> float | None:
        """Mean seconds per page if the session has enough pages to judge, else None."""
        pages = x.get("page_views", 0.0)
        if pages < max(self.min_pages, 2):
            return None
        return max(x.get("dwell_seconds", 0.0), 0.0) / (pages - 1.0)

    def _silent(self, x: Mapping[str, float]) -> bool:
        return (
            x.get("page_views", 0.0) >= self.min_pages
            and x.get("clicks", 0.0) <= 0.0
            and x.get("max_scroll_depth", 0.0) <= 0.0
            and x.get("engaged_seconds", 0.0) <= 0.0
        )

    def anomaly_score(self, x: Mapping[str, float]) -> float:
        """The raw Half-Space Trees score in [0, 1]; 0.0 until one window of sessions has been learned."""
        if self.n_learned < self.window_size:
            return 0.0
        return float(self._trees.score_one(hst_features(x)))

    def anomaly_rank(self, x: Mapping[str, float]) -> float:
        """The HST score's rank among learned sessions with ``min_pages`` pages; 0.0 when not judged."""
        if x.get("page_views", 0.0) < self.min_pages or self.ranks.n < self.window_size:
            return 0.0
        return self.ranks.cdf(self.anomaly_score(x))

    def _anomaly_evidence(self, rank: float) -> float:
        q = self.anomaly_quantile
        return self.anomaly_weight * max(rank - q, 0.0) / (1.0 - q) if q < 1.0 else 0.0

    def score_one(self, x: Mapping[str, float], *, user_agent: str = "") -> float:
        """Bot score in [0, 1] of a session snapshot (noisy-OR of the evidence)."""
        keep = 1.0
        if user_agent and is_bot_user_agent(user_agent):
            keep *= 1.0 - UA_EVIDENCE
        seconds = self._timing(x)
        if seconds is not None and seconds < self.min_seconds_per_page:
            keep *= 1.0 - RULE_EVIDENCE
        if self._silent(x):
            keep *= 1.0 - RULE_EVIDENCE
        keep *= 1.0 - self._anomaly_evidence(self.anomaly_rank(x))
        return 1.0 - keep

    predict_one = score_one

    def is_bot(self, x: Mapping[str, float], *, user_agent: str = "") -> bool:
        return self.score_one(x, user_agent=user_agent) >= self.threshold

    def reasons(self, x: Mapping[str, float], *, user_agent: str = "") -> list[str]:
        """The evidence behind a score, strongest first (empty for a clean session)."""
        out = []
        match = BOT_UA.search(user_agent) if user_agent else None
        if match is not None:
            out.append(f"user agent {match.group(0)}")
        seconds = self._timing(x)
        if seconds is not None and seconds < self.min_seconds_per_page:
            out.append(f"machine timing: {x.get('page_views', 0.0):.0f} pages at {seconds:.1f} s/page")
        if self._silent(x):
            out.append(f"no scroll, click or engagement on {x.get('page_views', 0.0):.0f} pages")
        rank = self.anomaly_rank(x)
        if self._anomaly_evidence(rank) > 0.0:
            out.append(f"more unusual than {rank:.1%} of sessions (half-space trees)")
        return out

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Teach the anomaly detector one finished session (only sessions that were not flagged).

        Half-Space Trees score with the masses of the last complete window (``r_mass``); the current window's
        masses (``l_mass``) only steer a walk past a missing feature, and :func:`hst_features` never misses
        one. So the sessions of a window are walked into the trees together when it ends, which scores
        exactly as walking each at once does, and the trees change (and are pickled again) once a window.
        """
        z = hst_features(x)
        if self.n_learned >= self.window_size and x.get("page_views", 0.0) >= self.min_pages:
            self.ranks.learn_one(float(self._trees.score_one(z)))
        self._window.append(z)
        self.n_learned += 1
        if self.n_learned % self.window_size == 0:
            for seen in self._window:
                self._trees.learn_one(seen)
            self._window.clear()
            self._trees_pickle = None

    def process_one(
        self, x: Mapping[str, float], *, user_agent: str, person_id: str, session_id: str, at: datetime
    ) -> Alert | None:
        """The session's bot alert the first time its score reaches ``threshold`` (``at``: event time)."""
        if session_id in self.flagged:
            return None
        score = self.score_one(x, user_agent=user_agent)
        if score < self.threshold:
            return None
        self.flagged[session_id] = None
        while len(self.flagged) > self.remember_sessions:
            del self.flagged[next(iter(self.flagged))]
        return Alert.create(
            kind="bot",
            person_id=person_id,
            session_id=session_id,
            score=score,
            threshold=self.threshold,
            reasons=self.reasons(x, user_agent=user_agent),
            action="exclude_session",
            alerted_at=at,
            model=MODEL,
            model_version=MODEL_VERSION,
        )
