"""ITU Maritime Identification Digits (MID) and the MMSI formats that carry them."""

from __future__ import annotations

from enum import Enum
from types import MappingProxyType

# ITU Radio Regulations Appendix 43 / ITU MARS table of MIDs (201-775), as allocated in 2024.
_MID_ROWS: dict[str, tuple[int, ...]] = {
    "Albania": (201,),
    "Andorra": (202,),
    "Austria": (203,),
    "Azores (Portugal)": (204,),
    "Belgium": (205,),
    "Belarus": (206,),
    "Bulgaria": (207,),
    "Vatican City State": (208,),
    "Cyprus": (209, 210, 212),
    "Germany": (211, 218),
    "Georgia": (213,),
    "Moldova": (214,),
    "Malta": (215, 229, 248, 249, 256),
    "Armenia": (216,),
    "Denmark": (219, 220),
    "Spain": (224, 225),
    "France": (226, 227, 228),
    "Finland": (230,),
    "Faroe Islands": (231,),
    "United Kingdom": (232, 233, 234, 235),
    "Gibraltar": (236,),
    "Greece": (237, 239, 240, 241),
    "Croatia": (238,),
    "Morocco": (242,),
    "Hungary": (243,),
    "Netherlands": (244, 245, 246),
    "Italy": (247,),
    "Ireland": (250,),
    "Iceland": (251,),
    "Liechtenstein": (252,),
    "Luxembourg": (253,),
    "Monaco": (254,),
    "Madeira (Portugal)": (255,),
    "Norway": (257, 258, 259),
    "Poland": (261,),
    "Montenegro": (262,),
    "Portugal": (263,),
    "Romania": (264,),
    "Sweden": (265, 266),
    "Slovakia": (267,),
    "San Marino": (268,),
    "Switzerland": (269,),
    "Czech Republic": (270,),
    "Türkiye": (271,),
    "Ukraine": (272,),
    "Russian Federation": (273,),
    "North Macedonia": (274,),
    "Latvia": (275,),
    "Estonia": (276,),
    "Lithuania": (277,),
    "Slovenia": (278,),
    "Serbia": (279,),
    "Anguilla": (301,),
    "Alaska (USA)": (303,),
    "Antigua and Barbuda": (304, 305),
    "Curaçao, Sint Maarten, Bonaire, Sint Eustatius and Saba": (306,),
    "Aruba": (307,),
    "Bahamas": (308, 309, 311),
    "Bermuda": (310,),
    "Belize": (312,),
    "Barbados": (314,),
    "Canada": (316,),
    "Cayman Islands": (319,),
    "Costa Rica": (321,),
    "Cuba": (323,),
    "Dominica": (325,),
    "Dominican Republic": (327,),
    "Guadeloupe (France)": (329,),
    "Grenada": (330,),
    "Greenland (Denmark)": (331,),
    "Guatemala": (332,),
    "Honduras": (334,),
    "Haiti": (336,),
    "United States of America": (338, 366, 367, 368, 369),
    "Jamaica": (339,),
    "Saint Kitts and Nevis": (341,),
    "Saint Lucia": (343,),
    "Mexico": (345,),
    "Martinique (France)": (347,),
    "Montserrat": (348,),
    "Nicaragua": (350,),
    "Panama": (351, 352, 353, 354, 355, 356, 357, 370, 371, 372, 373, 374),
    "Puerto Rico (USA)": (358,),
    "El Salvador": (359,),
    "Saint Pierre and Miquelon (France)": (361,),
    "Trinidad and Tobago": (362,),
    "Turks and Caicos Islands": (364,),
    "Saint Vincent and the Grenadines": (375, 376, 377),
    "British Virgin Islands": (378,),
    "United States Virgin Islands": (379,),
    "Afghanistan": (401,),
    "Saudi Arabia": (403,),
    "Bangladesh": (405,),
    "Bahrain": (408,),
    "Bhutan": (410,),
    "China": (412, 413, 414),
    "Taiwan (China)": (416,),
    "Sri Lanka": (417,),
    "India": (419,),
    "Iran": (422,),
    "Azerbaijan": (423,),
    "Iraq": (425,),
    "Israel": (428,),
    "Japan": (431, 432),
    "Turkmenistan": (434,),
    "Kazakhstan": (436,),
    "Uzbekistan": (437,),
    "Jordan": (438,),
    "Korea (Republic of)": (440, 441),
    "Palestine": (443,),
    "Korea (Democratic People's Republic of)": (445,),
    "Kuwait": (447,),
    "Lebanon": (450,),
    "Kyrgyzstan": (451,),
    "Macao (China)": (453,),
    "Maldives": (455,),
    "Mongolia": (457,),
    "Nepal": (459,),
    "Oman": (461,),
    "Pakistan": (463,),
    "Qatar": (466,),
    "Syria": (468,),
    "United Arab Emirates": (470, 471),
    "Tajikistan": (472,),
    "Yemen": (473, 475),
    "Hong Kong (China)": (477,),
    "Bosnia and Herzegovina": (478,),
    "Adélie Land (France)": (501,),
    "Australia": (503,),
    "Myanmar": (506,),
    "Brunei Darussalam": (508,),
    "Micronesia": (510,),
    "Palau": (511,),
    "New Zealand": (512,),
    "Cambodia": (514, 515),
    "Christmas Island (Australia)": (516,),
    "Cook Islands": (518,),
    "Fiji": (520,),
    "Cocos (Keeling) Islands (Australia)": (523,),
    "Indonesia": (525,),
    "Kiribati": (529,),
    "Lao People's Democratic Republic": (531,),
    "Malaysia": (533,),
    "Northern Mariana Islands (USA)": (536,),
    "Marshall Islands": (538,),
    "New Caledonia (France)": (540,),
    "Niue": (542,),
    "Nauru": (544,),
    "French Polynesia (France)": (546,),
    "Philippines": (548,),
    "Timor-Leste": (550,),
    "Papua New Guinea": (553,),
    "Pitcairn Island (UK)": (555,),
    "Solomon Islands": (557,),
    "American Samoa (USA)": (559,),
    "Samoa": (561,),
    "Singapore": (563, 564, 565, 566),
    "Thailand": (567,),
    "Tonga": (570,),
    "Tuvalu": (572,),
    "Viet Nam": (574,),
    "Vanuatu": (576, 577),
    "Wallis and Futuna Islands (France)": (578,),
    "South Africa": (601,),
    "Angola": (603,),
    "Algeria": (605,),
    "Saint Paul and Amsterdam Islands (France)": (607,),
    "Ascension Island (UK)": (608,),
    "Burundi": (609,),
    "Benin": (610,),
    "Botswana": (611,),
    "Central African Republic": (612,),
    "Cameroon": (613,),
    "Congo (Republic of the)": (615,),
    "Comoros": (616, 620),
    "Cabo Verde": (617,),
    "Crozet Archipelago (France)": (618,),
    "Côte d'Ivoire": (619,),
    "Djibouti": (621,),
    "Egypt": (622,),
    "Ethiopia": (624,),
    "Eritrea": (625,),
    "Gabon": (626,),
    "Ghana": (627,),
    "Gambia": (629,),
    "Guinea-Bissau": (630,),
    "Equatorial Guinea": (631,),
    "Guinea": (632,),
    "Burkina Faso": (633,),
    "Kenya": (634,),
    "Kerguelen Islands (France)": (635,),
    "Liberia": (636, 637),
    "South Sudan": (638,),
    "Libya": (642,),
    "Lesotho": (644,),
    "Mauritius": (645,),
    "Madagascar": (647,),
    "Mali": (649,),
    "Mozambique": (650,),
    "Mauritania": (654,),
    "Malawi": (655,),
    "Niger": (656,),
    "Nigeria": (657,),
    "Namibia": (659,),
    "Réunion (France)": (660,),
    "Rwanda": (661,),
    "Sudan": (662,),
    "Senegal": (663,),
    "Seychelles": (664,),
    "Saint Helena (UK)": (665,),
    "Somalia": (666,),
    "Sierra Leone": (667,),
    "Sao Tome and Principe": (668,),
    "Eswatini": (669,),
    "Chad": (670,),
    "Togo": (671,),
    "Tunisia": (672,),
    "Tanzania": (674, 677),
    "Uganda": (675,),
    "Democratic Republic of the Congo": (676,),
    "Zambia": (678,),
    "Zimbabwe": (679,),
    "Argentina": (701,),
    "Brazil": (710,),
    "Bolivia": (720,),
    "Chile": (725,),
    "Colombia": (730,),
    "Ecuador": (735,),
    "Falkland Islands (UK)": (740,),
    "French Guiana (France)": (745,),
    "Guyana": (750,),
    "Paraguay": (755,),
    "Peru": (760,),
    "Suriname": (765,),
    "Uruguay": (770,),
    "Venezuela": (775,),
}

