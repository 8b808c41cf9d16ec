"""The one writer guard: what a command may write over, for every kind of artifact veracity writes.

Every writer claims its target here before any work (`claim_output`: checks, creates nothing) and writes
through `Output.writing()`, which stages the artifact in a hidden sibling folder and renames it into place
only when it is complete. The rule is the same for every kind:

- a new path, or an empty folder (for folder artifacts), is accepted;
- an artifact of the writer's own kind is replaced only with `overwrite` (`--overwrite`);
- anything else (a user's files, a run of another kind, a file inside a run, a file of another format)
  is refused with one line naming what is there, and no byte of it changes.

Run folders and capture stores are written incrementally under a lock (`veracity.runs.RunFolder`,
`veracity.capture.store`), not staged; they share the recognition and the refusal (`check_out_folder`).
The kinds are registered once in `OUTPUT_KINDS`, so a new artifact kind is one registration, and the tests
walk the CLI's `--out` options and this registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .validation import BadInput, check_out_path

LOCK_NAME = ".veracity.lock"
STAGING = ".veracity-staging"  # infix of the hidden sibling an artifact is written into before it is renamed


class RunExists(FileExistsError):
    """The folder cannot take this run: a finished run (without --overwrite), a run of another kind,
    something that is not a veracity run, or a folder another process is using. One-line message."""


class RunLocked(RunExists):
    """Another process holds the folder's lock."""


class OutputRefused(BadInput):
    """The target cannot take this artifact: it holds something else, or an artifact of the same kind
    without `overwrite`. One line naming what is there."""


# ------------------------------------------------------------------------------------------ recognition

def _json_object(path: Path) -> dict | None:
    """A JSON object read from `path`, or None for anything else (missing, unreadable, not JSON, not an
    object): recognition must never raise on a damaged or foreign file."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _safetensors_format(path: Path) -> str | None:
    """The `format` entry of a safetensors file's header metadata (header only: 8 bytes + its JSON)."""
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if not 0 < n < 100_000_000:
                return None
            meta = json.loads(f.read(n)).get("__metadata__") or {}
    except (OSError, ValueError, struct.error, AttributeError):
        return None
    return meta.get("format") if isinstance(meta, dict) else None


def folder_kind(path: str | Path) -> str | None:
    """What veracity wrote in `path`: a run's kind (from config.json), "capture" for an activation store,
    None for anything else (missing, empty, or not veracity's). A config.json that looks like a run's (it
    has `kind` or `versions`) but is damaged raises `ArtifactError` naming it: never taken for a user's file."""
    p = Path(path)
    cfg = run_config(p)
    if cfg is not None:
        return cfg["kind"]
    if (p / "manifest.json").is_file():
        d = _json_object(p / "manifest.json")
        if d is not None and "config_hash" in d and "format_version" in d:
            return "capture"
        if any(p.glob("shard-*.safetensors")):  # a store whose manifest was damaged
            return "capture"
    return None


def run_config(folder: str | Path) -> dict | None:
    """The config.json of the run in `folder`, checked (`artifacts.read_json`); None when the folder holds
    no run: no config.json, or a JSON object that is not a run's (neither `kind` nor `versions`: e.g. a
    Hugging Face model's config). Damaged (truncated, not UTF-8, not an object, a key missing or of the
    wrong type) is `ArtifactError` naming the file."""
    from .artifacts import RUN_CONFIG, check_schema, damaged, parse_json

    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    try:
        obj = parse_json(path.read_bytes(), path)
    except OSError as e:
        raise damaged(path, f"cannot be read ({e.strerror or e})") from None
    if isinstance(obj, dict) and "kind" not in obj and "versions" not in obj:
        return None
    return check_schema(obj, RUN_CONFIG, path, "run config")


def entries(path: Path) -> list[Path]:
    """A folder's children, less the lock and temp/staging names a writer leaves while it works."""
    return sorted(c for c in path.iterdir()
                  if c.name != LOCK_NAME and not c.name.endswith(".tmp") and STAGING not in c.name)


def folder_contents(path: str | Path, n: int = 4) -> str:
    """"notes.txt, sub/ and 3 more": what a folder holds, for error messages."""
    items = [c.name + ("/" if c.is_dir() else "") for c in entries(Path(path))]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


@dataclass(frozen=True)
class OutputKind:
    """One kind of artifact veracity writes to a user-named path.

    `layout`: "folder" (a folder veracity fills), "files" (`PATH.<suffix>` for each of `suffixes`; a
    `.json`/`.safetensors` suffix on the given path is ignored), or "file" (one file, `suffixes` its allowed
    endings). `recognise(path)` says whether `path` (the folder, one of the files, or the file) holds this
    kind; it never raises."""
    name: str
    what: str  # "a veracity intervention", for messages
    layout: str
    recognise: Callable[[Path], bool]
    suffixes: tuple[str, ...] = ()


OUTPUT_KINDS: dict[str, OutputKind] = {}


