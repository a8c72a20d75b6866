"""Who a profile says it is: normalised names and contact details, their comparison and blocking keys.

A :class:`TraitProfile` is what identify traits or a guest checkout say about a person, reduced to what
matching needs: names normalised to lower-case ASCII letters (kept in clear, because typos and nicknames
are compared on the letters; erased by ``forget``), the email and phone as keyed hashes (equality only),
the local part of the email when it arrived in clear (for typo matching), and the postal code and birth
date as keyed tokens.

Comparison levels (Fellegi & Sunter 1969; the m/u values are in :data:`TRAIT_MODEL`):

* ``first``: exact, nickname (a known diminutive, or one name a prefix of at least 3 letters of the other),
  fuzzy (Jaro-Winkler >= 0.9), different;
* ``last``: exact, fuzzy (Damerau-Levenshtein <= 1 or Jaro-Winkler >= 0.93: a typo or a transposition),
  phonetic (same Metaphone key), different;
* ``email``: same hash, fuzzy (local parts in clear, different but within one edit: a typo; at least 5
  characters), different;
* ``phone``, ``postal``, ``birth``: same, different.

Blocking keys: Metaphone of the last name with the initial of the canonical first name (so Bill and
William share a key), the canonical first name with the first two letters of the last name (a typo
often changes the Metaphone key), the phone hash, and the postal code with the birth year.

>>> from models.identity.hashing import KeyedHash
>>> keys = KeyedHash()
>>> account = TraitProfile.from_traits(
...     {"email": "william.smith@example.com", "first_name": "William", "last_name": "Smith",
...      "address": {"postal_code": "94110"}}, keys=keys)
>>> guest = TraitProfile.from_traits({"email": "wiliam.smith@example.com", "first_name": "Bill",
...                                   "last_name": "Smtih"}, keys=keys)
>>> [TRAIT_MODEL.comparisons[f].levels[x] for f, x in enumerate(compare_traits(account, guest)) if x >= 0]
['nickname', 'fuzzy', 'fuzzy']
>>> sorted(set(account.blocking_keys()) & set(guest.blocking_keys()))
['f:william:sm']
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jellyfish

from models.identity.fellegi_sunter import MISSING, Comparison, FellegiSunter
from models.identity.hashing import KeyedHash

# Common diminutives -> the formal name (English, German, French). A name absent here is its own canonical
# form; the prefix rule in _first_level covers most of the rest (Alex/Alexander, Max/Maximilian).
_NICKNAMES = {
    "bill": "william", "will": "william", "billy": "william", "liam": "william", "bob": "robert",
    "rob": "robert", "bobby": "robert", "liz": "elizabeth", "beth": "elizabeth", "betty": "elizabeth",
    "eliza": "elizabeth", "lisa": "elizabeth", "kate": "katherine", "katie": "katherine", "kathy": "katherine",
    "cathy": "catherine", "jen": "jennifer", "jenny": "jennifer", "mike": "michael", "mick": "michael",
    "chris": "christopher", "jess": "jessica", "jessie": "jessica", "matt": "matthew", "dan": "daniel",
    "danny": "daniel", "sam": "samantha", "sammy": "samuel", "alex": "alexander", "sasha": "alexander",
    "maggie": "margaret", "meg": "margaret", "peggy": "margaret", "joe": "joseph", "joey": "joseph",
    "tom": "thomas", "tommy": "thomas", "nick": "nicholas", "becky": "rebecca", "tony": "anthony",
    "pat": "patricia", "patty": "patricia", "jon": "jonathan", "vicky": "victoria", "tori": "victoria",
    "ben": "benjamin", "benny": "benjamin", "sophie": "sophia", "jim": "james", "jimmy": "james",
    "dave": "david", "rick": "richard", "dick": "richard", "rich": "richard", "sue": "susan",
    "susie": "susan", "andy": "andrew", "drew": "andrew", "mandy": "amanda", "steve": "steven",
    "greg": "gregory", "ed": "edward", "eddie": "edward", "ted": "edward", "fred": "frederick",
    "charlie": "charles", "chuck": "charles", "hank": "henry", "harry": "henry", "jack": "john",
    "johnny": "john", "kim": "kimberly", "larry": "lawrence", "nate": "nathan", "pete": "peter",
    "ron": "ronald", "tim": "timothy", "val": "valerie", "zach": "zachary", "abby": "abigail",
    "max": "maximilian", "kathi": "katharina", "hannes": "johannes", "basti": "sebastian",
    "steffi": "stefanie", "tobi": "tobias", "flo": "florian", "tina": "christina", "sepp": "josef",
    "gaby": "gabriel", "nico": "nicolas", "mathou": "mathilde", "guigui": "guillaume", "toto": "antoine",
    "juju": "juliette", "manu": "emmanuel", "fanny": "stephanie",
}  # fmt: skip
_FIRST_KEYS = ("first_name", "firstName", "firstname", "given_name")
_LAST_KEYS = ("last_name", "lastName", "lastname", "family_name", "surname")
_POSTAL_KEYS = ("postal_code", "postalCode", "zip", "zipcode", "postcode")
_MAX_LOCAL = 64


def normalise_name(text: str) -> str:
    """Lower-case ASCII letters only: accents folded, spaces, digits and punctuation dropped.

    >>> normalise_name(" Müller-Lüdenscheidt "), normalise_name("O'Brien"), normalise_name("Élise")
    ('mullerludenscheidt', 'obrien', 'elise')
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if "a" <= c <= "z")