MID_COUNTRY: MappingProxyType[int, str] = MappingProxyType(
    dict(sorted((mid, country) for country, mids in _MID_ROWS.items() for mid in mids))
)


class MmsiKind(Enum):
    """The MMSI formats of ITU-R M.585-9 (Annex 1..3, 6)."""

    SHIP = "ship"  # MIDxxxxxx
    GROUP = "group"  # 0MIDxxxxx (group call; never a transmitter of its own)
    COAST = "coast"  # 00MIDxxxx (coast and base stations)
    SAR_AIRCRAFT = "sar_aircraft"  # 111MIDxxx
    HANDHELD = "handheld"  # 8MIDxxxxx
    CRAFT_ASSOCIATED = "craft_associated"  # 98MIDxxxx (tenders, lifeboats of a parent ship)
    ATON = "aton"  # 99MIDxxxx
    SART = "sart"  # 970xxyyyy
    MOB = "mob"  # 972xxyyyy
    EPIRB = "epirb"  # 974xxyyyy
    UNASSIGNED = "unassigned"  # 9 digits, but a prefix M.585 does not define
    MALFORMED = "malformed"  # not exactly nine digits

    @property
    def has_mid(self) -> bool:
        return self in _MID_OFFSET


_MID_OFFSET: dict[MmsiKind, int] = {
    MmsiKind.SHIP: 0,
    MmsiKind.GROUP: 1,
    MmsiKind.COAST: 2,
    MmsiKind.SAR_AIRCRAFT: 3,
    MmsiKind.HANDHELD: 1,
    MmsiKind.CRAFT_ASSOCIATED: 2,
    MmsiKind.ATON: 2,
}
_NINE_DIGIT_PREFIXES: tuple[tuple[str, MmsiKind], ...] = (
    ("111", MmsiKind.SAR_AIRCRAFT),
    ("970", MmsiKind.SART),
    ("972", MmsiKind.MOB),
    ("974", MmsiKind.EPIRB),
    ("00", MmsiKind.COAST),
    ("98", MmsiKind.CRAFT_ASSOCIATED),
    ("99", MmsiKind.ATON),
    ("0", MmsiKind.GROUP),
    ("8", MmsiKind.HANDHELD),
)


