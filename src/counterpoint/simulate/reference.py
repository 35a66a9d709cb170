"""Built-in reference data for the synthetic market generator. Pure constants, no I/O.

Every name, organisation, brand, congress and number here is invented for synthetic data:
names are small generic per-country lists combined at random, e-mail addresses use the reserved
``.example`` top-level domain (RFC 2606). Phone numbers are well-formed for their country (the
US and Canada use the unassigned area code 555) and unique per HCP up to ten million HCPs, which
the small fictional ranges could not give; they are not meant to be anybody's number.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


__all__ = [
    "BRANDS",
    "CONGRESSES",
    "CONTENT_KINDS",
    "MARKETS",
    "PERSONAS",
    "SPECIALTIES",
    "SPECIALTY_WEIGHTS",
    "STAGES",
    "US_FAMILY_MEDICINE",
    "Brand",
    "Congress",
    "Market",
    "slug",
]

SPECIALTY_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("general_practice", 24.0),
    ("family_medicine", 0.0),  # US general practitioners, see ``US_FAMILY_MEDICINE``
    ("internal_medicine", 11.0),
    ("pharmacist", 10.0),
    ("cardiology", 5.5),
    ("paediatrics", 5.5),
    ("nurse_practitioner", 5.0),
    ("oncology", 4.5),
    ("psychiatry", 4.0),
    ("obstetrics_gynaecology", 4.0),
    ("neurology", 3.5),
    ("endocrinology", 3.0),
    ("dermatology", 2.5),
    ("gastroenterology", 2.5),
    ("pulmonology", 2.5),
    ("rheumatology", 1.5),
    ("nephrology", 1.5),
    ("haematology", 1.2),
    ("infectious_disease", 1.0),
)
"""Specialty codes and their relative frequency among HCPs (general practice most common)."""

US_FAMILY_MEDICINE = 0.6
"""Share of US general practitioners recorded as ``family_medicine``."""

SPECIALTIES: tuple[str, ...] = tuple(code for code, _ in SPECIALTY_WEIGHTS)
"""The specialty codes the generator uses (lowercase snake_case)."""

PERSONAS: tuple[str, ...] = (
    "digital_first",
    "f2f_loyalist",
    "hybrid",
    "low_engager",
    "scientific_seeker",
)

STAGES: tuple[str, ...] = ("unaware", "aware", "interested", "trial", "adopter", "advocate")

CONTENT_KINDS: tuple[tuple[str, str, int], ...] = (
    ("EM", "campaign_email", 6),
    ("RE", "rep_email", 4),
    ("CLM", "f2f_call", 3),
    ("WEB", "website", 8),
    ("WB", "webinar", 3),
    ("SMS", "sms", 2),
    ("DM", "direct_mail", 2),
    ("CG", "congress", 3),
    ("SV", "survey", 2),
    ("EV", "event", 2),
)
"""Content kinds: code used in content ids, the channel it is made for, items per brand."""


@dataclass(frozen=True, slots=True)
class Market:
    code: str
    share: float
    languages: tuple[tuple[str, float], ...]
    time_zones: tuple[tuple[str, float, int], ...]
    """IANA zone, weight, standard UTC offset in minutes (used only without a tz database)."""
    national_prefix: str
    phone_patterns: tuple[str, ...]
    """E.164 patterns ending in at least seven ``#``, replaced by digits unique per HCP."""
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    cities: tuple[str, ...]
    hco_words: tuple[str, str, str, str, str]
    """Words for hospital, clinic, practice, pharmacy, university."""
    directions: tuple[str, ...]
    kind_first: bool
    """Whether the organisation kind comes before the city (``Klinikum Berlin``)."""
    samples_allowed: bool


_EN_HCO = ("Hospital", "Clinic", "Medical Practice", "Pharmacy", "University Hospital")
_EN_DIRS = ("North", "South", "East", "West", "Central", "Riverside", "Lakeside", "Hillside")

