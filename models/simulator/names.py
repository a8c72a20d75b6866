"""Who people say they are: names, nicknames, addresses, phones, emails, and the small ways they differ.

Identity resolution has to cope with the same person typing their details twice: a nickname instead of the
first name, a transposed letter in the email, a work address, a missing phone. :func:`variant` makes those
second versions from a :class:`Profile`; the truth records which ids belong together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a, _, b in (word.partition(":") for word in text.split()))


def _pairs_of_city(text: str) -> tuple[tuple[str, str], ...]:
    return tuple((a.replace("_", " "), b) for a, _, b in (word.partition(":") for word in text.split()))


# first_name:nickname per language; the nickname is what a second account or a guest checkout may use.
FIRST_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "en": _pairs(
        "William:Bill Robert:Bob Elizabeth:Liz Katherine:Kate Jennifer:Jen Michael:Mike Christopher:Chris "
        "Jessica:Jess Matthew:Matt Daniel:Dan Samantha:Sam Alexander:Alex Margaret:Maggie Joseph:Joe "
        "Thomas:Tom Nicholas:Nick Rebecca:Becky Anthony:Tony Patricia:Pat Jonathan:Jon Victoria:Vicky "
        "Benjamin:Ben Sophia:Sophie James:Jim David:Dave Richard:Rick Susan:Sue Andrew:Andy Emily: "
        "Olivia: Laura: Hannah: Grace: Noah: Ethan: Ava: Mia: Lucas: Chloe: Ryan: Megan: Tyler: "
        "Amanda:Mandy Steven:Steve Gregory:Greg"
    ),
    "de": _pairs(
        "Lukas: Leon: Finn: Anna: Lena: Mia: Jonas: Maximilian:Max Katharina:Kathi Johannes:Hannes "
        "Sebastian:Basti Stefanie:Steffi Alexander:Alex Julia: Tobias:Tobi Sabine: Florian:Flo Christina:Tina"
    ),
    "fr": _pairs(
        "Louis: Gabriel:Gaby Jules: Camille: Chloé: Manon: Léa: Hugo: Élise: Nicolas:Nico Alexandre:Alex "
        "Mathilde:Mathou Guillaume:Guigui Sophie: Antoine:Toto Juliette:Juju Thomas:Tom Margaux:"
    ),
}
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": _words(
        "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Wilson "
        "Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker "
        "Young Allen King Wright Scott Nguyen Hill Green Adams Baker Nelson Carter Mitchell Patel Campbell "
        "Evans Turner Collins Murphy Cook Rogers Morgan Cooper Reed Bailey Bell Kelly Howard Ward Cox "
        "Richardson Wood Watson Brooks Bennett Gray Hughes Price Sanders Myers Long Ross Foster Powell "
        "Jenkins Perry Russell Sullivan Fisher"
    ),
    "de": _words(
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein Wolf "
        "Schröder Neumann Schwarz Braun Zimmermann Krüger Hartmann Lange Werner Krause"
    ),
    "fr": _words(
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre "
        "Michel Garcia David Bertrand Roux Vincent Fournier Morel Girard André Mercier"
    ),
}
# city:postal-code-prefix per country; the code is completed with random characters of the right shape.
CITIES: dict[str, tuple[tuple[str, str], ...]] = {
    "US": _pairs_of_city(
        "New_York:100 Brooklyn:112 Los_Angeles:900 Chicago:606 Houston:770 Phoenix:850 Philadelphia:191 "
        "San_Antonio:782 San_Diego:921 Dallas:752 Austin:787 Seattle:981 Denver:802 Boston:021 "
        "Atlanta:303 Miami:331 Portland:972 Minneapolis:554 Nashville:372 Columbus:432"
    ),
    "CA": _pairs_of_city("Toronto:M5 Montreal:H2 Vancouver:V6 Calgary:T2 Ottawa:K1"),
    "GB": _pairs_of_city("London:SW1 Manchester:M1 Birmingham:B1 Leeds:LS1 Bristol:BS1"),
    "DE": _pairs_of_city("Berlin:10 Hamburg:20 München:80 Köln:50 Frankfurt_am_Main:60"),
    "FR": _pairs_of_city("Paris:75 Lyon:69 Marseille:13 Toulouse:31 Bordeaux:33"),
}
STREETS = _words(
    "Maple Oak Cedar Pine Elm Washington Lake Hill Park Main Church High Station Mill River Sunset "
    "Highland Forest Meadow Garden"
)
STREET_SUFFIXES = _words("St Ave Rd Ln Dr Blvd Ct Way")
EMAIL_DOMAINS: dict[str, tuple[str, ...]] = {
    "US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "aol.com", "proton.me"),
    "CA": ("gmail.com", "hotmail.com", "outlook.com", "yahoo.ca", "icloud.com"),
    "GB": ("gmail.com", "hotmail.co.uk", "outlook.com", "btinternet.com", "yahoo.co.uk", "icloud.com"),
    "DE": ("gmail.com", "gmx.de", "web.de", "t-online.de", "outlook.de"),
    "FR": ("gmail.com", "orange.fr", "free.fr", "hotmail.fr", "laposte.net"),
}
WORK_DOMAINS = ("acme-corp.com", "initech.io", "globex.com", "umbrella-health.org", "hooli.dev", "wayne-ent.com")
LANGUAGE = {"US": "en", "CA": "en", "GB": "en", "DE": "de", "FR": "fr"}
_ASCII = str.maketrans({"ü": "ue", "ö": "oe", "ä": "ae", "ß": "ss", "é": "e", "è": "e", "É": "e", "ç": "c"})


@dataclass(frozen=True, slots=True)
class Profile:
    """What a person could type into a form; ``None`` fields were never given."""

    first_name: str
    nickname: str
    last_name: str
    email: str
    phone: str | None
    street: str
    city: str
    postal_code: str
    country: str
    birthday: str | None

    def traits(self, *, created_at: str | None = None, with_address: bool = True) -> dict[str, Any]:
        """Segment identify traits (fields that were never given are left out)."""
        out: dict[str, Any] = {"email": self.email, "first_name": self.first_name, "last_name": self.last_name}
        if self.phone is not None:
            out["phone"] = self.phone
        if with_address:
            out["address"] = {
                "street": self.street,
                "city": self.city,
                "postal_code": self.postal_code,
                "country": self.country,
            }
        if self.birthday is not None:
            out["birthday"] = self.birthday
        if created_at is not None:
            out["created_at"] = created_at
        return out


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def make_address(rng: random.Random, country: str) -> tuple[str, str, str]:
    """A (street, city, postal_code) in the country, with a postal code of the country's shape."""
    city, prefix = rng.choice(CITIES[country])
    name = rng.choice(STREETS)
    number = rng.randint(1, 2400)
    if country == "DE":
        street, postal = f"{name}straße {number % 180 + 1}", prefix + _digits(rng, 3)
    elif country == "FR":
        street, postal = f"{number % 180 + 1} rue {name}", prefix + _digits(rng, 3)
    elif country == "GB":
        street = f"{number % 300 + 1} {name} Road"
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        postal = f"{prefix} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"
    elif country == "CA":
        street = f"{number} {name} {rng.choice(STREET_SUFFIXES)}"
        letters = "ABCEGHJKLMNPRSTVXY"
        postal = f"{prefix}{rng.choice(letters)} {rng.randint(1, 9)}{rng.choice(letters)}{rng.randint(0, 9)}"
    else:
        street, postal = f"{number} {name} {rng.choice(STREET_SUFFIXES)}", prefix + _digits(rng, 2)
    return street, city, postal


