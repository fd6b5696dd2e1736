# Run: uv run python scripts/make_quickstart_data.py   (or: python3 scripts/make_quickstart_data.py)
"""Generate the quickstart tool-use data set under data/quickstart/.

Writes train.jsonl (400 rows) and eval.jsonl (60 rows) in the OpenAI chat form:
one JSON object per line with "messages" and "tools". About 75% of rows call one
or two tools and 25% are answered in plain text. Every tool argument appears
verbatim in the user's message, so evaluation can compare arguments exactly.

The output depends only on the fixed seeds below, so every run writes the same
bytes. `--check` regenerates in memory and exits 1 when the files on disk differ.
Standard library only, Python >= 3.10.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

TRAIN_SEED = 20250101
EVAL_SEED = 20250202
TRAIN_ROWS = 400
EVAL_ROWS = 60
NO_TOOL_SHARE = 0.25
# Share of tool rows whose assistant turn makes two calls at once.
PARALLEL_CALL_SHARE = 0.10
MAX_ATTEMPTS_PER_ROW = 200

DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "data" / "quickstart"
RUN_COMMAND = "python scripts/make_quickstart_data.py"


# ---------------------------------------------------------------------------
# Tool schemas


def _function(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


# Descriptions are kept short because the tool schemas are most of each rendered row's tokens.
TOOLS = {
    "get_weather": _function(
        "get_weather",
        "Get the current weather in a city. Default unit: celsius.",
        {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        ["city"],
    ),
    "convert_currency": _function(
        "convert_currency",
        "Convert money between currencies given as ISO codes.",
        {"amount": {"type": "number"}, "from_currency": {"type": "string"}, "to_currency": {"type": "string"}},
        ["amount", "from_currency", "to_currency"],
    ),
    "calculate": _function(
        "calculate",
        "Evaluate an arithmetic expression.",
        {"expression": {"type": "string"}},
        ["expression"],
    ),
    "get_time": _function(
        "get_time",
        "Get the local time in an IANA time zone.",
        {"timezone": {"type": "string"}},
        ["timezone"],
    ),
    "convert_units": _function(
        "convert_units",
        "Convert a length, mass, volume or temperature.",
        {"value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}},
        ["value", "from_unit", "to_unit"],
    ),
    "search_flights": _function(
        "search_flights",
        "Search flights between two cities on a date (YYYY-MM-DD).",
        {"origin": {"type": "string"}, "destination": {"type": "string"}, "date": {"type": "string"}},
        ["origin", "destination", "date"],
    ),
    "set_reminder": _function(
        "set_reminder",
        "Set a reminder that fires after some minutes.",
        {"text": {"type": "string"}, "minutes": {"type": "integer"}},
        ["text", "minutes"],
    ),
    "translate": _function(
        "translate",
        "Translate text into another language.",
        {"text": {"type": "string"}, "target_language": {"type": "string"}},
        ["text", "target_language"],
    ),
}
TOOL_NAMES = list(TOOLS)

# Noun phrases for "I can help with ..." replies.
CAPABILITIES = {
    "get_weather": "weather lookups",
    "convert_currency": "currency conversion",
    "calculate": "arithmetic",
    "get_time": "the local time in a time zone",
    "convert_units": "unit conversion",
    "search_flights": "flight searches",
    "set_reminder": "reminders",
    "translate": "translation",
}


# ---------------------------------------------------------------------------
# Value pools. Rates, offsets and translations are plausible but not live data.

CITIES = [
    "Paris", "Tokyo", "Lima", "Nairobi", "Oslo", "Toronto", "Cairo", "Mumbai",
    "Sydney", "Berlin", "Madrid", "Seoul", "Chicago", "Lisbon", "Reykjavik",
    "Buenos Aires", "Cape Town", "Hanoi", "Vancouver", "Istanbul", "Mexico City",
    "Dublin", "Warsaw", "Athens", "Denver", "Manila", "Santiago", "Helsinki",
]
# Adjectives, so answers can read "It's rainy and 6°C in Oslo".
WEATHER_CONDITIONS = ["sunny", "partly cloudy", "cloudy", "rainy", "stormy", "windy", "foggy", "clear"]

# Units of currency per 1 USD.
USD_RATES = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 151.4, "CHF": 0.88, "CAD": 1.36,
    "AUD": 1.52, "INR": 83.2, "MXN": 17.1, "SEK": 10.6, "BRL": 5.05, "NZD": 1.65,
}
CURRENCIES = list(USD_RATES)

# Standard-time UTC offsets in minutes. Daylight saving time is ignored.
TIMEZONE_OFFSETS = {
    "UTC": 0, "Europe/London": 0, "Europe/Paris": 60, "Europe/Berlin": 60,
    "Europe/Athens": 120, "Africa/Nairobi": 180, "Asia/Dubai": 240,
    "Asia/Kolkata": 330, "Asia/Singapore": 480, "Asia/Tokyo": 540,
    "Australia/Sydney": 600, "Pacific/Auckland": 720, "America/Sao_Paulo": -180,
    "America/New_York": -300, "America/Chicago": -360, "America/Denver": -420,
    "America/Los_Angeles": -480,
}
TIMEZONES = list(TIMEZONE_OFFSETS)

# (from_unit, to_unit) -> function converting a value.
UNIT_CONVERSIONS = {
    ("kilometers", "miles"): lambda v: v * 0.621371,
    ("miles", "kilometers"): lambda v: v * 1.609344,
    ("kilograms", "pounds"): lambda v: v * 2.204623,
    ("pounds", "kilograms"): lambda v: v * 0.453592,
    ("meters", "feet"): lambda v: v * 3.28084,
    ("feet", "meters"): lambda v: v * 0.3048,
    ("liters", "gallons"): lambda v: v * 0.264172,
    ("gallons", "liters"): lambda v: v * 3.785412,
    ("celsius", "fahrenheit"): lambda v: v * 9 / 5 + 32,
    ("fahrenheit", "celsius"): lambda v: (v - 32) * 5 / 9,
}
UNIT_PAIRS = list(UNIT_CONVERSIONS)
TEMPERATURE_UNITS = ("celsius", "fahrenheit")

FLIGHT_PREFIXES = ["QK", "LV", "TR", "NB", "ZU", "HX"]

REMINDER_TASKS = [
    "call the dentist", "take the bread out of the oven", "move the car",
    "send the invoice", "water the plants", "join the team call", "buy milk",
    "take a break", "check the laundry", "pick up the package", "stretch",
    "feed the cat", "book the meeting room", "reply to Sam", "turn off the heater",
]

# English phrase -> translations. Written for this data set.
TRANSLATIONS = {
    "good morning": {"Spanish": "buenos días", "French": "bonjour", "German": "guten Morgen", "Italian": "buongiorno"},
    "thank you very much": {"Spanish": "muchas gracias", "French": "merci beaucoup", "German": "vielen Dank", "Italian": "grazie mille"},
    "where is the train station": {"Spanish": "dónde está la estación de tren", "French": "où est la gare", "German": "wo ist der Bahnhof", "Italian": "dov'è la stazione"},
    "see you tomorrow": {"Spanish": "hasta mañana", "French": "à demain", "German": "bis morgen", "Italian": "a domani"},
    "how much does this cost": {"Spanish": "cuánto cuesta esto", "French": "combien ça coûte", "German": "wie viel kostet das", "Italian": "quanto costa questo"},
    "I would like a coffee": {"Spanish": "quisiera un café", "French": "je voudrais un café", "German": "ich hätte gern einen Kaffee", "Italian": "vorrei un caffè"},
    "the bill, please": {"Spanish": "la cuenta, por favor", "French": "l'addition, s'il vous plaît", "German": "die Rechnung, bitte", "Italian": "il conto, per favore"},
    "good night": {"Spanish": "buenas noches", "French": "bonne nuit", "German": "gute Nacht", "Italian": "buona notte"},
    "I am lost": {"Spanish": "estoy perdido", "French": "je suis perdu", "German": "ich habe mich verlaufen", "Italian": "mi sono perso"},
    "nice to meet you": {"Spanish": "encantado de conocerte", "French": "enchanté", "German": "freut mich", "Italian": "piacere di conoscerti"},
}
PHRASES = list(TRANSLATIONS)
LANGUAGES = ["Spanish", "French", "German", "Italian"]

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a helpful assistant with tools. Call one only when the request needs it.",
    "Answer briefly. Use a tool when the request needs live data or an action.",
    "You are a concise assistant.",
    "Help the user with everyday tasks and keep replies short.",
]


# ---------------------------------------------------------------------------
# Surface variation


def vary_template(rng: random.Random, template: str) -> str:
    """Vary the casing and final punctuation of a template's literal text.

    Placeholders are lowercase names in braces, so lowercasing the template leaves
    them intact and the argument values keep their exact spelling.
    """
    roll = rng.random()
    if roll < 0.15:
        template = template.lower()
    elif roll < 0.35:
        template = template[0].lower() + template[1:]

    roll = rng.random()
    if template[-1] in ".?!" and roll < 0.25:
        template = template[:-1]
    elif template[-1] == "." and roll < 0.35:
        template = template[:-1] + "!"
    return template


def format_number(value: int | float) -> int | float:
    """Return an int for whole numbers so JSON and the message text both drop the '.0'."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def join_phrases(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------