MARKETS: tuple[Market, ...] = (
    Market(
        "US",
        0.40,
        (("en", 0.95), ("es", 0.05)),
        (
            ("America/New_York", 0.45, -300),
            ("America/Chicago", 0.28, -360),
            ("America/Denver", 0.07, -420),
            ("America/Los_Angeles", 0.20, -480),
        ),
        "",
        ("+1555#######",),
        _names(
            "James|Mary|Robert|Patricia|John|Jennifer|Michael|Linda|David|Elizabeth|"
            "Daniel|Sarah|Kevin|Priya|Carlos|Mei"
        ),
        _names(
            "Smith|Johnson|Williams|Brown|Jones|Garcia|Miller|Davis|Rodriguez|"
            "Martinez|Anderson|Taylor|Thomas|Moore|Lee|Patel"
        ),
        _names("Springfield|Riverton|Fairview|Greenville|Madison|Franklin|Clinton|Georgetown"),
        _EN_HCO,
        _EN_DIRS,
        False,
        True,
    ),
    Market(
        "DE",
        0.12,
        (("de", 1.0),),
        (("Europe/Berlin", 1.0, 60),),
        "DE-",
        ("+4930########", "+4940########", "+4989########"),
        _names(
            "Anna|Lukas|Maria|Jonas|Sophie|Felix|Laura|Paul|Julia|Maximilian|Lena|"
            "Tobias|Katharina|Jan|Sabine|Stefan"
        ),
        _names(
            "Müller|Schmidt|Schneider|Fischer|Weber|Meyer|Wagner|Becker|Schulz|"
            "Hoffmann|Koch|Richter|Klein|Wolf|Schröder|Neumann"
        ),
        _names("Berlin|Hamburg|München|Köln|Leipzig|Dresden|Bremen|Mainz"),
        ("Klinikum", "Klinik", "Praxis", "Apotheke", "Universitätsklinikum"),
        ("Nord", "Süd", "Ost", "West", "Mitte"),
        True,
        False,
    ),
    Market(
        "FR",
        0.09,
        (("fr", 1.0),),
        (("Europe/Paris", 1.0, 60),),
        "FR-10",
        ("+331########", "+334########"),
        _names(
            "Camille|Louis|Léa|Hugo|Chloé|Lucas|Manon|Julien|Emma|Nicolas|Sarah|"
            "Thomas|Inès|Antoine|Claire|Mathieu"
        ),
        _names(
            "Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit|Durand|Leroy|Moreau|"
            "Simon|Laurent|Lefèvre|Michel|Garcia|Fournier"
        ),
        _names("Paris|Lyon|Marseille|Toulouse|Nantes|Lille|Bordeaux|Rennes"),
        ("Hôpital", "Clinique", "Cabinet médical", "Pharmacie", "CHU"),
        ("Nord", "Sud", "Est", "Ouest", "Centre"),
        True,
        False,
    ),
    Market(
        "GB",
        0.08,
        (("en", 1.0),),
        (("Europe/London", 1.0, 0),),
        "GB-",
        ("+4420########", "+44113#######"),
        _names(
            "Oliver|Amelia|George|Isla|Harry|Ava|Jack|Emily|Charlie|Sophie|Thomas|"
            "Grace|William|Olivia|James|Lucy"
        ),
        _names(
            "Smith|Jones|Taylor|Brown|Williams|Wilson|Johnson|Davies|Robinson|Wright|"
            "Thompson|Evans|Walker|White|Roberts|Green"
        ),
        _names("London|Leeds|Bristol|Manchester|York|Norwich|Oxford|Exeter"),
        _EN_HCO,
        _EN_DIRS,
        False,
        False,
    ),
    Market(
        "ES",
        0.06,
        (("es", 1.0),),
        (("Europe/Madrid", 1.0, 60),),
        "ES-",
        ("+3491#######", "+3493#######"),
        _names(
            "Lucía|Hugo|María|Martín|Paula|Daniel|Sofía|Pablo|Carmen|Alejandro|Elena|"
            "Javier|Laura|Diego|Marta|Sergio"
        ),
        _names(
            "García|Fernández|González|Rodríguez|López|Martínez|Sánchez|Pérez|Gómez|"
            "Martín|Jiménez|Ruiz|Hernández|Díaz|Moreno|Álvarez"
        ),
        _names("Madrid|Barcelona|Valencia|Sevilla|Bilbao|Málaga|Zaragoza|Murcia"),
        ("Hospital", "Clínica", "Consultorio", "Farmacia", "Hospital Universitario"),
        ("Norte", "Sur", "Este", "Oeste", "Centro"),
        True,
        False,
    ),
    Market(
        "IT",
        0.08,
        (("it", 1.0),),
        (("Europe/Rome", 1.0, 60),),
        "IT-",
        ("+3906########", "+3902########"),
        _names(
            "Giulia|Francesco|Sofia|Alessandro|Aurora|Lorenzo|Martina|Matteo|Chiara|"
            "Andrea|Sara|Luca|Federica|Marco|Elena|Giovanni"
        ),
        _names(
            "Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco|"
            "Bruno|Gallo|Conti|De Luca|Costa|Giordano"
        ),
        _names("Roma|Milano|Napoli|Torino|Bologna|Firenze|Genova|Verona"),
        ("Ospedale", "Clinica", "Studio medico", "Farmacia", "Policlinico Universitario"),
        ("Nord", "Sud", "Est", "Ovest", "Centro"),
        True,
        False,
    ),
    Market(
        "JP",
        0.10,
        (("ja", 1.0),),
        (("Asia/Tokyo", 1.0, 540),),
        "JP-",
        ("+813########", "+816########"),
        _names(
            "Haruto|Yui|Sota|Hina|Yuto|Aoi|Riku|Sakura|Kenji|Yuki|Takumi|Mio|Daiki|"
            "Akari|Hiroshi|Emi"
        ),
        _names(
            "Sato|Suzuki|Takahashi|Tanaka|Watanabe|Ito|Yamamoto|Nakamura|Kobayashi|"
            "Kato|Yoshida|Yamada|Sasaki|Yamaguchi|Matsumoto|Inoue"
        ),
        _names("Tokyo|Osaka|Nagoya|Sapporo|Fukuoka|Kobe|Kyoto|Sendai"),
        _EN_HCO,
        ("Kita", "Minami", "Higashi", "Nishi", "Chuo"),
        False,
        True,
    ),
    Market(
        "BR",
        0.04,
        (("pt", 1.0),),
        (("America/Sao_Paulo", 0.88, -180), ("America/Manaus", 0.12, -240)),
        "BR-",
        ("+55119########", "+55219########"),
        _names(
            "Ana|João|Maria|Pedro|Juliana|Lucas|Fernanda|Gabriel|Camila|Rafael|"
            "Beatriz|Mateus|Larissa|Gustavo|Patrícia|Bruno"
        ),
        _names(
            "Silva|Santos|Oliveira|Souza|Rodrigues|Ferreira|Alves|Pereira|Lima|Gomes|"
            "Costa|Ribeiro|Martins|Carvalho|Almeida|Araújo"
        ),
        _names("São Paulo|Rio de Janeiro|Curitiba|Recife|Salvador|Manaus|Fortaleza|Campinas"),
        ("Hospital", "Clínica", "Consultório", "Farmácia", "Hospital Universitário"),
        ("Norte", "Sul", "Leste", "Oeste", "Central"),
        True,
        True,
    ),
    Market(
        "CA",
        0.03,
        (("en", 0.75), ("fr", 0.25)),
        (
            ("America/Toronto", 0.62, -300),
            ("America/Vancouver", 0.2, -480),
            ("America/Edmonton", 0.12, -420),
            ("America/Halifax", 0.06, -240),
        ),
        "CA-",
        ("+1555#######",),
        _names(
            "Liam|Emma|Noah|Olivia|William|Charlotte|Benjamin|Chloé|Ethan|Sophie|"
            "Alexandre|Maya|Nathan|Léa|Samuel|Zoe"
        ),
        _names(
            "Tremblay|Smith|Roy|Gagnon|Brown|Wilson|Côté|MacDonald|Martin|Lee|"
            "Bouchard|Campbell|Gauthier|Taylor|Morin|Anderson"
        ),
        _names("Toronto|Montréal|Vancouver|Calgary|Ottawa|Halifax|Winnipeg|Québec"),
        _EN_HCO,
        _EN_DIRS,
        False,
        True,
    ),
)
"""Markets: the US holds 40% of HCPs; the rest is spread over eight other countries."""


