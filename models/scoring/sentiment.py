"""Sentiment of short customer feedback: VADER, a few e-commerce words, and clauses scored one at a time.

VADER (Hutto & Gilbert 2014, ``vaderSentiment``) is a lexicon and rules tuned on social media; on shop
feedback it stumbles twice, and :class:`FeedbackSentiment` patches both, the way VADER's documentation
suggests (by extending ``analyzer.lexicon``) or around it:

* words about speed, stability and price that the lexicon lacks ("slow", "laggy", "crashed", "pricey",
  "smooth", "quick"): :data:`DOMAIN_LEXICON`, valences on VADER's -4..4 scale next to its neighbours
  ("sluggish" -1.7, "easy" 1.9). "freezing" is re-scored: the lexicon's -0.4 is the weather;
* VADER's negation looks back three tokens regardless of punctuation, so in "does not work, very
  frustrating" the "not" flips "frustrating" to positive (+0.39 on the whole text). Scoring each clause
  (split on ``, ; : . ! ?``) and averaging the clauses that carry any sentiment keeps a negation inside its
  clause (-0.49 here); neutral clauses do not dilute the others.

The result is VADER's ``compound`` in [-1, 1] (above 0.05 positive, below -0.05 negative by VADER's
convention). The analyzer loads its lexicon once per process (per ``lexicon``) and is not part of the
pickled state.

>>> sentiment = FeedbackSentiment()
>>> sentiment("The coupon code does not work, very frustrating.") < -0.05 < 0.05 < sentiment("Great, thanks!")
True
>>> sentiment(""), sentiment("Just browsing for now.")
(0.0, 0.0)
"""

from __future__ import annotations

import functools
import re

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

DOMAIN_LEXICON: tuple[tuple[str, float], ...] = (
    ("slow", -1.5),
    ("laggy", -1.5),
    ("freezing", -1.5),
    ("freezes", -1.5),
    ("froze", -1.5),
    ("crash", -1.7),
    ("crashed", -1.7),
    ("crashes", -1.7),
    ("buggy", -1.6),
    ("glitchy", -1.6),
    ("clunky", -1.3),
    ("unusable", -2.2),
    ("declined", -1.2),
    ("overpriced", -1.5),
    ("pricey", -0.8),
    ("irrelevant", -1.0),
    ("smooth", 1.5),
    ("seamless", 1.6),
    ("intuitive", 1.4),
    ("quick", 1.0),
    ("fast", 1.0),
)
_CLAUSES = re.compile(r"[,;:.!?]+")
_NEUTRAL = 1e-9


@functools.cache
def _analyzer(lexicon: tuple[tuple[str, float], ...]) -> SentimentIntensityAnalyzer:
    analyzer = SentimentIntensityAnalyzer()
    analyzer.lexicon.update(dict(lexicon))
    return analyzer


class FeedbackSentiment:
    """Callable: feedback text -> VADER compound in [-1, 1] (0.0 for empty or neutral text).

    ``lexicon``: extra or overriding ``(word, valence)`` pairs; ``clauses``: score clause by clause (see the
    module docstring) rather than the whole text at once.
    """

    __slots__ = ("clauses", "lexicon")

    def __init__(self, *, lexicon: tuple[tuple[str, float], ...] = DOMAIN_LEXICON, clauses: bool = True) -> None:
        self.lexicon = lexicon
        self.clauses = clauses

    def __call__(self, text: str) -> float:
        analyzer = _analyzer(self.lexicon)
        if not self.clauses:
            return float(analyzer.polarity_scores(text)["compound"])
        scores = [analyzer.polarity_scores(part)["compound"] for part in _CLAUSES.split(text) if part.strip()]
        scores = [s for s in scores if abs(s) > _NEUTRAL]
        return float(sum(scores) / len(scores)) if scores else 0.0

    def __getstate__(self) -> tuple[tuple[tuple[str, float], ...], bool]:
        return self.lexicon, self.clauses

    def __setstate__(self, state: tuple[tuple[tuple[str, float], ...], bool]) -> None:
        self.lexicon, self.clauses = state
