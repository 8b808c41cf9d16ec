"""Short factual questions with gold answers and aliases, written for this project from common knowledge (no
copied data set), plus TruthfulQA questions in the same record, for the "does the model know when its own
answer is wrong?" study.

Tables (greedy smollm2 answers right / wrong: chat prompt `qa_prompt`, 24 new tokens, the rule below):
  cities      "Which country is Lyon in?" from the demo's `facts.CITIES`     125 / 52
  capitals    "What is the capital of Peru?"                                 35 / 52
  elements    "What is the chemical symbol of gold?"                         30 / 8
  authors     "Who wrote Moby-Dick?"                                         31 / 30
  astronomy   planets, moons, stars and spaceflight                          15 / 13
  currencies  "What is the currency of Japan?"                               14 / 22
  continents  "On which continent is Peru?"                                  37 / 6
  all 470 questions                                                         287 / 183
Many wrong answers echo the question or name a wrong place; a garbled city followed by the right country
("Ossaf is the capital of ... Norway") still counts as right: the rule grades the answer's first line.

Answer rule (one copy, used for labels and for the answer span the hidden states are read at):
- `normalise_answer`: SQuAD's rule: lower-case, remove ASCII punctuation, drop the articles a/an/the,
  collapse whitespace ("The U.S.A." -> "usa").
- `is_match(answer, aliases)`: the normalised answer equals, or contains as whole words, a normalised
  alias (an alias that normalises to "" never matches).
- The answer of a generation is its first non-empty line (`first_line`); it is correct when it matches.
- `answer_span`: the answer's tokens inside the generation, chosen WITHOUT the gold answer: the first
  sentence of the first line (up to the first ". ", "! " or "? " or the line's end), trailing punctuation
  left out, whether the answer is right or wrong. A span located with the gold aliases (the earliest alias
  match when right, the sentence when wrong) makes the tokens read differ by label: probes at those positions
  read 1.00 AUROC from layer 0, the token embeddings, which is a leak, not the model's knowledge.
Aliases use the common spellings with and without accents, since the rule keeps accents.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .errors import DataError
from .facts import _TABLE as _CITY_TABLE

ARTICLES = frozenset({"a", "an", "the"})


@dataclass(frozen=True)
class QAItem:
    """One short question with its gold answer and every accepted spelling (`aliases` includes `answer`)."""
    id: str  # "capitals-007"
    question: str
    answer: str
    aliases: tuple[str, ...]
    table: str


# --- the answer rule -------------------------------------------------------------------------------------

def _words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) for each whitespace-separated chunk that survives `normalise_answer`; start/end
    are the chunk's characters from its first to its last non-punctuation character, so a span never takes in
    the period after a word."""
    out = []
    for m in re.finditer(r"\S+", text):
        chunk = m.group()
        keep = [i for i, c in enumerate(chunk) if not unicodedata.category(c).startswith("P")]
        if not keep:
            continue
        for word in unicodedata.normalize("NFKC", "".join(chunk[i] for i in keep)).lower().split():
            if word not in ARTICLES:
                out.append((word, m.start() + keep[0], m.start() + keep[-1] + 1))
    return out


def normalise_answer(text: str) -> str:
    """Lower-case, punctuation (every Unicode punctuation character) removed, Unicode NFKC, articles a/an/the
    dropped, whitespace collapsed (SQuAD's and TriviaQA's rule); the one copy of the rule, which
    `evaluate.answer_match` (semantic entropy's clustering) uses too."""
    return " ".join(w for w, _, _ in _words(text))


def is_match(answer: str, aliases: Sequence[str]) -> bool:
    """The normalised answer equals or contains, as whole words, some normalised alias."""
    ans = f" {normalise_answer(answer)} "
    return any(a and f" {a} " in ans for a in (normalise_answer(x) for x in aliases))