@dataclass(frozen=True, slots=True)
class Brand:
    code: str
    name: str
    therapeutic_area: str
    ta_code: str
    specialties: tuple[str, ...]
    """Specialties for which the brand is relevant (others see it rarely)."""


BRANDS: tuple[Brand, ...] = (
    Brand(
        "ZENTROVA",
        "Zentrova",
        "oncology",
        "ONCO",
        ("oncology", "haematology", "pharmacist"),
    ),
    Brand(
        "LUMACOR",
        "Lumacor",
        "cardiovascular",
        "CARD",
        ("cardiology", "internal_medicine", "general_practice", "family_medicine", "nephrology"),
    ),
    Brand(
        "GLYVANTE",
        "Glyvante",
        "diabetes",
        "DIAB",
        ("endocrinology", "general_practice", "family_medicine", "internal_medicine"),
    ),
    Brand(
        "QUORIXA",
        "Quorixa",
        "neuroscience",
        "NEUR",
        ("neurology", "psychiatry"),
    ),
    Brand(
        "PULMETTA",
        "Pulmetta",
        "respiratory",
        "RESP",
        ("pulmonology", "general_practice", "family_medicine", "paediatrics"),
    ),
)
"""Invented brands; a run uses the first three to five of them (chosen by the seed)."""