# Requests that need tools


@dataclass
class Call:
    name: str
    arguments: dict
    result: dict


@dataclass
class Exchange:
    """One user request, the tool calls that serve it and the final answer."""

    user: str
    calls: list[Call]
    answer: str


def weather_result(rng: random.Random, city: str, unit: str | None) -> dict:
    celsius = rng.randint(-8, 36)
    condition = rng.choice(WEATHER_CONDITIONS)
    if celsius <= 0 and rng.random() < 0.6:
        condition = "snowy"
    if unit == "fahrenheit":
        temperature = round(celsius * 9 / 5 + 32)
    else:
        temperature = celsius
    return {"city": city, "temperature": temperature, "unit": unit or "celsius", "condition": condition}


def describe_weather(result: dict) -> str:
    symbol = "°F" if result["unit"] == "fahrenheit" else "°C"
    return f"{result['condition']} and {result['temperature']}{symbol} in {result['city']}"


def weather_arguments(city: str, unit: str | None) -> dict:
    return {"city": city, "unit": unit} if unit else {"city": city}


def build_weather(rng: random.Random) -> Exchange:
    city = rng.choice(CITIES)
    unit = rng.choice(TEMPERATURE_UNITS) if rng.random() < 0.35 else None
    if unit:
        template = rng.choice([
            "What's the weather in {city} in {unit}?",
            "Give me the temperature in {city} in {unit}.",
            "Current weather for {city}, in {unit} please.",
            "How warm is it in {city}? Use {unit}.",
            "Weather in {city} ({unit})?",
        ])
    else:
        template = rng.choice([
            "What's the weather in {city}?",
            "How's the weather in {city} today?",
            "Weather for {city}, please.",
            "Is it cold in {city} right now?",
            "Tell me the current weather in {city}.",
            "Do I need an umbrella in {city} today?",
            "What's it like outside in {city}?",
        ])
    user = vary_template(rng, template).format(city=city, unit=unit)
    result = weather_result(rng, city, unit)
    answer = rng.choice([
        "It's {weather} right now.",
        "Right now it's {weather}.",
        "Current conditions: {weather}.",
    ]).format(weather=describe_weather(result))
    return Exchange(user, [Call("get_weather", weather_arguments(city, unit), result)], answer)