def first_line(text: str) -> tuple[int, int]:
    """Character span of the first non-empty line of `text`, stripped ((n, n) for a blank text)."""
    for m in re.finditer(r"[^\n]+", text):
        line = m.group()
        if line.strip():
            lead = len(line) - len(line.lstrip())
            return m.start() + lead, m.start() + len(line.rstrip())
    return len(text), len(text)


def first_line_done(text: str) -> bool:
    """True once the first non-empty line of a generation has ended (a newline follows some text): a stop rule
    for `generate()` that cannot cut the answer `first_line` reads."""
    s = text.lstrip()
    return bool(s) and "\n" in s


def answer_span(text: str, aliases: Sequence[str]) -> tuple[int, int, bool]:
    """(start, end, correct): the answer's characters in a generation, the first sentence of its first line
    (never chosen with the gold answer: module doc), and whether the first line matches an alias."""
    ls, le = first_line(text)
    if ls == le:
        return ls, le, False
    line = text[ls:le]
    m = re.search(r"[.!?](\s|$)", line)
    sent = line[:m.start()] if m else line
    while sent and (sent[-1].isspace() or unicodedata.category(sent[-1]).startswith("P")):
        sent = sent[:-1]
    if not sent:  # a line of punctuation: the whole line
        sent = line
    return ls, ls + len(sent), is_match(line, aliases)


# --- the tables ----------------------------------------------------------------------------------------

_COUNTRY_ALIASES = {
    "the United Kingdom": ("UK", "Britain", "Great Britain", "United Kingdom of Great Britain and Northern Ireland"),
    "the United States": ("USA", "US", "United States of America"),
    "the Netherlands": ("Holland",),
    "the Czech Republic": ("Czechia",),
    "Russia": ("Russian Federation",),
    "South Korea": ("Republic of Korea",),
    "Vietnam": ("Viet Nam",),
    "Turkey": ("Turkiye", "Türkiye"),
}
_UK_NATIONS = {"Edinburgh": "Scotland", "Glasgow": "Scotland"}  # the rest of the table's UK cities are English


def _cities() -> list[tuple[str, str, tuple[str, ...]]]:
    rows = []
    for country, cities in _CITY_TABLE.items():
        name = country[4:] if country.startswith("the ") else country
        for city in cities:
            extra = _COUNTRY_ALIASES.get(country, ())
            if country == "the United Kingdom":
                extra = extra + (_UK_NATIONS.get(city, "England"),)
            rows.append((f"Which country is {city} in?", name, extra))
    return rows


