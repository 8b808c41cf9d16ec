"""Options and helpers shared by the CLI modules."""

from __future__ import annotations

import contextvars
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

# Piped into a log file (not a terminal), rich would squeeze tables into 80 columns and cut every cell;
# use a wide console there unless COLUMNS says otherwise.
console = Console(width=None if (sys.stdout.isatty() or os.environ.get("COLUMNS")) else 200)

DataDirOpt = typer.Option(None, "--data-dir", envvar="VERACITY_DATA",
                          help="Folder with the data sets (default: $VERACITY_DATA; the hub when online).")
ModelOpt = typer.Option("smollm2", "--model", "-m", help="Alias, local folder, .gguf file or hub id.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace an existing finished run folder.")
ModelDtypeOpt = typer.Option("float32", "--model-dtype", help="Weights and compute dtype: float32 | bfloat16 | "
                             "float16 (log-probs are accumulated in float32 either way; docs/precision.md).")
DeviceMapOpt = typer.Option(None, "--device-map", help="'auto' spreads a large model over all visible GPUs "
                            "(accelerate); overrides --device.")


def print_table(title: str, columns: list[str], rows: list[list], fmt: str = "{:.3f}") -> None:
    """A rich table. Columns (after the first, the row's key) with no value in any row ("-", None) are left
    out, and a table left with none is not printed: a console shows only tables that hold numbers."""
    cells = [[fmt.format(v) if isinstance(v, float) else ("-" if v is None else str(v)) for v in r] for r in rows]
    keep = [i for i in range(len(columns)) if i == 0 or any(r[i] != "-" for r in cells if i < len(r))]
    if not cells or len(keep) < min(2, len(columns)):
        return
    t = Table(title=title)
    for i in keep:
        t.add_column(str(columns[i]))
    for r in cells:
        t.add_row(*[r[i] if i < len(r) else "" for i in keep])
    console.print(t)


def fail(message: str) -> None:
    """Exit with a one-line error (no traceback) for a bad input."""
    from rich.markup import escape

    line = " ".join(str(message).split())  # one line, whatever the message held
    console.print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
    raise typer.Exit(2)


# The library's one-line error types: raised for bad input or a folder/store/model that cannot be used.
# Looked up in sys.modules when an exception arrives (a class whose module was never imported cannot
# have been raised), so this module imports nothing heavy.
_USER_ERRORS = {"veracity.validation": "BadInput", "veracity.runs": "RunExists", "veracity.data.errors": "DataError",
                "veracity.models.loader": "ModelNotAvailable", "veracity.models.arch": "UnsupportedArchitecture",
                "veracity.capture.store": "StoreError", "veracity.steer.intervention": "InterventionError",
                # a remote judge that failed after its retries: the endpoint's fault, named in one line (the run's
                # finished folds are kept; rerun the command to resume)
                "veracity.evaluate.judges.openai": "JudgeError"}


def user_error_types() -> tuple[type, ...]:
    return tuple(getattr(sys.modules[m], n) for m, n in _USER_ERRORS.items()
                 if m in sys.modules and hasattr(sys.modules[m], n))


# The running command's options and their command-line names, set by `guarded` for the duration of the call
# (so helpers called deep in a command can check its options without threading them through).
_CURRENT: "contextvars.ContextVar[tuple[dict, dict]]" = contextvars.ContextVar("veracity_command", default=({}, {}))


def _option_names(fn) -> dict[str, str]:
    """{parameter: its longest --spelling} from a Typer command's signature."""
    import inspect

    out = {}
    for name, p in inspect.signature(fn).parameters.items():
        decls = [d for d in (getattr(p.default, "param_decls", None) or ()) if str(d).startswith("--")]
        if decls:
            out[name] = max(decls, key=len).split("/")[0]
    return out


def option_name(key: str) -> str:
    """The command-line spelling of parameter `key` of the running command (`num_heads` -> `--num-heads`)."""
    return _CURRENT.get()[1].get(key) or "--" + key.replace("_", "-")


def _param(key: str):
    return _CURRENT.get()[0].get(key)


def _int_list(text: str, key: str) -> list[int]:
    from ..validation import BadInput

    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"{option_name(key)}: expected comma-separated integers, got {text!r}") from None


def check_model_options(lm) -> None:
    """The running command's model-dependent options against a loaded model, before any work:
    every --num-heads K at most layers x heads."""
    from ..validation import check_num_heads

    k = _param("num_heads")
    methods = _param("methods")
    if _param("iti") is False or (isinstance(methods, str) and "iti" not in methods):
        return  # sycophancy --no-iti, compare-interventions without an ITI method: K is not used
    if k is not None:
        ks = k if isinstance(k, int) else _int_list(k, "num_heads")
        check_num_heads(ks, lm.arch.n_layers, lm.arch.n_heads, option=option_name("num_heads"))


def check_question_count(n) -> None:
    """The running command's --folds against the number of questions it will split (`n`: a count, or a
    function computing it, called only when the command has --folds)."""
    from ..validation import check_folds

    folds = _param("folds")
    if isinstance(folds, int):
        check_folds(folds, n() if callable(n) else n, option=option_name("folds"))


def guarded(fn):
    """A command whose library user errors become `error: ...` and exit 2 (no traceback). Option values are
    checked by the Configs each command builds first (`veracity.constraints`), not here."""
    import functools

    names = _option_names(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..runs import closing_runs

        token = _CURRENT.set((kwargs, names))
        try:
            with closing_runs():  # a failed command releases its run folder's lock (also in-process)
                return fn(*args, **kwargs)
        except Exception as e:  # typer.Exit is not an Exception subclass of these types: passes through
            if isinstance(e, user_error_types()):
                fail(str(e))
            raise
        finally:
            _CURRENT.reset(token)
    wrapper._veracity_guarded = True
    return wrapper


def guard_app(app: typer.Typer) -> None:
    """Wrap every command of `app` (and its sub-apps) with `guarded`."""
    for c in app.registered_commands:
        if c.callback is not None and not getattr(c.callback, "_veracity_guarded", False):
            c.callback = guarded(c.callback)
    for g in app.registered_groups:
        if g.typer_instance is not None:
            guard_app(g.typer_instance)


def check(fn, *args, **kwargs):
    """Run a `veracity.validation` check; its `BadInput` becomes `error: ...` and exit 2."""
    from ..validation import BadInput

    try:
        return fn(*args, **kwargs)
    except BadInput as e:
        fail(str(e))


def parse_int_list(text: Optional[str]) -> list[int] | None:
    if text is None or text in ("", "all"):
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"expected comma-separated integers, got {text!r}")


def parse_str_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def data_dir_path(data_dir: Optional[Path]) -> Optional[Path]:
    return Path(data_dir) if data_dir else None
