"""Declared constraints on every option, checked when a Config is built (issue 25, mechanism 2).

In the spirit of scikit-learn's `_parameter_constraints`: a Config dataclass that derives from `Checked`
declares, per field, a list of constraints (`None` in the list allows None; the other entries must all
hold) and cross-field `_rules`. `Checked.__post_init__` validates the instance, so a notebook user gets the
same one-line `BadInput` as the CLI, before any model is loaded or any folder created. Every `Checked`
subclass is registered in `CONFIGS`, which the contract test walks: every field must declare a constraint,
and every constraint produces the values that violate it (`bad_values`).

Registry-backed choices take a function returning the names (`Registered(lambda: METRICS, "metric")`), so
this bottom-level module imports nothing of veracity's but `veracity.validation`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import re
import sys
from typing import Any, Callable, ClassVar, Iterable

from .validation import BadInput

#: "module.QualName" -> every Config class that declares constraints (filled by `Checked.__init_subclass__`).
CONFIGS: dict[str, type] = {}


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)) and not value:
        return "nothing"
    return repr(value) if isinstance(value, (str, dict, list, tuple)) else str(value)


class Constraint:
    """One condition on a value. `describe()` completes "--opt must ..."; `bad_values()` are values that
    violate it (for the contract test); `example()` is one that satisfies it."""

    def ok(self, value: Any) -> bool:
        """Whether `value` satisfies the constraint: the check every config runs on each field before any work."""
        raise NotImplementedError

    def describe(self) -> str:
        """The condition in words, completing "--opt must ...", so every error message and help text says the same."""
        raise NotImplementedError

    def bad_values(self) -> list:
        """Values that violate the constraint, which the contract test feeds to every option it guards."""
        return []

    def example(self) -> Any:
        """One value that satisfies the constraint, for the contract test's valid baseline."""
        raise NotImplementedError

    def error(self, option: str, value: Any) -> str | None:
        """The message when `value` violates this constraint (None when it holds)."""
        return None if self.ok(value) else f"{option} must {self.describe()}, got {_show(value)}"


