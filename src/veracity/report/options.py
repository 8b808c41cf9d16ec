"""The options of `veracity report` besides the run folders (read by the report's readers) and --out (the
writer guard's), as a checked Config (`veracity.constraints`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..constraints import Checked, Text


@dataclass
class ReportConfig(Checked):
    """The checked options of `veracity report`: the page title."""
    _constraints = {"title": [Text()]}
    _commands = ("report",)

    title: str = "veracity report"