def register_output_kind(kind: OutputKind) -> OutputKind:
    """Add an output kind (layout "folder", "files" or "file") so `Output` can recognise and guard its artifacts."""
    if kind.layout not in ("folder", "files", "file"):
        raise ValueError(f"output kind {kind.name!r}: layout must be folder, files or file")
    OUTPUT_KINDS[kind.name] = kind
    return kind


def _pair_format(fmt: str) -> Callable[[Path], bool]:
    def recognise(p: Path) -> bool:
        if p.suffix == ".json":
            d = _json_object(p)
            return d is not None and d.get("format") == fmt
        if p.suffix == ".safetensors":
            return _safetensors_format(p) == fmt
        return False
    return recognise


def _is_judge(p: Path) -> bool:
    d = _json_object(p / "judge.json")
    return d is not None and str(d.get("format", "")).startswith("veracity-local-judge")


def _is_judges_folder(p: Path) -> bool:
    """A folder of local judges (`veracity judge train --out`): only judge folders named by their kind."""
    kids = entries(p)
    return bool(kids) and all(c.is_dir() and c.name in ("truth", "info") and (_is_judge(c) or not entries(c))
                              for c in kids)


REPORT_MARK = '<meta name="generator" content="veracity">'


def _is_report(p: Path) -> bool:
    try:
        with open(p, "rb") as f:
            return REPORT_MARK.encode() in f.read(4096)
    except OSError:
        return False


for _k in (
    OutputKind("intervention", "a veracity ITI intervention", "files", _pair_format("veracity-intervention"),
               (".json", ".safetensors")),
    OutputKind("steer", "a veracity residual steer", "files", _pair_format("veracity-residual-steer"),
               (".json", ".safetensors")),
    OutputKind("detector", "a veracity detector", "files", _pair_format("veracity-detector"), (".json", ".safetensors")),
    OutputKind("baked-model", "a baked veracity model", "folder", lambda p: (p / "veracity_bake.json").is_file()),
    OutputKind("judge", "a local veracity judge", "folder", _is_judge),
    OutputKind("judges", "a folder of local veracity judges", "folder", _is_judges_folder),
    OutputKind("report", "a veracity report", "file", _is_report, (".html", ".htm")),
):
    register_output_kind(_k)


def describe(path: Path) -> str:
    """What is at `path`, in words: a veracity artifact of some kind, or the user's files."""
    if path.is_dir():
        k = folder_kind(path)
        if k is not None:
            return "a capture store" if k == "capture" else f"a {k} run"
        for kind in OUTPUT_KINDS.values():
            if kind.layout == "folder" and kind.recognise(path):
                return kind.what
        return f"a folder holding {folder_contents(path)}"
    for kind in OUTPUT_KINDS.values():
        if kind.layout != "folder" and kind.recognise(path):
            return kind.what
    inside = folder_kind(path.parent) if path.parent.is_dir() else None
    if inside is not None:
        return f"a file of {'a capture store' if inside == 'capture' else f'a {inside} run'}"
    return "a file that veracity did not write"


# ------------------------------------------------------------------------------------------ run folders

def check_out_folder(path: str | Path, kind: str, *, overwrite: bool = False, resume: bool = False,
                     option: str = "--out") -> Path:
    """Raise (`BadInput` or `RunExists`) unless `path` can take a `kind` run or store; creates nothing.

    Accepted: a missing or empty folder; a folder holding a veracity run of the same kind (unfinished,
    or finished with `resume`); with `overwrite`, a folder holding any veracity run or store (it will be
    emptied). Refused: a regular file or unwritable place, a run of another kind (never mixed), a
    finished run without overwrite/resume, and a non-empty folder that holds no veracity run (overwrite
    never empties a user's folder)."""
    p = check_out_path(path, option)
    if not p.exists() or not entries(p):
        return p
    found = folder_kind(p)
    if found is None:
        raise RunExists(f"{p} is not empty and holds no veracity run ({folder_contents(p)}); refusing to "
                        f"{'empty' if overwrite else 'write into'} it: choose another {option}")
    if overwrite and not resume:
        return p
    if found != kind:
        raise RunExists(f"{p} holds a {found} run; a {kind} run is never mixed into it: choose another {option}"
                        + ("" if resume else " (or --overwrite to replace it)"))
    if kind != "capture" and (p / "results.json").exists() and not resume:
        raise RunExists(f"{p} already holds a finished run; pass --overwrite to replace it "
                        "(or --resume where the command supports it)")
    from .artifacts import check_run_files

    check_run_files(p, kind)  # a damaged checkpoint or results store is named now, before any work
    return p


# ------------------------------------------------------------------------------------------ other artifacts

def _base(path: Path) -> Path:
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def output_paths(path: str | Path, kind: str) -> list[Path]:
    """The paths an artifact of `kind` named `path` occupies (a folder, PATH.json + PATH.safetensors, a file)."""
    k = OUTPUT_KINDS[kind]
    p = Path(path).expanduser()
    if k.layout == "files":
        b = _base(p)
        return [b.with_name(b.name + s) for s in k.suffixes]
    return [p]


