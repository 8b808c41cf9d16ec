"""Embedded facts for the demo: world cities and the country each is in, written for this project.

`city_statements` turns the table into Geometry-of-Truth-style statements, affirmative ("The city of
Paris is in France.") and negated ("The city of Paris is not in France."), with balanced truth: every
city gives one statement of each (polarity, truth) cell, the wrong country drawn with a seed from the
other countries in the table. Cities whose names are shared by well-known cities elsewhere (Hyderabad,
Perth, Cordoba, ...) are left out so that every label is unambiguous.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import DataError

# country as it reads after "is in" -> cities in it
_TABLE: dict[str, tuple[str, ...]] = {
    "France": ("Paris", "Marseille", "Lyon", "Toulouse", "Bordeaux"),
    "Germany": ("Berlin", "Munich", "Hamburg", "Frankfurt", "Cologne"),
    "Italy": ("Rome", "Milan", "Naples", "Turin", "Florence", "Venice"),
    "Spain": ("Madrid", "Barcelona", "Seville", "Bilbao"),
    "the United Kingdom": ("London", "Manchester", "Liverpool", "Edinburgh", "Glasgow"),
    "Japan": ("Tokyo", "Osaka", "Kyoto", "Yokohama", "Sapporo", "Nagoya"),
    "China": ("Beijing", "Shanghai", "Shenzhen", "Guangzhou", "Chengdu", "Wuhan"),
    "India": ("Mumbai", "Delhi", "Bangalore", "Chennai", "Kolkata", "Pune"),
    "the United States": ("Chicago", "Houston", "Seattle", "Boston", "Philadelphia", "Denver", "Atlanta"),
    "Canada": ("Toronto", "Montreal", "Vancouver", "Calgary", "Ottawa"),
    "Brazil": ("Rio de Janeiro", "Sao Paulo", "Brasilia", "Recife", "Fortaleza"),
    "Argentina": ("Buenos Aires", "Rosario", "Mendoza"),
    "Mexico": ("Mexico City", "Monterrey", "Tijuana", "Cancun"),
    "Australia": ("Sydney", "Melbourne", "Brisbane", "Adelaide"),
    "Russia": ("Moscow", "Novosibirsk", "Yekaterinburg", "Kazan"),
    "Egypt": ("Cairo", "Alexandria", "Luxor", "Giza"),
    "Nigeria": ("Lagos", "Abuja", "Kano", "Ibadan"),
    "Kenya": ("Nairobi", "Mombasa"),
    "South Africa": ("Johannesburg", "Cape Town", "Durban", "Pretoria"),
    "Turkey": ("Istanbul", "Ankara", "Izmir", "Antalya"),
    "Iran": ("Tehran", "Isfahan", "Shiraz", "Tabriz"),
    "Pakistan": ("Karachi", "Lahore", "Islamabad", "Peshawar"),
    "Indonesia": ("Jakarta", "Surabaya", "Bandung"),
    "Thailand": ("Bangkok", "Chiang Mai", "Phuket"),
    "Vietnam": ("Hanoi", "Ho Chi Minh City", "Da Nang"),
    "South Korea": ("Seoul", "Busan", "Incheon", "Daegu"),
    "the Philippines": ("Manila", "Cebu", "Davao"),
    "Poland": ("Warsaw", "Krakow", "Gdansk", "Wroclaw"),
    "the Netherlands": ("Amsterdam", "Rotterdam", "Utrecht"),
    "Belgium": ("Brussels", "Antwerp", "Ghent"),
    "Sweden": ("Stockholm", "Gothenburg", "Malmo"),
    "Norway": ("Oslo", "Bergen"),
    "Greece": ("Athens", "Thessaloniki"),
    "Portugal": ("Lisbon", "Porto"),
    "Austria": ("Vienna", "Salzburg", "Innsbruck"),
    "Switzerland": ("Zurich", "Geneva", "Basel"),
    "Peru": ("Lima", "Cusco", "Arequipa"),
    "Colombia": ("Bogota", "Medellin", "Cali"),
    "Chile": ("Valparaiso", "Antofagasta"),
    "Saudi Arabia": ("Riyadh", "Jeddah", "Mecca"),
    "Morocco": ("Casablanca", "Marrakesh", "Rabat", "Fez"),
    "Ukraine": ("Kyiv", "Kharkiv", "Lviv"),
    "Ireland": ("Dublin", "Cork"),
    "the Czech Republic": ("Prague", "Brno"),
    "Hungary": ("Budapest", "Debrecen"),
    "Iraq": ("Baghdad", "Basra", "Mosul"),
    "Bangladesh": ("Dhaka", "Chittagong"),
    "Ethiopia": ("Addis Ababa",),
    "Cuba": ("Havana",),
    "Denmark": ("Copenhagen", "Aarhus"),
    "Finland": ("Helsinki", "Tampere"),
}

CITIES: tuple[tuple[str, str], ...] = tuple((city, country) for country, cities in _TABLE.items() for city in cities)
COUNTRIES: tuple[str, ...] = tuple(_TABLE)


@dataclass(frozen=True)
class CityStatement:
    """One generated city statement with its truth label, its polarity and both countries, so probes can be trained on
    one polarity and tested on the other."""
    text: str  # "The city of Paris is not in France."
    label: int  # 1 true, 0 false
    polarity: int  # +1 affirmative, -1 negated
    city: str
    country: str  # the country the statement names (right or wrong)
    true_country: str

    @property
    def question(self) -> str:
        """The affirmative claim as a yes/no question (what the causal test asks the model)."""
        return f"Is it true that the city of {self.city} is in {self.country}? Answer:"


def city_text(city: str, country: str, negated: bool = False) -> str:
    """The statement "The city of X is (not) in Y.": the one template every city statement uses."""
    return f"The city of {city} is {'not ' if negated else ''}in {country}."


def city_statements(seed: int = 0, limit: int | None = None) -> list[CityStatement]:
    """Four statements per city (affirmative true, affirmative false, negated true, negated false), in table
    order; the wrong country for a city is one seeded draw, shared by its false affirmative and its true
    negation. `limit` keeps the first `limit` cities (for fast tests)."""
    rng = random.Random(seed)
    cities = CITIES if limit is None else CITIES[:limit]
    if limit is not None and limit < 2:
        raise DataError(f"city_statements: limit must be at least 2 cities, got {limit}")
    out: list[CityStatement] = []
    for city, country in cities:
        wrong = rng.choice([c for c in COUNTRIES if c != country])
        for named, negated in ((country, False), (wrong, False), (country, True), (wrong, True)):
            label = int((named == country) != negated)
            out.append(CityStatement(city_text(city, named, negated), label, -1 if negated else 1, city, named,
                                     country))
    return out
