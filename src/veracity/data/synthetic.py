"""The embedded default data set: number comparisons whose truth is checkable by code.

"Seventy-one is larger than fifty-two." needs no download, no licence and no labeller, so the demo
and the tests always have a true/false set (the same shape as Geometry of Truth's larger_than).
"""

from __future__ import annotations

import random

from .errors import DataError
from .statements import Statement

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
LOW, HIGH = 1, 99  # numbers used (inclusive)
RELATIONS = ("larger", "smaller")


def number_words(n: int) -> str:
    """0..99 in words, hyphenated as in Geometry of Truth ("fifty-two")."""
    if not 0 <= n <= 99:
        raise ValueError(f"number_words supports 0..99, got {n}")
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def comparison_text(a: int, b: int, relation: str) -> str:
    """"Seven is larger than three.": a number comparison in words, the synthetic data set's statement form."""
    w = number_words(a)
    return f"{w[0].upper()}{w[1:]} is {relation} than {number_words(b)}."


def _truth(a: int, b: int, relation: str) -> int:
    return int(a > b) if relation == "larger" else int(a < b)


def load_synthetic(n: int = 400, seed: int = 0) -> list[Statement]:
    """`n` distinct comparison statements, exactly half true, in a seeded random order.

    No pair compares a number with itself; `extra` holds n1, n2 and the relation.
    """
    if n <= 0 or n % 2:
        raise DataError(f"synthetic: n must be a positive even number (half true, half false), got {n}")
    pools: tuple[list, list] = ([], [])
    for a in range(LOW, HIGH + 1):
        for b in range(LOW, HIGH + 1):
            if a != b:
                for rel in RELATIONS:
                    pools[_truth(a, b, rel)].append((a, b, rel))
    if n // 2 > len(pools[1]):
        raise DataError(f"synthetic: at most {2 * len(pools[1])} distinct statements, asked for {n}")
    rng = random.Random(seed)
    chosen = rng.sample(pools[1], n // 2) + rng.sample(pools[0], n // 2)
    rng.shuffle(chosen)
    return [Statement(text=comparison_text(a, b, rel), label=_truth(a, b, rel), topic="synthetic", source="synthetic",
                      index=i, extra={"n1": str(a), "n2": str(b), "relation": rel})
            for i, (a, b, rel) in enumerate(chosen)]