def canonical_first(name: str) -> str:
    """The formal form of a normalised first name (``bill`` -> ``william``), or the name itself."""
    return _NICKNAMES.get(name, name)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True, order=True)
class TraitProfile:
    """A person's details as one record states them; empty strings are fields it did not state."""

    first: str = ""
    last: str = ""
    email: str = ""
    email_local: str = ""
    phone: str = ""
    postal: str = ""
    birth: str = ""
    birth_year: str = ""

    @classmethod
    def from_traits(cls, traits: Mapping[str, Any], *, keys: KeyedHash, email: str = "") -> TraitProfile | None:
        """The profile in Segment traits (snake or camel case; ``name`` split when first/last are absent).

        ``email`` is used when the traits have none (a checkout's ``properties.email``). None when nothing
        usable for matching is there.
        """
        first = next((_text(traits[k]) for k in _FIRST_KEYS if k in traits), "")
        last = next((_text(traits[k]) for k in _LAST_KEYS if k in traits), "")
        if not first and not last and isinstance(traits.get("name"), str):
            parts = traits["name"].split()
            first, last = (parts[0], parts[-1]) if len(parts) > 1 else ("", "".join(parts))
        raw_email = _text(traits.get("email")) or email
        address = traits.get("address")
        postal = ""
        if isinstance(address, Mapping):
            postal = next((_text(address[k]) for k in _POSTAL_KEYS if k in address), "")
        postal = "".join(c for c in postal.upper() if c.isalnum())
        birth = _text(traits.get("birthday")).strip()[:10]
        local = ""
        if "@" in raw_email:
            local = raw_email.strip().lower().partition("@")[0][:_MAX_LOCAL]
        phone = traits.get("phone")
        profile = cls(
            first=normalise_name(first),
            last=normalise_name(last),
            email=keys.email(raw_email) if raw_email else "",
            email_local=local,
            phone=keys.phone(str(phone)) if isinstance(phone, str | int) and str(phone).strip() else "",
            postal=keys.token(postal) if postal else "",
            birth=keys.token(birth) if birth else "",
            birth_year=birth[:4] if birth[:4].isdigit() else "",
        )
        return None if profile == _EMPTY else profile

    def blocking_keys(self) -> tuple[str, ...]:
        """The keys under which this profile is indexed; two profiles are compared if they share one."""
        out = []
        initial = canonical_first(self.first)[:1]
        if self.last and initial:
            out.append(f"n:{jellyfish.metaphone(self.last)}:{initial}")
            out.append(f"f:{canonical_first(self.first)}:{self.last[:2]}")
        if self.phone:
            out.append(f"p:{self.phone}")
        if self.postal and self.birth_year:
            out.append(f"z:{self.postal}:{self.birth_year}")
        return tuple(out)