def _kind_of_prefix(prefix: str) -> MmsiKind:
    for start, kind in _NINE_DIGIT_PREFIXES:
        if prefix.startswith(start):
            return kind
    return MmsiKind.SHIP if prefix[0] in "234567" else MmsiKind.UNASSIGNED


# Every format is told by the first three digits: a table of all 1,000 instead of a cache per
# MMSI (which held ~80 bytes for each of up to 16,384 vessels).
_KIND_BY_PREFIX: dict[str, MmsiKind] = {
    f"{n:03d}": _kind_of_prefix(f"{n:03d}") for n in range(1000)
}


def mmsi_kind(mmsi: str) -> MmsiKind:
    """Classify an MMSI string (exactly nine ASCII digits, leading zeros kept)."""
    if len(mmsi) != 9 or not mmsi.isascii() or not mmsi.isdigit():
        return MmsiKind.MALFORMED
    return _KIND_BY_PREFIX[mmsi[:3]]


def mid_of(mmsi: str) -> int | None:
    """The three MID digits an MMSI carries for its format, or None if the format has none."""
    offset = _MID_OFFSET.get(mmsi_kind(mmsi))
    return None if offset is None else int(mmsi[offset : offset + 3])


def country_of(mmsi: str) -> str | None:
    """The administration whose MID the MMSI carries, or None if unknown or not applicable."""
    mid = mid_of(mmsi)
    return None if mid is None else MID_COUNTRY.get(mid)
