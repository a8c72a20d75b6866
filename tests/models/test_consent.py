"""Consent decisions: the same answer however often a preference object is seen, and no shared results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.privacy import _DECIDED_MAX, ConsentPolicy

CATEGORIES = st.sampled_from(["Analytics", "analytics", "Advertising", "marketing", "functional", "C0004", "other"])
PREFERENCES = st.none() | st.dictionaries(CATEGORIES, st.booleans(), max_size=5)


@given(st.lists(PREFERENCES, min_size=1, max_size=30), st.booleans())
def test_a_policy_that_remembers_decides_as_a_fresh_one(seen: list[dict[str, bool] | None], required: bool) -> None:
    policy = ConsentPolicy(required=required)
    for preferences in seen + seen:  # every object at least twice: the second answer comes from memory
        assert policy(preferences) == ConsentPolicy(required=required)(preferences)


def test_a_caller_changing_its_answer_does_not_change_the_next() -> None:
    policy = ConsentPolicy()
    first = policy({"analytics": True})
    first["analytics"] = False
    assert policy({"analytics": True})["analytics"] is True


def test_memory_is_bounded_by_distinct_preference_objects() -> None:
    policy = ConsentPolicy()
    for i in range(_DECIDED_MAX + 50):
        assert policy({f"site-category-{i}": True, "analytics": True})["analytics"] is True
    assert len(policy._decided) == _DECIDED_MAX