def build_weather_pair(rng: random.Random) -> Exchange:
    first, second = rng.sample(CITIES, 2)
    unit = rng.choice(TEMPERATURE_UNITS) if rng.random() < 0.3 else None
    if unit:
        template = rng.choice([
            "What's the weather in {first} and {second}, in {unit}?",
            "Compare the temperature in {first} and {second} in {unit}.",
        ])
    else:
        template = rng.choice([
            "What's the weather in {first} and {second}?",
            "Compare the weather in {first} and {second}.",
            "How's the weather in {first} and in {second} right now?",
            "Weather in {first} vs {second}?",
        ])
    user = vary_template(rng, template).format(first=first, second=second, unit=unit)
    calls = [Call("get_weather", weather_arguments(city, unit), weather_result(rng, city, unit)) for city in (first, second)]
    answer = "It's {a}, and {b}.".format(a=describe_weather(calls[0].result), b=describe_weather(calls[1].result))
    return Exchange(user, calls, answer)


def random_amount(rng: random.Random) -> int | float:
    if rng.random() < 0.6:
        return rng.choice([5, 10, 20, 25, 40, 50, 75, 100, 150, 200, 250, 300, 500, 750, 1000, 1200, 2500, 5000])
    if rng.random() < 0.5:
        return rng.randint(2, 3000)
    cents = rng.randint(100, 99_999)
    return format_number(cents / 100)


def currency_call(amount: int | float, source: str, target: str) -> Call:
    rate = round(USD_RATES[target] / USD_RATES[source], 4)
    converted = round(amount * rate, 2)
    arguments = {"amount": amount, "from_currency": source, "to_currency": target}
    result = {"result": format_number(converted), "currency": target, "rate": rate}
    return Call("convert_currency", arguments, result)


def build_currency(rng: random.Random) -> Exchange:
    amount = random_amount(rng)
    source, target = rng.sample(CURRENCIES, 2)
    template = rng.choice([
        "Convert {amount} {source} to {target}.",
        "How much is {amount} {source} in {target}?",
        "What's {amount} {source} in {target}?",
        "I have {amount} {source}. How much is that in {target}?",
        "Change {amount} {source} into {target}, please.",
        "{amount} {source} to {target}?",
    ])
    user = vary_template(rng, template).format(amount=amount, source=source, target=target)
    call = currency_call(amount, source, target)
    answer = rng.choice([
        "{amount} {source} is about {result} {target}.",
        "That's roughly {result} {target} (rate {rate}).",
        "At a rate of {rate}, {amount} {source} comes to {result} {target}.",
    ]).format(amount=amount, source=source, target=target, **{k: call.result[k] for k in ("rate", "result")})
    return Exchange(user, [call], answer)