def claim_output(path: str | Path, kind: str, *, overwrite: bool = False, option: str = "--out") -> Path:
    """Check that `path` can take an artifact of `kind` (see the module docstring); creates nothing.
    Returns the path. Raises `OutputRefused` (or `BadInput` for an unwritable place) naming what is there."""
    k = OUTPUT_KINDS[kind]
    p = Path(path).expanduser()
    if p.is_symlink():
        raise OutputRefused(f"{option} {p} is a symbolic link; name the real place")
    if k.layout == "file":
        if k.suffixes and p.suffix.lower() not in k.suffixes:
            raise OutputRefused(f"{option} {p}: {k.what} is written to a {' or '.join(k.suffixes)} file")
        if p.is_dir():
            raise OutputRefused(f"{option} {p} is {describe(p)}, not a file to write {k.what} to")
        check_out_path(p.parent, option)
    elif k.layout == "files":
        if p.exists() and p not in output_paths(p, kind):  # the given name itself: a folder or another file
            raise OutputRefused(f"{option} {p} is {describe(p)}; {k.what} is written as "
                                f"{' + '.join(q.name for q in output_paths(p, kind))} beside it: choose another {option}")
        check_out_path(p.parent, option)
    else:
        check_out_path(p, option)
        if p.is_dir() and not entries(p):
            return p
    for q in output_paths(p, kind):
        if not q.exists() and not q.is_symlink():
            continue
        if q.is_symlink() or not k.recognise(q):
            raise OutputRefused(f"{option} {q} is {describe(q)}, not {k.what}; refusing to replace it: "
                                f"choose another {option}")
        if not overwrite:
            raise OutputRefused(f"{option} {q} already holds {k.what}; pass --overwrite to replace it")
    return p


class Output:
    """A user-named artifact: claimed when built (nothing created), written through `writing()`.

        out = Output(path, "baked-model", overwrite=False)   # before any work: refuses at once
        ...
        with out.writing() as tmp:   # a hidden sibling of the target, on the same file system
            write everything under tmp (the folder / PATH for PATH.json+PATH.safetensors / the file)
        # here the artifact is in place, whole; an exception inside the block leaves the target untouched

    The claim is checked again when the artifact is renamed into place (something may have appeared
    meanwhile). Folders the write had to create are removed again if it fails."""

    def __init__(self, path: str | Path, kind: str, *, overwrite: bool = False, option: str = "--out"):
        self.kind, self.overwrite, self.option = kind, overwrite, option
        self.path = claim_output(path, kind, overwrite=overwrite, option=option)
        self.paths = output_paths(self.path, kind)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """Yield a hidden staging path next to the target; on success it replaces the target in one rename, on an
        error nothing of it is left."""
        layout = OUTPUT_KINDS[self.kind].layout
        parent = self.paths[0].parent
        made = [a for a in [parent, *parent.parents] if not a.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        stage = parent / f".{self.paths[0].name}{STAGING}-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        inner = stage / "artifact" if layout == "folder" else stage / _base(self.path).name if layout == "files" \
            else stage / self.path.name
        try:
            yield inner
            claim_output(self.path, self.kind, overwrite=self.overwrite, option=self.option)
            if layout == "folder":
                self._replace_folder(inner)
            else:
                for q in self.paths:
                    staged = stage / q.name
                    if not staged.exists():
                        raise RuntimeError(f"the writer of {q} produced no {staged.name}")
                    os.replace(staged, q)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            for a in made:  # only folders this write created, deepest first, and only if still empty
                with contextlib.suppress(OSError):
                    a.rmdir()
            raise
        shutil.rmtree(stage, ignore_errors=True)

    def _replace_folder(self, inner: Path) -> None:
        target = self.path
        if not inner.is_dir():
            raise RuntimeError(f"the writer of {target} produced no folder")
        old = None
        if target.exists():
            if entries(target):  # an artifact of this kind, with overwrite (claimed just above)
                old = target.with_name(f".{target.name}{STAGING}-{os.getpid()}.old")
                os.replace(target, old)
            else:
                shutil.rmtree(target)  # empty but for a lock or temp names
        os.replace(inner, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_guarded(path: str | Path, kind: str, write: Callable[[Path], object], *, overwrite: bool = False,
                  option: str = "--out") -> Path:
    """The whole guarded write of an artifact in one call: claim `path` for `kind`, let `write(staged)` fill
    the staging place (a folder, PATH for PATH.json + PATH.safetensors, or the file), then put it in place.
    Returns the artifact's first path (the folder, PATH.json, the file). What `save` methods call."""
    dest = Output(path, kind, overwrite=overwrite, option=option)
    with dest.writing() as staged:
        write(staged)
    return dest.paths[0]
