"""The `veracity` command. Each module in this package registers its commands with `register(app)`."""

from __future__ import annotations

import typer

app = typer.Typer(help="veracity: find, elicit, steer and measure truthfulness inside language models.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

# One line per command module; each module owns its commands.
from . import models_cmd  # noqa: E402
from . import capture_cmd  # noqa: E402
from . import runs_cmd  # noqa: E402
from . import demo_cmd  # noqa: E402
from . import data_cmd  # noqa: E402
from . import probe_cmd  # noqa: E402
from . import report_cmd  # noqa: E402
from . import iti_cmd  # noqa: E402
from . import spec_cmd  # noqa: E402
from . import interventions_cmd  # noqa: E402
from . import eval_cmd  # noqa: E402
from . import sanity_cmd  # noqa: E402
from . import steer_cmd  # noqa: E402
from . import run_cmd  # noqa: E402
from . import detect_cmd  # noqa: E402

for _m in (models_cmd, capture_cmd, runs_cmd, demo_cmd, data_cmd, probe_cmd, report_cmd, iti_cmd, spec_cmd,
           interventions_cmd, eval_cmd, sanity_cmd, steer_cmd, detect_cmd, run_cmd):
    _m.register(app)

from .common import guard_app  # noqa: E402

guard_app(app)  # library user errors -> `error: ...`, exit 2 (no traceback)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