def build_currency_pair(rng: random.Random) -> Exchange:
    amount = random_amount(rng)
    source, first, second = rng.sample(CURRENCIES, 3)
    template = rng.choice([
        "Convert {amount} {source} to {first} and to {second}.",
        "How much is {amount} {source} in {first} and in {second}?",
        "What's {amount} {source} in both {first} and {second}?",
    ])
    user = vary_template(rng, template).format(amount=amount, source=source, first=first, second=second)
    calls = [currency_call(amount, source, target) for target in (first, second)]
    answer = "{amount} {source} is about {a} {first} or {b} {second}.".format(
        amount=amount, source=source, first=first, second=second,
        a=calls[0].result["result"], b=calls[1].result["result"],
    )
    return Exchange(user, calls, answer)


def random_expression(rng: random.Random) -> tuple[str, int]:
    """Return an arithmetic expression and its exact integer value."""
    a, b, c = rng.randint(2, 999), rng.randint(2, 99), rng.randint(2, 50)
    shape = rng.randrange(6)
    if shape == 0:
        tokens, value = [a, "+", b * c], a + b * c
    elif shape == 1:
        tokens, value = [a, "-", b], a - b
    elif shape == 2:
        tokens, value = [a, "*", b], a * b
    elif shape == 3:
        # Division by a factor keeps the result an integer.
        tokens, value = [b * c, "/", c], b
    elif shape == 4:
        tokens, value = [a, "*", c, "+", b], a * c + b
    else:
        tokens, value = ["(", a, "+", b, ")", "*", c], (a + b) * c
    separator = " " if rng.random() < 0.7 else ""
    text = separator.join(str(token) for token in tokens)
    return text.replace("( ", "(").replace(" )", ")"), value


def build_calculate(rng: random.Random) -> Exchange:
    expression, value = random_expression(rng)
    template = rng.choice([
        "What is {expression}?",
        "Calculate {expression}.",
        "Compute {expression} for me.",
        "How much is {expression}?",
        "Can you work out {expression}?",
        "Quick math: {expression}",
        "Evaluate {expression}, please.",
    ])
    user = vary_template(rng, template).format(expression=expression)
    result = {"result": value}
    answer = rng.choice(["{expression} = {value}.", "The result is {value}.", "That comes to {value}."]).format(
        expression=expression, value=value
    )
    return Exchange(user, [Call("calculate", {"expression": expression}, result)], answer)


def time_result(timezone: str, utc_minutes: int) -> dict:
    offset = TIMEZONE_OFFSETS[timezone]
    local = (utc_minutes + offset) % (24 * 60)
    sign = "+" if offset >= 0 else "-"
    return {
        "timezone": timezone,
        "local_time": f"{local // 60:02d}:{local % 60:02d}",
        "utc_offset": f"{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}",
    }


def build_time(rng: random.Random) -> Exchange:
    timezone = rng.choice(TIMEZONES)
    template = rng.choice([
        "What time is it in {timezone}?",
        "Current time in {timezone}, please.",
        "What's the local time in the {timezone} time zone?",
        "Tell me the time in {timezone}.",
        "Time check for {timezone}?",
    ])
    user = vary_template(rng, template).format(timezone=timezone)
    result = time_result(timezone, rng.randrange(24 * 60))
    answer = rng.choice([
        "It's {local_time} in {timezone}.",
        "The local time in {timezone} is {local_time} (UTC{utc_offset}).",
        "Right now it's {local_time} there.",
    ]).format(**result)
    return Exchange(user, [Call("get_time", {"timezone": timezone}, result)], answer)


def build_time_pair(rng: random.Random) -> Exchange:
    first, second = rng.sample(TIMEZONES, 2)
    template = rng.choice([
        "What time is it in {first} and {second}?",
        "Current time in {first} and in {second}, please.",
        "Give me the local time for {first} and {second}.",
    ])
    user = vary_template(rng, template).format(first=first, second=second)
    utc_minutes = rng.randrange(24 * 60)
    calls = [Call("get_time", {"timezone": zone}, time_result(zone, utc_minutes)) for zone in (first, second)]
    answer = "It's {a} in {first} and {b} in {second}.".format(
        first=first, second=second, a=calls[0].result["local_time"], b=calls[1].result["local_time"]
    )
    return Exchange(user, calls, answer)


