"""Judge specs -> judges: "none", "local[:folder]", "hf:<model>", "openai[-chat]:<model>[@url]", a `Judge`
or a callable."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ...validation import BadInput
from .base import CallableJudge, Judge
from .hf import HFJudge
from .local import LocalJudge
from .openai import OpenAIJudge, check_base_url, parse_openai_spec


# ---------------------------------------------------------------------------------------------- lookup
def default_judge_dir() -> Path:
    """Where `veracity judge train` puts judges by default: <veracity cache>/judges."""
    from ...models import cache_dir

    return cache_dir() / "judges"


def get_judge(spec: str | Judge | Callable | None, kind: str, judge_dir: str | Path | None = None, *,
              base_url: str | None = None, data_dir=None, **options) -> Judge | None:
    """A judge from a spec: "none" -> None; "local" (the judge trained into `judge_dir`/<kind>, default
    the cache); "local:<folder>"; "hf:<model>"; "openai:<model>" (completions endpoint) or
    "openai-chat:<model>" (chat-completions endpoint), optionally "...@<base url>" (`with_base_url`), at
    that URL, else `base_url`, else $OPENAI_BASE_URL, else https://api.openai.com/v1, `options` going to
    `OpenAIJudge`; a `Judge`; or a callable. "{kind}" in a model name becomes truth / info, so one spec
    names both judges (hf:allenai/truthfulqa-{kind}-judge-llama2-7B). A base URL, wherever it comes from,
    must be an explicit http(s) URL with a host (`check_base_url`; `BadInput` otherwise). `data_dir` is
    accepted and unused (no judge kind needs the data folder; `methods.evaluate.load_judges`
    passes it)."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, Judge):
        return spec
    if callable(spec):
        return CallableJudge(spec, kind)
    if base_url is not None:  # --judge-base-url: a URL that cannot be used stops here, whatever the judge
        base_url = check_base_url(base_url, "--judge-base-url")
    prefix = spec.split(":", 1)[0]
    if prefix not in JUDGES:
        raise ValueError(f"unknown judge {spec!r}: use none, local, local:<folder>, hf:<model id>, openai:<model> "
                         f"(completions endpoint) or openai-chat:<model> (chat endpoint), each optionally "
                         f"@<base url> (or --judge-base-url)"
                         + (f"; registered kinds: {', '.join(sorted(JUDGES))}" if set(JUDGES) - set(BUILTIN) else ""))
    return JUDGES[prefix](spec, kind, judge_dir=judge_dir, base_url=base_url, **options)


def _local(spec: str, kind: str, judge_dir=None, base_url=None, **_) -> Judge:
    root = Path(spec[6:]) if spec.startswith("local:") else Path(judge_dir or default_judge_dir())
    return LocalJudge.load(root / kind if (root / kind / "judge.json").exists() else root)


def _hf(spec: str, kind: str, **_) -> Judge:
    if not spec.startswith("hf:") or len(spec) == 3:
        raise ValueError(f"judge {spec!r}: use hf:<model id or folder>")
    return HFJudge(spec[3:].replace("{kind}", kind), kind)


def _openai(spec: str, kind: str, judge_dir=None, base_url=None, **options) -> Judge:
    prefix, model, url = parse_openai_spec(spec)  # a URL in the spec is checked; a bad one is never dropped
    if base_url is not None:
        base_url = check_base_url(base_url, "--judge-base-url")
        if url is not None and url != base_url:
            raise BadInput(f"judge {spec!r} names a base URL other than --judge-base-url {base_url!r}")
    api = options.pop("api", "chat" if prefix == "openai-chat" else "completions")
    return OpenAIJudge(model.replace("{kind}", kind), kind, base_url=url or base_url, api=api, **options)


#: spec prefix (before the first ":") -> factory(spec, kind, judge_dir=, base_url=, **options) -> Judge
BUILTIN = {"local": _local, "hf": _hf, "openai": _openai, "openai-chat": _openai}
JUDGES: dict[str, Callable[..., Judge]] = dict(BUILTIN)


def register_judge(prefix: str, factory: Callable[..., Judge]) -> None:
    """Make "<prefix>" / "<prefix>:<anything>" a judge spec everywhere --judge is taken (refuses a taken prefix)."""
    if prefix in JUDGES:
        raise ValueError(f"judge kind {prefix!r} is already registered")
    JUDGES[prefix] = factory