_EMPTY = TraitProfile()


def _first_level(a: str, b: str) -> int:
    if a == b:
        return 0
    ca, cb = canonical_first(a), canonical_first(b)
    short, long_ = (ca, cb) if len(ca) <= len(cb) else (cb, ca)
    if ca == cb or (len(short) >= 3 and long_.startswith(short)):
        return 1
    return 2 if jellyfish.jaro_winkler_similarity(a, b) >= 0.9 else 3


def _last_level(a: str, b: str) -> int:
    if a == b:
        return 0
    if jellyfish.damerau_levenshtein_distance(a, b) <= 1 or jellyfish.jaro_winkler_similarity(a, b) >= 0.93:
        return 1
    return 2 if jellyfish.metaphone(a) == jellyfish.metaphone(b) else 3


def _email_level(a: TraitProfile, b: TraitProfile) -> int:
    if a.email == b.email:
        return 0
    la, lb = a.email_local, b.email_local
    if min(len(la), len(lb)) >= 5 and la != lb and jellyfish.damerau_levenshtein_distance(la, lb) <= 1:
        return 1
    return 2


def _same(a: str, b: str) -> int:
    return 0 if a == b else 1


def compare_traits(a: TraitProfile, b: TraitProfile) -> tuple[int, ...]:
    """The comparison vector of two profiles, in the order of :data:`TRAIT_MODEL` (``MISSING`` = absent)."""
    return (
        _first_level(a.first, b.first) if a.first and b.first else MISSING,
        _last_level(a.last, b.last) if a.last and b.last else MISSING,
        _email_level(a, b) if a.email and b.email else MISSING,
        _same(a.phone, b.phone) if a.phone and b.phone else MISSING,
        _same(a.postal, b.postal) if a.postal and b.postal else MISSING,
        _same(a.birth, b.birth) if a.birth and b.birth else MISSING,
    )


# Fixed rather than estimated: EM on trait candidates converges to "same surname" rather than "same person",
# and labels from email links would bias the email field. m (one person's two records): forms are mostly
# retyped the same, with a nickname about a third of the time, a surname typo now and then, another email
# about half the time; phone, postal code and birth date rarely change. u is among *candidate* pairs, which
# blocking has already made agree on names: most strangers there share the surname and many the first
# name, so exact names weigh almost nothing, while a nickname of the same canonical name, a one-letter
# surname typo, a phone, an address or a birth date are what tell one person from a namesake. The prior
# (2% of candidates are matches) and the rounded u values were measured on the candidate pairs of a
# 5,000-person simulation (``python -m benchmarks.identity``).
TRAIT_MODEL = FellegiSunter(
    comparisons=(
        Comparison(name="first", levels=("exact", "nickname", "fuzzy", "different"),
                   m=(0.6, 0.36, 0.02, 0.02), u=(0.37, 0.02, 0.01, 0.6)),
        Comparison(name="last", levels=("exact", "fuzzy", "phonetic", "different"),
                   m=(0.82, 0.15, 0.01, 0.02), u=(0.77, 0.02, 0.06, 0.15)),
        Comparison(name="email", levels=("exact", "fuzzy", "different"),
                   m=(0.4, 0.1, 0.5), u=(0.003, 0.016, 0.981)),
        Comparison(name="phone", levels=("same", "different"), m=(0.9, 0.1), u=(0.001, 0.999)),
        Comparison(name="postal", levels=("same", "different"), m=(0.9, 0.1), u=(0.02, 0.98)),
        Comparison(name="birth", levels=("same", "different"), m=(0.95, 0.05), u=(0.002, 0.998)),
    ),
    prior=0.02,
)  # fmt: skip