def build_units(rng: random.Random) -> Exchange:
    source, target = rng.choice(UNIT_PAIRS)
    if rng.random() < 0.7:
        value = rng.randint(2, 500)
    else:
        value = format_number(rng.randint(15, 9999) / 10)
    if source in TEMPERATURE_UNITS:
        template = rng.choice([
            "Convert {value} degrees {source} to {target}.",
            "What is {value} degrees {source} in {target}?",
            "{value} degrees {source} in {target}?",
        ])
    else:
        template = rng.choice([
            "Convert {value} {source} to {target}.",
            "How many {target} is {value} {source}?",
            "What's {value} {source} in {target}?",
            "I need {value} {source} in {target}.",
            "{value} {source} to {target}, please.",
        ])
    user = vary_template(rng, template).format(value=value, source=source, target=target)
    converted = format_number(round(UNIT_CONVERSIONS[(source, target)](value), 2))
    arguments = {"value": value, "from_unit": source, "to_unit": target}
    result = {"result": converted, "unit": target}
    answer = rng.choice([
        "{value} {source} is about {converted} {target}.",
        "That's roughly {converted} {target}.",
        "{value} {source} = {converted} {target}.",
    ]).format(value=value, source=source, target=target, converted=converted)
    return Exchange(user, [Call("convert_units", arguments, result)], answer)


def build_flights(rng: random.Random) -> Exchange:
    origin, destination = rng.sample(CITIES, 2)
    date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    template = rng.choice([
        "Find flights from {origin} to {destination} on {date}.",
        "Are there any flights from {origin} to {destination} on {date}?",
        "I need to fly from {origin} to {destination} on {date}.",
        "Search flights {origin} to {destination}, {date}.",
        "Show me flights leaving {origin} for {destination} on {date}.",
        "Any {origin} to {destination} flights on {date}?",
    ])
    user = vary_template(rng, template).format(origin=origin, destination=destination, date=date)

    count = rng.choice([0, 1, 1, 2, 2, 2])
    flights = []
    for _ in range(count):
        flights.append({
            "flight": f"{rng.choice(FLIGHT_PREFIXES)}{rng.randint(100, 989)}",
            "departs": f"{rng.randint(5, 22):02d}:{rng.choice([0, 10, 15, 25, 30, 40, 45, 55]):02d}",
            "price_usd": rng.randint(69, 1400),
        })
    flights.sort(key=lambda flight: flight["price_usd"])
    arguments = {"origin": origin, "destination": destination, "date": date}
    result = {"flights": flights}

    if not flights:
        answer = f"I couldn't find any flights from {origin} to {destination} on {date}. Want to try another date?"
    elif count == 1:
        only = flights[0]
        answer = (
            f"There is one flight from {origin} to {destination} on {date}: "
            f"{only['flight']} at {only['departs']} for {only['price_usd']} USD."
        )
    else:
        cheapest = flights[0]
        answer = (
            f"I found {count} flights on {date}. The cheapest from {origin} to {destination} is "
            f"{cheapest['flight']} at {cheapest['departs']} for {cheapest['price_usd']} USD."
        )
    return Exchange(user, [Call("search_flights", arguments, result)], answer)


def build_reminder(rng: random.Random) -> Exchange:
    task = rng.choice(REMINDER_TASKS)
    minutes = rng.choice([5, 10, 15, 20, 25, 30, 40, 45, 60, 90, 120]) if rng.random() < 0.7 else rng.randint(2, 180)
    template = rng.choice([
        "Remind me to {task} in {minutes} minutes.",
        "Set a reminder to {task} in {minutes} minutes.",
        "In {minutes} minutes, remind me to {task}.",
        "Can you remind me in {minutes} minutes to {task}?",
        "Ping me in {minutes} minutes to {task}.",
    ])
    user = vary_template(rng, template).format(task=task, minutes=minutes)
    result = {"status": "scheduled", "reminder_id": f"rem_{rng.randint(1000, 9999)}"}
    answer = rng.choice([
        "Done. I'll remind you to {task} in {minutes} minutes.",
        "Reminder set: {task}, in {minutes} minutes.",
        "Okay, you'll get a reminder to {task} in {minutes} minutes.",
    ]).format(task=task, minutes=minutes)
    return Exchange(user, [Call("set_reminder", {"text": task, "minutes": minutes}, result)], answer)


TRANSLATE_TEMPLATES = [
    'Translate "{text}" into {language}.',
    "How do you say '{text}' in {language}?",
    'What is "{text}" in {language}?',
    "Translate to {language}: {text}",
    "Can you put '{text}' into {language}?",
]


def build_translate(rng: random.Random) -> Exchange:
    text = rng.choice(PHRASES)
    language = rng.choice(LANGUAGES)
    user = vary_template(rng, rng.choice(TRANSLATE_TEMPLATES)).format(text=text, language=language)
    translation = TRANSLATIONS[text][language]
    result = {"translation": translation}
    answer = rng.choice([
        'In {language}, "{text}" is "{translation}".',
        'That would be "{translation}".',
        '"{translation}" is how you say it in {language}.',
    ]).format(text=text, language=language, translation=translation)
    return Exchange(user, [Call("translate", {"text": text, "target_language": language}, result)], answer)


