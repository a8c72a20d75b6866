"""Identity resolution: which devices (anonymousIds) and accounts (userIds) are one person.

Pure logic, no transport. The identity agent calls, per valid event (after ingest and sessionizing):

    update = resolver.observe(row)          # row: schemas.records.EventRow
    row.person_id = update.person_id
    update.links       -> identity_links   (schemas.identity.IdentityLink, one per new union)
    update.changes     -> person_changes   (schemas.identity.PersonChange: merge/split, old -> new person)
    update.duplicates  -> probable_duplicates (schemas.identity.ProbableDuplicate)

and ``resolver.forget(id, at=...)`` on an erasure request (it returns the node keys it erased). State is
the resolver itself: it pickles, and a checkpoint restores it exactly.

Methods, in decreasing certainty (each link records ``method``, ``score`` and ``evidence``):

* ``deterministic``: a userId next to an anonymousId (identify, alias, any event while logged in) ties the
  device to the account; an email (keyed hash, :mod:`models.identity.hashing`) ties every device and
  account that used it.
* ``trait_probabilistic``: a guest checkout's or an account's traits (names with nicknames, typos and
  transpositions, email, phone, postal code, birth date) match another profile's
  (:mod:`models.identity.traits`).
* ``device_probabilistic``: two devices behind a router few devices share, compared on IP habits,
  concurrent activity, product interests, cart contents, locale, device types and software
  (:mod:`models.identity.devices`).

Both probabilistic methods are Fellegi & Sunter (1969) models (:mod:`models.identity.fellegi_sunter`):
the match weight is a sum of per-field log-likelihood ratios, its posterior probability (given the share
of matches among candidates) is the link's ``score``, and a pair links when the score is at least the
threshold (``device_threshold`` 0.8, ``trait_threshold`` 0.99; see :class:`IdentityResolver`).
``refit`` re-estimates the device model's m and u from candidate pairs the accounts label. Blocking
(:mod:`models.identity.blocks`) keeps the cost near-linear: devices are compared only within an IP shared
by at most ``max_ip_devices`` devices.

Person ids are canonical, so they are a function of the evidence and not of arrival order: ``u:<userId>``
for a person with an account, else ``a:<smallest anonymousId>``. Guard rails (:mod:`models.identity.graph`):
two userIds are never merged (a probable duplicate is reported instead); a browser used by two accounts
bridges nothing; devices active in the same quarter-hour are never merged probabilistically; a person
holds at most ``max_devices`` devices; an IP, email or trait key shared by too many records yields no
links; a device whose events deny analytics consent (``row.consent["analytics"] is False``) is unlinked,
its evidence dropped, and its later events ignored (fail-closed: a later grant does not re-enable it).

Order independence: every piece of evidence is kept in a form that is a function of the set of events
(counts, sets, bottom-k sketches, smallest-value rules), every pair's score is recomputed when its inputs
change, and each re-clustering sorts its inputs. The only order effects: the timestamps on emitted
records, evidence past a bound (more than 16 IPs on a device, a block that once had more than 64
members), and a consent denial, which drops evidence whenever it arrives.

>>> from dataclasses import replace
>>> from schemas.records import EXAMPLE_ROW
>>> resolver = IdentityResolver()
>>> phone = replace(EXAMPLE_ROW, anonymous_id="phone", user_id="usr_7", type="identify",
...                 traits='{"email": "ann@example.com", "first_name": "Ann"}')
>>> laptop = replace(EXAMPLE_ROW, anonymous_id="laptop", event="Order Completed",
...                  properties='{"email": "Ann@Example.com"}')
>>> resolver.observe(phone).person_id, resolver.observe(laptop).person_id
('u:usr_7', 'u:usr_7')
>>> sorted(resolver.forget("usr_7", at=EXAMPLE_ROW.event_at).erased)
['a:laptop', 'a:phone', 'u:usr_7']
"""

from models.identity.devices import DEVICE_MODEL
from models.identity.fellegi_sunter import Comparison, FellegiSunter
from models.identity.hashing import KeyedHash
from models.identity.resolver import IdentityResolver, IdentityUpdate
from models.identity.traits import TRAIT_MODEL, TraitProfile

__all__ = [
    "DEVICE_MODEL",
    "TRAIT_MODEL",
    "Comparison",
    "FellegiSunter",
    "IdentityResolver",
    "IdentityUpdate",
    "KeyedHash",
    "TraitProfile",
]