_CAPITALS = (
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("the United Kingdom", "London"), ("Ireland", "Dublin"), ("the Netherlands", "Amsterdam"),
    ("Belgium", "Brussels"), ("Switzerland", "Bern", "Berne"), ("Austria", "Vienna", "Wien"), ("Poland", "Warsaw"),
    ("the Czech Republic", "Prague"), ("Hungary", "Budapest"), ("Greece", "Athens"), ("Sweden", "Stockholm"),
    ("Norway", "Oslo"), ("Denmark", "Copenhagen"), ("Finland", "Helsinki"), ("Iceland", "Reykjavik", "Reykjavík"),
    ("Russia", "Moscow"), ("Ukraine", "Kyiv", "Kiev"), ("Romania", "Bucharest"), ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Slovakia", "Bratislava"), ("Slovenia", "Ljubljana"),
    ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"), ("Turkey", "Ankara"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Morocco", "Rabat"),
    ("Ethiopia", "Addis Ababa"), ("Ghana", "Accra"), ("Algeria", "Algiers"), ("Tunisia", "Tunis"),
    ("Senegal", "Dakar"), ("Uganda", "Kampala"), ("Zimbabwe", "Harare"), ("Tanzania", "Dodoma"),
    ("South Africa", "Pretoria", "Cape Town", "Bloemfontein"), ("Japan", "Tokyo"), ("China", "Beijing", "Peking"),
    ("India", "New Delhi"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("Indonesia", "Jakarta"), ("the Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"),
    ("Pakistan", "Islamabad"), ("Bangladesh", "Dhaka"), ("Nepal", "Kathmandu"), ("Afghanistan", "Kabul"),
    ("Mongolia", "Ulaanbaatar", "Ulan Bator"), ("Kazakhstan", "Astana"), ("Uzbekistan", "Tashkent"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Syria", "Damascus"), ("Lebanon", "Beirut"), ("Jordan", "Amman"),
    ("Saudi Arabia", "Riyadh"), ("Qatar", "Doha"), ("the United Arab Emirates", "Abu Dhabi"), ("Oman", "Muscat"),
    ("Australia", "Canberra"), ("New Zealand", "Wellington"), ("Canada", "Ottawa"),
    ("the United States", "Washington, D.C.", "Washington", "Washington DC"), ("Mexico", "Mexico City"),
    ("Cuba", "Havana"), ("Jamaica", "Kingston"), ("Brazil", "Brasilia", "Brasília"),
    ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Peru", "Lima"), ("Colombia", "Bogota", "Bogotá"),
    ("Venezuela", "Caracas"), ("Ecuador", "Quito"), ("Uruguay", "Montevideo"),
    ("Paraguay", "Asuncion", "Asunción"), ("Bolivia", "Sucre", "La Paz"),
)

# single-letter symbols that are also common words (I) and two-letter ones that are (He, Be) are left out
_ELEMENTS = (
    ("hydrogen", "H"), ("lithium", "Li"), ("boron", "B"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
    ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"),
    ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"), ("chlorine", "Cl"), ("argon", "Ar"),
    ("potassium", "K"), ("calcium", "Ca"), ("titanium", "Ti"), ("chromium", "Cr"), ("manganese", "Mn"),
    ("iron", "Fe"), ("cobalt", "Co"), ("nickel", "Ni"), ("copper", "Cu"), ("zinc", "Zn"), ("krypton", "Kr"),
    ("silver", "Ag"), ("tin", "Sn"), ("xenon", "Xe"), ("tungsten", "W"), ("platinum", "Pt"), ("gold", "Au"),
    ("mercury", "Hg"), ("lead", "Pb"), ("radon", "Rn"), ("uranium", "U"), ("plutonium", "Pu"),
)

_AUTHORS = (
    ("Pride and Prejudice", "Jane Austen", "Austen"), ("Emma", "Jane Austen", "Austen"),
    ("Nineteen Eighty-Four", "George Orwell", "Orwell", "Eric Blair"),
    ("Animal Farm", "George Orwell", "Orwell", "Eric Blair"),
    ("Hamlet", "William Shakespeare", "Shakespeare"), ("Macbeth", "William Shakespeare", "Shakespeare"),
    ("Romeo and Juliet", "William Shakespeare", "Shakespeare"),
    ("War and Peace", "Leo Tolstoy", "Tolstoy"), ("Anna Karenina", "Leo Tolstoy", "Tolstoy"),
    ("Crime and Punishment", "Fyodor Dostoevsky", "Dostoevsky", "Dostoyevsky"),
    ("The Brothers Karamazov", "Fyodor Dostoevsky", "Dostoevsky", "Dostoyevsky"),
    ("Don Quixote", "Miguel de Cervantes", "Cervantes"), ("Moby-Dick", "Herman Melville", "Melville"),
    ("The Adventures of Tom Sawyer", "Mark Twain", "Twain", "Samuel Clemens"),
    ("Adventures of Huckleberry Finn", "Mark Twain", "Twain", "Samuel Clemens"),
    ("Oliver Twist", "Charles Dickens", "Dickens"), ("A Tale of Two Cities", "Charles Dickens", "Dickens"),
    ("Great Expectations", "Charles Dickens", "Dickens"),
    ("Jane Eyre", "Charlotte Bronte", "Charlotte Brontë"), ("Wuthering Heights", "Emily Bronte", "Emily Brontë"),
    ("Frankenstein", "Mary Shelley", "Mary Wollstonecraft Shelley"), ("Dracula", "Bram Stoker", "Stoker"),
    ("The Great Gatsby", "F. Scott Fitzgerald", "Fitzgerald"),
    ("The Old Man and the Sea", "Ernest Hemingway", "Hemingway"),
    ("To Kill a Mockingbird", "Harper Lee"), ("The Catcher in the Rye", "J. D. Salinger", "Salinger"),
    ("Les Misérables", "Victor Hugo", "Hugo"), ("The Hunchback of Notre-Dame", "Victor Hugo", "Hugo"),
    ("The Divine Comedy", "Dante Alighieri", "Dante"), ("The Odyssey", "Homer"), ("The Iliad", "Homer"),
    ("One Hundred Years of Solitude", "Gabriel García Márquez", "Garcia Marquez", "Márquez", "Marquez"),
    ("The Lord of the Rings", "J. R. R. Tolkien", "Tolkien"), ("The Hobbit", "J. R. R. Tolkien", "Tolkien"),
    ("Harry Potter and the Philosopher's Stone", "J. K. Rowling", "Rowling"),
    ("Brave New World", "Aldous Huxley", "Huxley"), ("Ulysses", "James Joyce", "Joyce"),
    ("Madame Bovary", "Gustave Flaubert", "Flaubert"), ("The Metamorphosis", "Franz Kafka", "Kafka"),
    ("The Trial", "Franz Kafka", "Kafka"), ("Faust", "Johann Wolfgang von Goethe", "Goethe"),
    ("On the Origin of Species", "Charles Darwin", "Darwin"),
    ("The Communist Manifesto", "Karl Marx and Friedrich Engels", "Marx", "Engels"),
    ("Alice's Adventures in Wonderland", "Lewis Carroll", "Carroll"),
    ("Treasure Island", "Robert Louis Stevenson", "Stevenson"),
    ("The Picture of Dorian Gray", "Oscar Wilde", "Wilde"), ("Gulliver's Travels", "Jonathan Swift", "Swift"),
    ("Robinson Crusoe", "Daniel Defoe", "Defoe"),
    ("The Little Prince", "Antoine de Saint-Exupéry", "Saint-Exupery", "Saint Exupery", "Saint Exupéry"),
    ("Mrs Dalloway", "Virginia Woolf", "Woolf"), ("Lolita", "Vladimir Nabokov", "Nabokov"),
    ("The Grapes of Wrath", "John Steinbeck", "Steinbeck"), ("Of Mice and Men", "John Steinbeck", "Steinbeck"),
    ("Fahrenheit 451", "Ray Bradbury", "Bradbury"), ("The Count of Monte Cristo", "Alexandre Dumas", "Dumas"),
    ("The Three Musketeers", "Alexandre Dumas", "Dumas"),
    ("Around the World in Eighty Days", "Jules Verne", "Verne"),
    ("Twenty Thousand Leagues Under the Seas", "Jules Verne", "Verne"),
    ("The Time Machine", "H. G. Wells", "Wells"), ("The War of the Worlds", "H. G. Wells", "Wells"),
    ("A Study in Scarlet", "Arthur Conan Doyle", "Conan Doyle", "Doyle"),
)

_ASTRONOMY = (
    ("Which planet is closest to the Sun?", "Mercury"),
    ("Which is the smallest planet in the Solar System?", "Mercury"),
    ("Which planet is the second from the Sun?", "Venus"),
    ("What is the hottest planet in the Solar System?", "Venus"),
    ("Which planet is the third from the Sun?", "Earth", "the Earth"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("Which planet has the moons Phobos and Deimos?", "Mars"),
    ("What is the largest planet in the Solar System?", "Jupiter"),
    ("Which planet has the Great Red Spot?", "Jupiter"),
    ("Which planet is the sixth from the Sun?", "Saturn"),
    ("Which planet is best known for its bright rings?", "Saturn"),
    ("Which planet spins tipped on its side?", "Uranus"),
    ("Which planet is the farthest from the Sun?", "Neptune"),
    ("Which planet has the moon Triton?", "Neptune"),
    ("Which former planet was reclassified as a dwarf planet in 2006?", "Pluto"),
    ("What is the name of Earth's natural satellite?", "the Moon", "Luna"),
    ("What star is at the centre of the Solar System?", "the Sun", "Sol"),
    ("What is the largest moon of Saturn?", "Titan"),
    ("What is the largest moon of Jupiter?", "Ganymede"),
    ("What is the name of the galaxy that contains the Solar System?", "the Milky Way", "Milky Way Galaxy"),
    ("What is the nearest large spiral galaxy to the Milky Way?", "Andromeda", "Andromeda Galaxy", "M31"),
    ("What is the brightest star in the night sky?", "Sirius", "Dog Star"),
    ("What is the closest star to the Sun?", "Proxima Centauri", "Proxima"),
    ("Who was the first person to walk on the Moon?", "Neil Armstrong", "Armstrong"),
    ("Who was the first human in space?", "Yuri Gagarin", "Gagarin"),
    ("How many planets are in the Solar System?", "eight", "8"),
    ("Which space programme first landed humans on the Moon?", "Apollo", "Apollo 11"),
    ("What is the name of the space telescope launched in 1990?", "Hubble", "Hubble Space Telescope"),
)

_CURRENCIES = (
    ("Japan", "yen", "Japanese yen"), ("the United Kingdom", "pound sterling", "pound", "sterling", "British pound"),
    ("the United States", "US dollar", "dollar", "United States dollar"), ("Germany", "euro"),
    ("France", "euro"), ("Italy", "euro"), ("Spain", "euro"), ("India", "rupee", "Indian rupee"),
    ("China", "renminbi", "yuan", "RMB"), ("Russia", "ruble", "rouble"), ("Switzerland", "Swiss franc", "franc"),
    ("Mexico", "peso", "Mexican peso"), ("Brazil", "real", "Brazilian real", "reais"),
    ("South Africa", "rand"), ("South Korea", "won", "Korean won"), ("Turkey", "lira", "Turkish lira"),
    ("Sweden", "krona", "Swedish krona", "kronor"), ("Norway", "krone", "Norwegian krone"),
    ("Denmark", "krone", "Danish krone"), ("Poland", "zloty", "złoty"), ("Canada", "Canadian dollar"),
    ("Australia", "Australian dollar"), ("Thailand", "baht"), ("Israel", "shekel", "new shekel"),
    ("Saudi Arabia", "riyal", "Saudi riyal"), ("Egypt", "Egyptian pound"), ("Nigeria", "naira"),
    ("Indonesia", "rupiah"), ("Vietnam", "dong", "đồng"), ("Hungary", "forint"),
    ("the Czech Republic", "koruna", "Czech crown", "Czech koruna"), ("Argentina", "peso", "Argentine peso"),
    ("the Philippines", "peso", "Philippine peso"), ("Malaysia", "ringgit"), ("Pakistan", "rupee", "Pakistani rupee"),
    ("Kenya", "shilling", "Kenyan shilling"),
)

_CONTINENTS = (
    ("Kenya", "Africa"), ("Nigeria", "Africa"), ("Egypt", "Africa"), ("Morocco", "Africa"), ("Ghana", "Africa"),
    ("Ethiopia", "Africa"), ("Madagascar", "Africa"), ("Senegal", "Africa"), ("Brazil", "South America"),
    ("Argentina", "South America"), ("Peru", "South America"), ("Chile", "South America"),
    ("Colombia", "South America"), ("Venezuela", "South America"), ("Bolivia", "South America"),
    ("Ecuador", "South America"), ("Uruguay", "South America"), ("Paraguay", "South America"),
    ("Canada", "North America"), ("Mexico", "North America"), ("the United States", "North America"),
    ("Guatemala", "North America", "Central America"), ("Jamaica", "North America", "Caribbean"),
    ("Japan", "Asia"), ("India", "Asia"), ("China", "Asia"), ("Thailand", "Asia"), ("Vietnam", "Asia"),
    ("Mongolia", "Asia"), ("Nepal", "Asia"), ("Pakistan", "Asia"), ("Saudi Arabia", "Asia"),
    ("France", "Europe"), ("Germany", "Europe"), ("Poland", "Europe"), ("Norway", "Europe"),
    ("Portugal", "Europe"), ("Greece", "Europe"), ("Iceland", "Europe"), ("Hungary", "Europe"),
    ("Australia", "Australia", "Oceania", "Australasia"), ("New Zealand", "Oceania", "Australasia", "Zealandia"),
    ("Fiji", "Oceania"),
)


def _table_rows(name: str) -> list[tuple[str, str, tuple[str, ...]]]:
    if name == "cities":
        return _cities()
    if name == "capitals":
        return [(f"What is the capital of {c}?", cap, tuple(more)) for c, cap, *more in _CAPITALS]
    if name == "elements":
        return [(f"What is the chemical symbol of {e}?", s, ()) for e, s in _ELEMENTS]
    if name == "authors":
        return [(f"Who wrote {book}?", a, tuple(more)) for book, a, *more in _AUTHORS]
    if name == "astronomy":
        return [(q, a, tuple(more)) for q, a, *more in _ASTRONOMY]
    if name == "currencies":
        return [(f"What is the currency of {c}?", cur, tuple(more)) for c, cur, *more in _CURRENCIES]
    if name == "continents":
        return [(f"On which continent is {c}?", a, tuple(more)) for c, a, *more in _CONTINENTS]
    raise DataError(f"unknown QA table {name!r}; use one of {', '.join(TABLES)}")


TABLES = ("cities", "capitals", "elements", "authors", "astronomy", "currencies", "continents")


def qa_table(name: str) -> list[QAItem]:
    """Every question of one table, in table order, ids "{table}-{row:03d}"."""
    out = []
    for i, (q, a, more) in enumerate(_table_rows(name)):
        aliases = tuple(dict.fromkeys((a,) + tuple(more)))
        out.append(QAItem(f"{name}-{i:03d}", q, a, aliases, name))
    return out


def load_qa(tables: Sequence[str] | str | None = None, limit: int | None = None, seed: int = 0) -> list[QAItem]:
    """Questions of `tables` (all by default), in table order; `limit` keeps a seeded draw of that many per table
    (kept in table order), so small runs still mix every table."""
    names = TABLES if tables is None else ([tables] if isinstance(tables, str) else list(tables))
    if limit is not None and limit < 1:
        raise DataError(f"load_qa: limit must be a positive number of questions per table, got {limit}")
    out: list[QAItem] = []
    for name in names:
        items = qa_table(name)
        if limit is not None and limit < len(items):
            rng = random.Random(f"{seed}:{name}")
            keep = sorted(rng.sample(range(len(items)), limit))
            items = [items[i] for i in keep]
        out.extend(items)
    return out


def load_truthfulqa_qa(data_dir: str | Path | None = None, revision: str = "2021", limit: int | None = None,
                       seed: int = 0) -> list[QAItem]:
    """TruthfulQA questions as `QAItem`s (answer = Best Answer, aliases = the Correct Answers): the aliases only
    locate an answer; TruthfulQA generations are labelled by the truth judge, since its answers are sentences
    that a normalised match cannot grade. `limit`: a seeded draw, kept in CSV order."""
    from .truthfulqa import load_truthfulqa

    items = load_truthfulqa(data_dir, revision=revision)
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[i] for i in keep]
    return [QAItem(f"truthfulqa-{it.index:03d}", it.question, it.best_answer,
                   tuple(dict.fromkeys([it.best_answer] + it.correct_answers)), "truthfulqa") for it in items]


def qa_prompt(tokenizer, question: str) -> str:
    """The question as the model's chat turn (plain "Q: ...\\nA:" without a template), asking for a short
    answer so that the first line holds it."""
    from .prompts import chat_prompt

    return chat_prompt(tokenizer, question, system=QA_SYSTEM)


QA_SYSTEM = "Answer the question in a few words."


TRIVIAQA_HUB = ("trivia_qa", "rc.nocontext")  # the hub's TriviaQA (Joshi et al. 2017), questions without evidence


def triviaqa_items(rows: Sequence[dict]) -> list[QAItem]:
    """TriviaQA records as `QAItem`s (answer = the answer's value, aliases = value + aliases), from either layout:
    the hub's rows ({"question", "question_id", "answer": {"value", "aliases", ...}}) or the original JSON's
    "Data" entries ({"Question", "QuestionId", "Answer": {"Value", "Aliases", ...}})."""
    out = []
    for i, r in enumerate(rows):
        hub = "question" in r
        ans = r.get("answer" if hub else "Answer")
        q = r.get("question" if hub else "Question")
        if not isinstance(q, str) or not isinstance(ans, dict):
            raise DataError(f"TriviaQA row {i} has no question text or answer record: {str(r)[:120]}")
        value = ans.get("value" if hub else "Value")
        aliases = ans.get("aliases" if hub else "Aliases") or []
        if not isinstance(value, str) or not isinstance(aliases, list):
            raise DataError(f"TriviaQA row {i} has no answer value or alias list: {str(ans)[:120]}")
        qid = str(r.get("question_id" if hub else "QuestionId", f"{i:05d}"))
        out.append(QAItem(f"triviaqa-{qid}", q, value, tuple(dict.fromkeys([value, *map(str, aliases)])),
                          "triviaqa"))
    return out


def load_triviaqa(split: str = "validation", limit: int | None = None, seed: int = 0,
                  path: str | Path | None = None) -> list[QAItem]:
    """TriviaQA questions with their gold aliases, graded by the same normalised-match rule as the tables
    (TriviaQA's own rule is SQuAD's normalisation too). `path`: a local copy, TriviaQA's original JSON
    ({"Data": [...]}) or a JSON list of the hub's rows; otherwise the hub's `trivia_qa` / `rc.nocontext` `split`
    through the `datasets` package (online; a `DataError` says what to do offline). `limit`: a seeded draw, kept
    in file order."""
    if limit is not None and limit < 1:
        raise DataError(f"load_triviaqa: limit must be a positive number of questions, got {limit}")
    if path is not None:
        from ..artifacts import ArtifactError, read_json

        try:
            raw = read_json(path, None, "TriviaQA file", object_only=False)
        except ArtifactError as e:
            raise DataError(str(e)) from None
        rows = raw.get("Data") if isinstance(raw, dict) else raw
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected TriviaQA's JSON ({{\"Data\": [...]}}) or a list of the hub's rows")
    else:
        try:
            import datasets
        except ImportError:
            raise DataError("TriviaQA from the hub needs the `datasets` package (pip install datasets) and a "
                            "network; offline, pass path= a local TriviaQA JSON (e.g. qa/verified-web-dev.json "
                            "of the original release)") from None
        try:
            rows = list(datasets.load_dataset(*TRIVIAQA_HUB, split=split))
        except Exception as e:  # the hub unreachable, offline mode, an unknown split
            raise DataError(f"could not load TriviaQA {TRIVIAQA_HUB[0]}/{TRIVIAQA_HUB[1]} split {split!r} from "
                            f"the hub ({type(e).__name__}: {e}); offline, pass path= a local TriviaQA JSON") from None
    items = triviaqa_items(rows)
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(f"triviaqa:{seed}").sample(range(len(items)), limit))
        items = [items[i] for i in keep]
    return items
