"""`veracity models`: list the aliases and whether each is available offline."""

from __future__ import annotations

import typer

from .common import print_table


def models() -> None:
    """List the built-in model aliases and whether each can be loaded offline."""
    from ..models import list_aliases  # torch and transformers: only when this command runs

    rows = [[r["alias"], "yes" if r["offline"] else "no", r["how"], r["description"]] for r in list_aliases()]
    print_table("model aliases", ["alias", "offline", "how", "description"], rows)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