@dataclass(frozen=True, slots=True)
class Congress:
    name: str
    month: int
    day: int
    days: int
    ta_code: str
    specialties: tuple[str, ...]


CONGRESSES: tuple[Congress, ...] = (
    Congress(
        "Synthetic Congress of General Medicine",
        3,
        10,
        3,
        "CARD",
        ("general_practice", "family_medicine", "internal_medicine", "nurse_practitioner"),
    ),
    Congress("Synthetic Neuroscience Summit", 4, 21, 3, "NEUR", ("neurology", "psychiatry")),
    Congress("Synthetic Oncology Congress", 6, 1, 4, "ONCO", ("oncology", "haematology")),
    Congress(
        "Synthetic Diabetes Meeting",
        6,
        22,
        3,
        "DIAB",
        ("endocrinology", "internal_medicine", "nephrology"),
    ),
    Congress(
        "Synthetic Cardiology Congress",
        8,
        29,
        4,
        "CARD",
        ("cardiology", "internal_medicine", "nephrology"),
    ),
    Congress(
        "Synthetic Respiratory Congress",
        9,
        27,
        3,
        "RESP",
        ("pulmonology", "infectious_disease", "paediatrics"),
    ),
)
"""Fixed congress dates each year: the interaction history spikes in these weeks."""

_SPECIAL = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe"})


@functools.cache
def slug(text: str, sep: str = "") -> str:
    """An ASCII lower-case slug: ``Müller`` → ``mueller``, ``De Luca`` → ``deluca``."""
    plain = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    out: list[str] = []
    for ch in plain.lower():
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif ch in " -" and sep and out and out[-1] != sep:
            out.append(sep)
    return "".join(out).strip(sep) if sep else "".join(out)
