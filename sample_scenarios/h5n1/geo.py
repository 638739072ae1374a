"""US states: postal code, APHIS spelling, waterfowl flyway and Census region.

Flyways are the US Fish and Wildlife Service's administrative flyways (states split between the Central
and Pacific flyways — Montana, Wyoming, Colorado, New Mexico — are put in the Central flyway; Alaska and
Hawaii in the Pacific). Regions are the US Census Bureau's four regions; their 2020 census populations are
the consumption weights of the regional markets.
"""

from __future__ import annotations

import math

__all__ = ["REGIONS", "REGION_CENTRES", "REGION_POPULATION", "STATES", "State", "km"]

State = tuple[str, str, str, str]  # code, APHIS name, flyway, census region

STATES: tuple[State, ...] = (
    ("AL", "alabama", "Mississippi", "South"),
    ("AK", "alaska", "Pacific", "West"),
    ("AZ", "arizona", "Pacific", "West"),
    ("AR", "arkansas", "Mississippi", "South"),
    ("CA", "california", "Pacific", "West"),
    ("CO", "colorado", "Central", "West"),
    ("CT", "connecticut", "Atlantic", "Northeast"),
    ("DE", "delaware", "Atlantic", "South"),
    ("DC", "district of columbia", "Atlantic", "South"),
    ("FL", "florida", "Atlantic", "South"),
    ("GA", "georgia", "Atlantic", "South"),
    ("HI", "hawaii", "Pacific", "West"),
    ("ID", "idaho", "Pacific", "West"),
    ("IL", "illinois", "Mississippi", "Midwest"),
    ("IN", "indiana", "Mississippi", "Midwest"),
    ("IA", "iowa", "Mississippi", "Midwest"),
    ("KS", "kansas", "Central", "Midwest"),
    ("KY", "kentucky", "Mississippi", "South"),
    ("LA", "louisiana", "Mississippi", "South"),
    ("ME", "maine", "Atlantic", "Northeast"),
    ("MD", "maryland", "Atlantic", "South"),
    ("MA", "massachusetts", "Atlantic", "Northeast"),
    ("MI", "michigan", "Mississippi", "Midwest"),
    ("MN", "minnesota", "Mississippi", "Midwest"),
    ("MS", "mississippi", "Mississippi", "South"),
    ("MO", "missouri", "Mississippi", "Midwest"),
    ("MT", "montana", "Central", "West"),
    ("NE", "nebraska", "Central", "Midwest"),
    ("NV", "nevada", "Pacific", "West"),
    ("NH", "new hampshire", "Atlantic", "Northeast"),
    ("NJ", "new jersey", "Atlantic", "Northeast"),
    ("NM", "new mexico", "Central", "West"),
    ("NY", "new york", "Atlantic", "Northeast"),
    ("NC", "north carolina", "Atlantic", "South"),
    ("ND", "north dakota", "Central", "Midwest"),
    ("OH", "ohio", "Mississippi", "Midwest"),
    ("OK", "oklahoma", "Central", "South"),
    ("OR", "oregon", "Pacific", "West"),
    ("PA", "pennsylvania", "Atlantic", "Northeast"),
    ("RI", "rhode island", "Atlantic", "Northeast"),
    ("SC", "south carolina", "Atlantic", "South"),
    ("SD", "south dakota", "Central", "Midwest"),
    ("TN", "tennessee", "Mississippi", "South"),
    ("TX", "texas", "Central", "South"),
    ("UT", "utah", "Pacific", "West"),
    ("VT", "vermont", "Atlantic", "Northeast"),
    ("VA", "virginia", "Atlantic", "South"),
    ("WA", "washington", "Pacific", "West"),
    ("WV", "west virginia", "Atlantic", "South"),
    ("WI", "wisconsin", "Mississippi", "Midwest"),
    ("WY", "wyoming", "Central", "West"),
)

REGIONS = ("Northeast", "Midwest", "South", "West")
REGION_POPULATION = {  # 2020 Census resident population by region
    "Northeast": 57_609_148,
    "Midwest": 68_985_454,
    "South": 126_266_107,
    "West": 78_588_572,
}
REGION_CENTRES = {  # (latitude, longitude) rough population centres; assumed, for distances only
    "Northeast": (41.5, -74.5),
    "Midwest": (41.5, -88.5),
    "South": (33.5, -87.0),
    "West": (38.0, -117.0),
}

_EARTH_KM = 6371.0


def km(lat: float, lon: float) -> tuple[float, float]:
    """(x, y) in km on an equirectangular projection centred on 39°N (enough for kernel distances of a few
    tens of km; not for maps)."""
    return (
        _EARTH_KM * math.radians(lon) * math.cos(math.radians(39.0)),
        _EARTH_KM * math.radians(lat),
    )