def build_translate_pair(rng: random.Random) -> Exchange:
    text = rng.choice(PHRASES)
    first, second = rng.sample(LANGUAGES, 2)
    template = rng.choice([
        'Translate "{text}" into {first} and {second}.',
        "How do you say '{text}' in {first} and in {second}?",
    ])
    user = vary_template(rng, template).format(text=text, first=first, second=second)
    calls = [
        Call("translate", {"text": text, "target_language": language},
             {"translation": TRANSLATIONS[text][language]})
        for language in (first, second)
    ]
    answer = 'In {first} it\'s "{a}", and in {second} it\'s "{b}".'.format(
        first=first, second=second, a=calls[0].result["translation"], b=calls[1].result["translation"]
    )
    return Exchange(user, calls, answer)


SINGLE_CALL_BUILDERS = {
    "get_weather": build_weather,
    "convert_currency": build_currency,
    "calculate": build_calculate,
    "get_time": build_time,
    "convert_units": build_units,
    "search_flights": build_flights,
    "set_reminder": build_reminder,
    "translate": build_translate,
}
PARALLEL_CALL_BUILDERS = {
    "get_weather": build_weather_pair,
    "convert_currency": build_currency_pair,
    "get_time": build_time_pair,
    "translate": build_translate_pair,
}


# ---------------------------------------------------------------------------
# Requests answered without tools

SMALL_TALK = [
    (["Hi", "Hello", "Hey there", "Good morning", "Good evening", "Hi, anyone there?"],
     ["Hello! How can I help you today?", "Hi! What can I do for you?"]),
    (["Thanks", "Thank you, that helps", "Thanks a lot", "Great, thanks"],
     ["You're welcome! Let me know if you need anything else.", "Glad I could help."]),
    (["How are you?", "How's it going?"],
     ["I'm doing well, thanks for asking. What can I do for you?"]),
    (["Bye", "See you later", "That's all for now"],
     ["Goodbye! Have a great day.", "Bye! Come back any time."]),
]
SELF_DESCRIPTION_QUESTIONS = ["Who are you?", "What can you do?", "What can you help me with?", "What are you able to do?"]