def make_phone(rng: random.Random, country: str) -> str:
    """A phone number written the way people of that country write it."""
    if country in ("US", "CA"):
        return f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{_digits(rng, 4)}"
    if country == "GB":
        return f"+44 7{_digits(rng, 3)} {_digits(rng, 6)}"
    if country == "DE":
        return f"+49 15{_digits(rng, 1)} {_digits(rng, 8)}"
    return f"+33 6 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}"


def make_email(rng: random.Random, first: str, last: str, domain: str) -> str:
    """One of the common local-part shapes: first.last, flast, first_last83, firstlast ..."""
    f, last_ascii = first.lower().translate(_ASCII), last.lower().translate(_ASCII).replace(" ", "")
    shape = rng.randrange(6)
    local = (
        f"{f}.{last_ascii}",
        f"{f[0]}{last_ascii}",
        f"{f}_{last_ascii}{rng.randint(1, 99)}",
        f"{f}{last_ascii}",
        f"{f}.{last_ascii}{rng.randint(70, 99)}",
        f"{f}{last_ascii[0]}{rng.randint(1, 999)}",
    )[shape]
    return f"{local}@{domain}"


def make_profile(
    rng: random.Random, country: str, *, last_name: str | None = None, address: tuple[str, str, str] | None = None
) -> Profile:
    """A new person's details; household members pass the shared last name and address."""
    lang = LANGUAGE[country]
    first, nickname = rng.choice(FIRST_NAMES[lang])
    last = last_name or rng.choice(LAST_NAMES[lang])
    street, city, postal = address or make_address(rng, country)
    year = rng.randint(1950, 2006)
    return Profile(
        first_name=first,
        nickname=nickname,
        last_name=last,
        email=make_email(rng, first, last, rng.choice(EMAIL_DOMAINS[country])),
        phone=make_phone(rng, country) if rng.random() < 0.7 else None,
        street=street,
        city=city,
        postal_code=postal,
        country=country,
        birthday=f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" if rng.random() < 0.55 else None,
    )


def typo(rng: random.Random, text: str) -> str:
    """One keyboard slip in the part before any '@': a swap, a doubled or a dropped letter."""
    local, at, domain = text.partition("@")
    if len(local) < 3:
        return local + local[-1:] + at + domain
    i = rng.randrange(len(local) - 1)
    kind = rng.randrange(3)
    if kind == 0 and local[i] != local[i + 1]:
        local = local[:i] + local[i + 1] + local[i] + local[i + 2 :]
    elif kind == 1:
        local = local[: i + 1] + local[i] + local[i + 1 :]
    else:
        local = local[:i] + local[i + 1 :]
    return local + at + domain


def variant(rng: random.Random, profile: Profile, *, other_email: bool, mistype: bool) -> Profile:
    """The same person typing their details again: maybe a nickname, a typo, another email, less detail."""
    first = profile.nickname if profile.nickname and rng.random() < 0.6 else profile.first_name
    last = typo(rng, profile.last_name) if mistype and rng.random() < 0.3 else profile.last_name
    if other_email:
        domain = rng.choice(WORK_DOMAINS) if rng.random() < 0.5 else rng.choice(EMAIL_DOMAINS[profile.country])
        email = make_email(rng, first, last, domain)
        if email == profile.email:
            email = "x" + email
    elif mistype:
        email = typo(rng, profile.email)
    else:
        email = profile.email
    return Profile(
        first_name=first,
        nickname=profile.nickname,
        last_name=last,
        email=email,
        phone=profile.phone if rng.random() < 0.4 else None,
        street=profile.street,
        city=profile.city,
        postal_code=profile.postal_code,
        country=profile.country,
        birthday=profile.birthday if rng.random() < 0.5 else None,
    )
