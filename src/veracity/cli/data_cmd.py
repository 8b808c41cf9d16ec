"""`veracity datasets`: list the data set names that `--dataset` accepts."""

from __future__ import annotations

import typer

from ..data import list_datasets
from .common import print_table


def datasets() -> None:
    """List the registered data set names (and name patterns) with what each row holds."""
    print_table("data sets", ["name", "description"], [[n, d] for n, d in list_datasets()])


def register(app: typer.Typer) -> None:
    app.command("datasets")(datasets)