# (question, answer) pairs of common facts that need no live data and no arithmetic.
GENERAL_KNOWLEDGE = [
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Canada?", "Ottawa is the capital of Canada."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra, not Sydney."),
    ("Who wrote Pride and Prejudice?", "Jane Austen wrote Pride and Prejudice, published in 1813."),
    ("Which planet is the largest in our solar system?", "Jupiter is the largest planet in the solar system."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What language is spoken in Brazil?", "The official language of Brazil is Portuguese."),
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("What does CPU stand for?", "CPU stands for central processing unit."),
    ("Which planet is called the Red Planet?", "Mars is known as the Red Planet."),
    ("What gas do plants take in from the air?", "Plants take in carbon dioxide and release oxygen."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is a haiku?", "A haiku is a short Japanese poem of three lines, traditionally with 5, 7 and 5 syllables."),
    ("Why is the sky blue?", "Air scatters blue light more than red light, so scattered blue light reaches your eyes from all over the sky."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and release oxygen."),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong, in July 1969."),
    ("What is the smallest prime number?", "The smallest prime number is 2."),
    ("What does HTTP stand for?", "HTTP stands for Hypertext Transfer Protocol."),
    ("Give me a tip for sleeping better.", "Try to go to bed and wake up at the same time every day, even on weekends."),
    ("What's a good way to learn vocabulary?", "Review a few words every day with spaced repetition, and use them in your own sentences."),
]
QUESTION_PREFIXES = ["", "", "", "Quick question: ", "Hey, ", "I was wondering: ", "Random question. "]

# Actions that no tool in TOOLS can perform.
OUT_OF_SCOPE_ACTIONS = [
    "book a table for two tonight", "send an email to the landlord", "order a large pizza",
    "play some jazz", "turn off the kitchen lights", "call a taxi to the airport",
    "pay the electricity bill", "buy two concert tickets", "unlock the front door",
    "post a photo to my feed", "book a hotel in Rome", "text Maria that I'm running late",
    "order new printer ink", "start the dishwasher",
]
OUT_OF_SCOPE_TEMPLATES = ["Can you {action}?", "Please {action}.", "I need you to {action}.", "Could you {action} for me?"]

# Replies when the request needs a tool that this row does not offer. Arithmetic is left
# out because the plain-text answer to a sum is the result itself, not a refusal.
MISSING_TOOL_REPLIES = {
    "get_weather": "I can't check the current weather because no weather tool is available here.",
    "convert_currency": "I can't look up live exchange rates because no currency tool is available here.",
    "get_time": "I can't look up the current time because no clock tool is available here.",
    "convert_units": "I don't have a unit conversion tool here, so I can't convert that reliably.",
    "search_flights": "I can't search flights because no flight search tool is available here.",
    "set_reminder": "I can't set reminders because no reminder tool is available here.",
    "translate": "I don't have a translation tool here, so I can't translate that reliably.",
}
# Tools that could also serve a request, so a missing-tool row must not offer them either.
OVERLAPPING_TOOLS = {"convert_units": ["calculate"]}


def capability_sentence(offered: list[str]) -> str:
    return "I can help with " + join_phrases([CAPABILITIES[name] for name in offered]) + "."


def build_small_talk(rng: random.Random, offered: list[str]) -> tuple[str, str]:
    if rng.random() < 0.25:
        user = vary_template(rng, rng.choice(SELF_DESCRIPTION_QUESTIONS))
        return user, "I'm an assistant. " + capability_sentence(offered) + " I can also answer general questions."
    messages, replies = rng.choice(SMALL_TALK)
    user = rng.choice(messages)
    if not user.endswith("?"):
        user += rng.choice(["", "!", "."])
    user = vary_template(rng, user)
    return user, rng.choice(replies)


def build_knowledge(rng: random.Random) -> tuple[str, str]:
    question, answer = rng.choice(GENERAL_KNOWLEDGE)
    prefix = rng.choice(QUESTION_PREFIXES)
    if prefix:
        question = question[0].lower() + question[1:]
    return vary_template(rng, prefix + question), answer


def build_out_of_scope(rng: random.Random, offered: list[str]) -> tuple[str, str]:
    action = rng.choice(OUT_OF_SCOPE_ACTIONS)
    user = vary_template(rng, rng.choice(OUT_OF_SCOPE_TEMPLATES)).format(action=action)
    # Keep "my" in the request but speak to the user in the reply.
    reply_action = action.replace("my ", "your ").replace("I'm", "you're")
    return user, f"Sorry, I can't {reply_action} because none of my tools can do that. " + capability_sentence(offered)


# ---------------------------------------------------------------------------
# Row assembly


def choose_tools(rng: random.Random, needed: list[str], excluded: list[str]) -> list[str]:
    """Return 2 to 4 tool names in random order, containing every needed tool.

    Two or three tools are more likely than four because each schema, serialized with
    json.dumps, costs 55 to 93 tokens with the SmolLM2 tokenizer, so four schemas would
    take most of a short row.
    """
    others = [name for name in TOOL_NAMES if name not in needed and name not in excluded]
    count = max(len(needed), rng.choices([2, 3, 4], weights=[55, 35, 10])[0])
    offered = needed + rng.sample(others, count - len(needed))
    rng.shuffle(offered)
    return offered


def start_messages(rng: random.Random) -> list[dict]:
    if rng.random() < 0.5:
        return [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
    return []


def tool_row(rng: random.Random, exchange: Exchange, arguments_as_object: bool, next_call_id: int) -> dict:
    offered = choose_tools(rng, sorted({call.name for call in exchange.calls}), [])
    messages = start_messages(rng)
    messages.append({"role": "user", "content": exchange.user})
    call_ids = [f"call_{next_call_id + index}" for index in range(len(exchange.calls))]
    tool_calls = []
    for call_id, call in zip(call_ids, exchange.calls):
        arguments = call.arguments if arguments_as_object else json.dumps(call.arguments, ensure_ascii=False)
        tool_calls.append({"id": call_id, "type": "function", "function": {"name": call.name, "arguments": arguments}})
    messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls})
    for call_id, call in zip(call_ids, exchange.calls):
        messages.append({
            "role": "tool",
            "tool_call_id": call_id,
            "name": call.name,
            "content": json.dumps(call.result, ensure_ascii=False),
        })
    messages.append({"role": "assistant", "content": exchange.answer})
    return {"messages": messages, "tools": [TOOLS[name] for name in offered]}


def plain_row(rng: random.Random, kind: str) -> dict:
    if kind == "missing_tool":
        missing = rng.choice(list(MISSING_TOOL_REPLIES))
        excluded = [missing] + OVERLAPPING_TOOLS.get(missing, [])
        offered = choose_tools(rng, [], excluded)
        user = SINGLE_CALL_BUILDERS[missing](rng).user
        answer = MISSING_TOOL_REPLIES[missing] + " " + capability_sentence(offered)
    else:
        offered = choose_tools(rng, [], [])
        if kind == "small_talk":
            user, answer = build_small_talk(rng, offered)
        elif kind == "knowledge":
            user, answer = build_knowledge(rng)
        else:
            user, answer = build_out_of_scope(rng, offered)
    messages = start_messages(rng)
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": answer})
    return {"messages": messages, "tools": [TOOLS[name] for name in offered]}


def user_message(row: dict) -> str:
    return next(message["content"] for message in row["messages"] if message["role"] == "user")