def _real(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if kind is int else isinstance(value, (int, float))


class Interval(Constraint):
    """A number of type `kind` (int or float; floats must be finite) within [left, right] (`None`: unbounded);
    `closed` is "both", "left", "right" or "neither". `msg` replaces the generated description."""

    def __init__(self, kind: type, left: float | None, right: float | None, closed: str = "both",
                 msg: str | None = None):
        assert kind in (int, float) and closed in ("both", "left", "right", "neither")
        self.kind, self.left, self.right, self.closed, self.msg = kind, left, right, closed, msg

    def ok(self, value: Any) -> bool:
        if not _real(value, self.kind) or not math.isfinite(float(value)):
            return False
        lo_in = self.closed in ("both", "left")
        hi_in = self.closed in ("both", "right")
        if self.left is not None and not (value >= self.left if lo_in else value > self.left):
            return False
        return self.right is None or (value <= self.right if hi_in else value < self.right)

    def describe(self) -> str:
        if self.msg:
            return self.msg
        noun = "an integer" if self.kind is int else "a finite number"
        lo_in, hi_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.left is not None and self.right is not None:
            if not lo_in and not hi_in:
                return f"be strictly between {self.left:g} and {self.right:g}"
            return f"be {noun} in {'[' if lo_in else '('}{self.left:g}, {self.right:g}{']' if hi_in else ')'}"
        if self.left is not None:
            if self.left == 0 and not lo_in:
                return f"be positive ({noun} > 0)"
            if self.kind is float:
                return f"be {noun} {'>=' if lo_in else '>'} {self.left:g}"
            return f"be at least {self.left:g}" if lo_in else f"be {noun} greater than {self.left:g}"
        if self.right is not None:
            return f"be at most {self.right:g}" if hi_in else f"be {noun} less than {self.right:g}"
        return f"be {noun}"

    def bad_values(self) -> list:
        out: list = ["1"]  # a string where a number belongs
        if self.left is not None:
            out.append(self.left - 1 if self.kind is int else self.left - 0.5)
            if self.closed in ("neither", "right"):
                out.append(self.left)
        if self.right is not None:
            out.append(self.right + 1 if self.kind is int else self.right + 0.5)
            if self.closed in ("neither", "left"):
                out.append(self.right)
        if self.kind is float:
            out += [math.nan, math.inf, -math.inf]
        else:
            out.append(1.5)
        return out

    def example(self) -> Any:
        lo, hi = self.left, self.right
        if lo is not None and hi is not None:
            v = (lo + hi) / 2
            return int(v) if self.kind is int and self.ok(int(v)) else (v if self.ok(v) else lo)
        base = lo if lo is not None else (hi if hi is not None else 0)
        for v in (base, base + 1, base - 1):
            if self.ok(self.kind(v)):
                return self.kind(v)
        return base


def Finite() -> Interval:
    """Any finite real number (nan and inf are refused)."""
    return Interval(float, None, None, msg="be a finite number")


def Count(minimum: int = 1, msg: str | None = None) -> Interval:
    """An integer >= minimum (a number of items, steps, folds...)."""
    return Interval(int, minimum, None, msg=msg)


def Seed() -> Interval:
    """A random seed numpy, torch and random all accept."""
    return Interval(int, 0, 2**32 - 1, msg="be an integer in [0, 2**32 - 1]")


def Fraction() -> Interval:
    """A float strictly between 0 and 1 (a proportion where 0 and 1 are degenerate, e.g. a split size)."""
    return Interval(float, 0, 1, closed="neither")


class Options(Constraint):
    """One of a fixed set of strings."""

    def __init__(self, values: Iterable[str]):
        self.values = tuple(values)

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        return f"be one of {', '.join(self.values)}"

    def bad_values(self) -> list:
        return ["nosuch", "", 1]

    def example(self) -> Any:
        return self.values[0]


class Registered(Constraint):
    """A name from a registry, read when checked (`names()` returns the registry or its names), so a name
    registered later (a plugin metric, judge, probe) is accepted without touching the Config."""

    def __init__(self, names: Callable[[], Iterable[str]], what: str, note: str = ""):
        self.names, self.what, self.note = names, what, note

    def _names(self) -> list[str]:
        return list(self.names())

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and value in self._names()

    def describe(self) -> str:
        return f"be one of {', '.join(self._names())}" + (f" ({self.note})" if self.note else "")

    def bad_values(self) -> list:
        return ["nosuch", "", 1]

    def example(self) -> Any:
        return self._names()[0]


def choices_in(module: str, name: str, what: str | None = None) -> Registered:
    """The choices in `<module>.<name>` (a tuple kept beside the code that acts on it), read when a value is
    checked: a Config declares them without a second copy of the list (which drifts) and without importing the
    module (and torch) to be built. `tests/test_constraints.py` refuses a choice list written out twice."""
    def names():
        return getattr(importlib.import_module(module), name)
    return Registered(names, what or name.lower().replace("_", "-") + " choice")


class Text(Constraint):
    """A non-empty string (a model name, a path, a data set spec): what it names is checked where it is
    read (`models.loader`, `data`, the safe readers)."""

    def ok(self, value: Any) -> bool:
        if isinstance(value, os.PathLike):  # a Path("") is "."
            return str(value).strip() not in ("", ".")
        return isinstance(value, str) and value.strip() != ""

    def describe(self) -> str:
        return "be a non-empty text"

    def bad_values(self) -> list:
        return ["", "   ", 3]

    def example(self) -> Any:
        return "x"


class Pattern(Constraint):
    """A string matching a regular expression (`what` says in words what it must look like)."""

    def __init__(self, regex: str, what: str, bad: Iterable = ("", "nosuch:")):
        self.regex, self.what, self.bad = re.compile(regex), what, list(bad)

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and self.regex.fullmatch(value) is not None

    def describe(self) -> str:
        return f"be {self.what}"

    def bad_values(self) -> list:
        return list(self.bad)

    def example(self) -> Any:
        raise NotImplementedError("Pattern has no example")


class Parses(Constraint):
    """A value that `parse` accepts (raises ValueError otherwise): for a small grammar owned elsewhere
    (capture sites, a judge spec), checked with that very parser. `parse`'s message is kept."""

    def __init__(self, parse: Callable[[Any], Any], what: str, bad: Iterable, example: Any = None):
        self.parse, self.what, self.bad, self._example = parse, what, list(bad), example

    def ok(self, value: Any) -> bool:
        return self.error("", value) is None

    def error(self, option: str, value: Any) -> str | None:
        try:
            self.parse(value)
        except (ValueError, TypeError) as e:
            why = "" if self.what in str(e) else f" ({e})"
            return f"{option} must be {self.what}, got {_show(value)}{why}"
        return None

    def describe(self) -> str:
        return f"be {self.what}"

    def bad_values(self) -> list:
        return list(self.bad)

    def example(self) -> Any:
        return self._example


class Boolean(Constraint):
    """A real bool: a "yes" string or a 1 from a JSON config is refused rather than read as true."""
    def ok(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "be true or false"

    def bad_values(self) -> list:
        return ["yes", 1]

    def example(self) -> Any:
        return False


class Instance(Constraint):
    """An instance of a (nested, itself checked) Config class; or, named `"package.module:Class"`, of a class whose
    module imports torch: it is imported only when needed, and a value cannot be one before its module is loaded, so
    checking a config that leaves it unset (`veracity report` reading a result) imports nothing."""

    def __init__(self, cls: type | str):
        self._cls = cls

    @property
    def cls(self) -> type:
        """The class, imported on first use when it was named as "module:Class" (so checking imports nothing)."""
        if isinstance(self._cls, str):
            module, name = self._cls.split(":")
            self._cls = getattr(importlib.import_module(module), name)
        return self._cls

    def ok(self, value: Any) -> bool:
        if isinstance(self._cls, str) and self._cls.split(":")[0] not in sys.modules:
            return False
        return isinstance(value, self.cls)

    def describe(self) -> str:
        return f"be a {self.cls.__name__}"

    def bad_values(self) -> list:
        return [v for v in ({}, "x", 1) if not isinstance(v, self.cls)]

    def example(self) -> Any:
        return self.cls()


class AnyOf(Constraint):
    """At least one of the constraints holds (`16` or `"auto"`)."""

    def __init__(self, *constraints: Constraint):
        self.constraints = constraints

    def ok(self, value: Any) -> bool:
        return any(c.ok(value) for c in self.constraints)

    def error(self, option: str, value: Any) -> str | None:
        """None when one holds, else the first one's message (the usual form, e.g. a judge spec)."""
        return None if self.ok(value) else self.constraints[0].error(option, value)

    def describe(self) -> str:
        return " or ".join(c.describe().removeprefix("be ") if i else c.describe()
                           for i, c in enumerate(self.constraints))

    def bad_values(self) -> list:
        return [v for c in self.constraints for v in c.bad_values() if not self.ok(v)]

    def example(self) -> Any:
        return self.constraints[0].example()


class ListOf(Constraint):
    """A list or tuple with at least `min_len` elements (default 1: an empty list would run nothing), each
    satisfying `each` (a list of constraints, as a field's)."""

    def __init__(self, each: list, min_len: int = 1, unique: bool = False):
        self.each, self.min_len, self.unique = list(each), min_len, unique

    def ok(self, value: Any) -> bool:
        return self.error("", value) is None

    def error(self, option: str, value: Any) -> str | None:
        if not isinstance(value, (list, tuple)):
            return f"{option} must be a list, got {_show(value)}"
        if len(value) < self.min_len:
            return f"{option} must list at least {self.min_len} value{'s' if self.min_len > 1 else ''}, got nothing"
        for v in value:
            msg = _field_error(option, v, self.each)
            if msg:
                return msg
        if self.unique and len(set(value)) < len(value):
            return f"{option} lists a value twice: {_show(value)}"
        return None

    def describe(self) -> str:
        return f"list at least {self.min_len} value(s)"

    def bad_values(self) -> list:
        out = [[]] if self.min_len > 0 else []
        good = _example(self.each)
        for c in self.each:
            if isinstance(c, Constraint):
                out += [[good, b] if good is not None else [b] for b in c.bad_values()[:3]]
        return out + ["x"]

    def example(self) -> Any:
        return [_example(self.each)]


class MappingOf(Constraint):
    """A dict whose keys satisfy `keys` and values satisfy `values` (lists of constraints); may be empty."""

    def __init__(self, keys: list, values: list):
        self.keys, self.values = list(keys), list(values)

    def ok(self, value: Any) -> bool:
        return self.error("", value) is None

    def error(self, option: str, value: Any) -> str | None:
        if not isinstance(value, dict):
            return f"{option} must be a mapping, got {_show(value)}"
        for k, v in value.items():
            msg = _field_error(option, k, self.keys) or _field_error(f"{option} {k}", v, self.values)
            if msg:
                return msg
        return None

    def describe(self) -> str:
        return "be a mapping"

    def bad_values(self) -> list:
        k, v = _example(self.keys), _example(self.values)
        out = [{b: v} for c in self.keys if isinstance(c, Constraint) for b in c.bad_values()[:1]]
        out += [{k: b} for c in self.values if isinstance(c, Constraint) for b in c.bad_values()[:2]]
        return out + ["x"]

    def example(self) -> Any:
        return {}


class Device(Constraint):
    """A torch device string this machine has: cpu, cuda, cuda:N (N below the number of visible GPUs), mps.
    torch is imported only when a cuda or mps device is named."""

    _FORM = re.compile(r"(cpu|mps|cuda)(?::(\d+))?")

    def ok(self, value: Any) -> bool:
        return self.error("", value) is None

    def error(self, option: str, value: Any) -> str | None:
        m = self._FORM.fullmatch(value) if isinstance(value, str) else None
        if m is None or (m.group(1) != "cuda" and m.group(2) not in (None, "0")):
            return f"{option} must be cpu, cuda, cuda:N or mps, got {_show(value)}"
        if m.group(1) == "cpu":
            return None
        import torch

        if m.group(1) == "mps":
            ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
            return None if ok else f"{option} mps: this machine has no MPS device"
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        i = int(m.group(2) or 0)
        if i >= n:
            have = "no CUDA GPU" if n == 0 else f"{n} CUDA GPU{'s' if n > 1 else ''} (cuda:0..cuda:{n - 1})"
            return f"{option} {value}: this machine has {have}"
        return None

    def describe(self) -> str:
        return "be cpu, cuda, cuda:N or mps"

    def bad_values(self) -> list:
        return ["cuda:999", "gpu", "", "cpu:1"]

    def example(self) -> Any:
        return "cpu"


# ------------------------------------------------------------------------------------------ cross-field rules
class Rule:
    """A condition between fields; `error(cfg)` returns the message (None when it holds)."""

    fields: tuple[str, ...] = ()

    def error(self, cfg: Any) -> str | None:
        """The message when `cfg` breaks the rule (None when it holds), naming the options involved."""
        raise NotImplementedError

    def violations(self, cls: type) -> list[dict]:
        """Field values (over the defaults) that break the rule, for the contract test."""
        return []


def _default(cls: type, name: str) -> Any:
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


class Conflict(Rule):
    """`a` and `b` cannot both be set (non-default); `values` are, for the contract test, a setting of each."""

    def __init__(self, a: str, b: str, values: tuple = (True, True), why: str = ""):
        self.fields, self.values, self.why = (a, b), values, why

    def error(self, cfg: Any) -> str | None:
        a, b = self.fields
        if _set(cfg, a) and _set(cfg, b):
            return (f"{option_of(type(cfg), a)} and {option_of(type(cfg), b)} cannot be used together"
                    + (f": {self.why}" if self.why else ""))
        return None

    def violations(self, cls: type) -> list[dict]:
        return [dict(zip(self.fields, self.values))]


class IgnoredUnless(Rule):
    """`field` means something only when `on` is one of `values`: a non-default `field` with another `on`
    would be recorded but ignored, so it is refused naming both options. `example` is a non-default value
    of `field` for the contract test. `on` may be a list (`--methods`): then some element must use it,
    an element being "+"-joined parts (`few-shot+iti`); `other` is an `on` value that does not."""

    def __init__(self, field: str, on: str, values: Iterable[Any], example: Any, other: Any = None):
        self.field, self.on, self.values, self.example, self.other = field, on, tuple(values), example, other
        self.fields = (field, on)

    def _uses(self, on_value: Any) -> bool:
        if isinstance(on_value, (list, tuple)):
            return any(p.strip() in self.values for m in on_value for p in str(m).split("+"))
        return on_value in self.values

    def error(self, cfg: Any) -> str | None:
        on_value = getattr(cfg, self.on)
        if _set(cfg, self.field) and not self._uses(on_value):
            cls = type(cfg)
            opt, on_opt = option_of(cls, self.field), option_of(cls, self.on)
            if self.values == (True,):
                return f"{opt} is only used with {on_opt}; add {on_opt} or drop {opt}"
            shown = ",".join(map(str, on_value)) if isinstance(on_value, (list, tuple)) else on_value
            return (f"{opt} is only used by {on_opt} {' or '.join(map(str, self.values))}, not {on_opt} "
                    f"{shown}; drop {opt}")
        return None

    def violations(self, cls: type) -> list[dict]:
        other = self.other if self.other is not None else next(
            v for v in _choices(cls, self.on) if v not in self.values)
        return [{self.field: self.example, self.on: other}]


def _choices(cls: type, name: str) -> list:
    for c in constraints_of(cls).get(name, []):
        if isinstance(c, Options):
            return list(c.values)
        if isinstance(c, Registered):
            return c._names()
        if isinstance(c, Boolean):
            return [True, False]
    return []


def _set(cfg: Any, name: str) -> bool:
    """Given: not the field's default (and not None, False or empty)."""
    v = getattr(cfg, name)
    if v is None or v is False or (isinstance(v, (list, tuple, dict, str)) and not v):
        return False
    d = _default(type(cfg), name)
    return d is dataclasses.MISSING or v != d


# ------------------------------------------------------------------------------------------ the validator
def _example(constraints: list) -> Any:
    for c in constraints:
        if isinstance(c, Constraint):
            try:
                return c.example()
            except NotImplementedError:
                continue
    return None


def _field_error(option: str, value: Any, constraints: list) -> str | None:
    if value is None:
        return None if None in constraints else f"{option} must be given, got None"
    for c in constraints:
        if c is None:
            continue
        msg = c.error(option, value)
        if msg:
            return msg
    return None


def constraints_of(cls: type) -> dict[str, list]:
    """Every field's constraints, the class's own over its bases'."""
    out: dict = {}
    for k in reversed(cls.__mro__):
        out.update(k.__dict__.get("_constraints", {}))
    return out


def rules_of(cls: type) -> list[Rule]:
    """The cross-field rules of a config class and of its bases (base rules first), so subclasses inherit them."""
    return [r for k in reversed(cls.__mro__) for r in k.__dict__.get("_rules", ())]


def option_of(cls: type, name: str) -> str:
    """The CLI spelling of field `name`: `_options` (own or a base's) or `--` + the name with `-`."""
    for k in cls.__mro__:
        o = k.__dict__.get("_options", {})
        if name in o:
            return o[name]
    return "--" + name.replace("_", "-")


def check_value(cls: type, name: str, value: Any) -> None:
    """One field's value against its declared constraints (BadInput naming the option)."""
    msg = _field_error(option_of(cls, name), value, constraints_of(cls)[name])
    if msg:
        raise BadInput(msg)


def check_config(cfg: Any) -> None:
    """Every field of `cfg` against its constraints, then the cross-field rules; the first violation is
    raised as one `BadInput`. A field without a declared constraint is a programming error."""
    cls = type(cfg)
    declared = constraints_of(cls)
    for f in dataclasses.fields(cfg):
        if f.name not in declared:
            raise TypeError(f"{cls.__name__}.{f.name} declares no constraint (add it to _constraints)")
        check_value(cls, f.name, getattr(cfg, f.name))
    for rule in rules_of(cls):
        msg = rule.error(cfg)
        if msg:
            raise BadInput(msg)


class Checked:
    """Base of every Config dataclass: `_constraints` {field: [constraints]}, `_rules` [Rule], `_options`
    {field: "--cli-spelling"} where it is not `--` + field, and `_commands` (the CLI commands that build it,
    for the option-coverage test). Validated on construction; registered in `CONFIGS`."""

    _constraints: ClassVar[dict] = {}
    _rules: ClassVar[tuple] = ()
    _options: ClassVar[dict] = {}
    _commands: ClassVar[tuple] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        CONFIGS[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def __post_init__(self) -> None:
        check_config(self)


# ------------------------------------------------------------------------------------------ CLI text -> values
def parse_numbers(text: str | None, kind: type, option: str) -> list | None:
    """"0,1.5,2" -> [0.0, 1.5, 2.0] (`kind` int or float); None stays None. Malformed: BadInput naming the
    option. Emptiness and ranges are the Config's constraints, not this parser's."""
    if text is None:
        return None
    try:
        return [kind(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        noun = "integers" if kind is int else "numbers"
        raise BadInput(f"{option}: expected comma-separated {noun}, got {text!r}") from None
