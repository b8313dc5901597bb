"""`egoframe` command: one typer app; each concern registers its commands from its own module.

Command modules import torch & co. inside the command functions only, so ``egoframe --help`` is fast.
"""

from __future__ import annotations

import importlib
import sys

import typer

from egoframe.errors import EgoframeError

app = typer.Typer(
    name="egoframe",
    help="Instruction-guided egocentric frame generation (LEGO and its family).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Each module defines ``register(app)``; add a module here when its concern gains commands.
COMMAND_MODULES: tuple[str, ...] = (
    "egoframe.cli.world",
    "egoframe.cli.data",
    "egoframe.cli.generate",
    "egoframe.cli.train",
    "egoframe.cli.quickstart",
    "egoframe.cli.recipe",
    "egoframe.cli.enrich",
    "egoframe.cli.evaluate",
    "egoframe.cli.vllm",
    "egoframe.cli.study",
    "egoframe.cli.demo",
    "egoframe.cli.siblings",
    "egoframe.cli.oracle",
    "egoframe.cli.reproduce",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, prog_name="egoframe")
    except EgoframeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