def plan_kinds(rng: random.Random, count: int) -> list[str]:
    """Return a shuffled list of row kinds with fixed shares, so each file hits its targets exactly."""
    no_tool = round(count * NO_TOOL_SHARE)
    tool = count - no_tool
    parallel = max(1, round(tool * PARALLEL_CALL_SHARE))
    small_talk = round(no_tool * 0.2)
    knowledge = round(no_tool * 0.3)
    out_of_scope = round(no_tool * 0.25)
    missing_tool = no_tool - small_talk - knowledge - out_of_scope
    kinds = (
        ["single"] * (tool - parallel) + ["parallel"] * parallel
        + ["small_talk"] * small_talk + ["knowledge"] * knowledge
        + ["out_of_scope"] * out_of_scope + ["missing_tool"] * missing_tool
    )
    rng.shuffle(kinds)
    return kinds


def assign_tool_builders(rng: random.Random, kinds: list[str]) -> list[tuple]:
    """Return a (builder, arguments_as_object) pair for each tool row, in row order.

    Builders cycle through the tools so each tool gets a near-equal share of rows, and
    exactly half of the tool rows (rounded up) store arguments as a JSON object.
    """
    single_names = list(SINGLE_CALL_BUILDERS)
    parallel_names = list(PARALLEL_CALL_BUILDERS)
    single = [SINGLE_CALL_BUILDERS[single_names[i % len(single_names)]] for i in range(kinds.count("single"))]
    parallel = [PARALLEL_CALL_BUILDERS[parallel_names[i % len(parallel_names)]] for i in range(kinds.count("parallel"))]
    rng.shuffle(single)
    rng.shuffle(parallel)
    object_flags = [i % 2 == 0 for i in range(len(single) + len(parallel))]
    rng.shuffle(object_flags)

    assignments = []
    for kind in kinds:
        if kind == "single":
            assignments.append((single.pop(), object_flags.pop()))
        elif kind == "parallel":
            assignments.append((parallel.pop(), object_flags.pop()))
    return assignments


def generate_rows(seed: int, count: int, taken_user_messages: set[str]) -> list[dict]:
    """Generate `count` rows whose user messages are not in `taken_user_messages`, and add them to it."""
    rng = random.Random(seed)
    kinds = plan_kinds(rng, count)
    tool_assignments = iter(assign_tool_builders(rng, kinds))

    rows = []
    next_call_id = 1
    for kind in kinds:
        needs_tool = kind in ("single", "parallel")
        if needs_tool:
            builder, arguments_as_object = next(tool_assignments)
        # Retry until the user message is new, so no eval request repeats a train one.
        for _attempt in range(MAX_ATTEMPTS_PER_ROW):
            if needs_tool:
                row = tool_row(rng, builder(rng), arguments_as_object, next_call_id)
            else:
                row = plain_row(rng, kind)
            if user_message(row) not in taken_user_messages:
                break
        else:
            raise RuntimeError(
                f"Found no unused user message for a {kind!r} row after {MAX_ATTEMPTS_PER_ROW} attempts. "
                "Add templates or values for that kind of row."
            )
        taken_user_messages.add(user_message(row))
        next_call_id += sum(len(message.get("tool_calls", [])) for message in row["messages"])
        rows.append(row)
    return rows


def render_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def build_files() -> dict[str, bytes]:
    """Return the file name and bytes of each split. Eval user messages never repeat a train one."""
    taken_user_messages: set[str] = set()
    train = generate_rows(TRAIN_SEED, TRAIN_ROWS, taken_user_messages)
    evaluation = generate_rows(EVAL_SEED, EVAL_ROWS, taken_user_messages)
    return {"train.jsonl": render_jsonl(train), "eval.jsonl": render_jsonl(evaluation)}


# ---------------------------------------------------------------------------
# Command line


def write_atomically(path: Path, content: bytes) -> None:
    """Write to a temporary file in the same folder, then rename it over `path`."""
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as temp_file:
            temp_file.write(content)
        # mkstemp creates the file as 0600; make the data readable like a normal checkout file.
        os.chmod(temp_name, 0o644)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def check_files(out_dir: Path, files: dict[str, bytes]) -> list[str]:
    """Return a problem line for each file in `out_dir` that is missing or differs from `files`."""
    problems = []
    for name, expected in files.items():
        path = out_dir / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.read_bytes() != expected:
            problems.append(f"{path}: differs from the generator output")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the quickstart tool-use data set (train.jsonl and eval.jsonl).")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR, help=f"output folder (default: {DEFAULT_OUT_DIR})")
    parser.add_argument("--check", action="store_true", help="write nothing, and exit 1 if the files in the output folder are missing or out of date")
    args = parser.parse_args(argv)

    files = build_files()
    if args.check:
        problems = check_files(args.out, files)
        if problems:
            print("Quickstart data is out of date:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            out_option = "" if args.out == DEFAULT_OUT_DIR else f" --out {args.out}"
            print(f"Regenerate it with: {RUN_COMMAND}{out_option}", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        write_atomically(args.out / name, content)
        row_count = content.count(b"\n")
        print(f"wrote {args.out / name} ({row_count} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
