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
    "egoframe.cli.convert",
)

for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors, usage errors included, become one line on stderr and exit code 2, never a
    traceback or a box (``--help`` keeps typer's formatting)."""
    try:
        code = app(args=argv, prog_name="egoframe", standalone_mode=False)
    except EgoframeError as exc:
        typer.echo(f"error: {one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except _usage_errors() as exc:
        sys.exit(_report_usage_error(exc))
    except typer.Abort:  # end of input at a prompt
        typer.echo("aborted", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) and --help come back as a code


def one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _usage_errors() -> tuple[type[Exception], ...]:
    # typer >= 0.20 vendors click, whose errors derive from typer.TyperException; older typer uses click's.
    kinds = [getattr(typer, "TyperException", None)]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kind for kind in kinds if kind is not None)


def _report_usage_error(exc: Exception) -> int:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as typer shows it
        if exc.format_message().strip():
            typer.echo(exc.format_message(), err=True)
        return exc.exit_code
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    typer.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
    return getattr(exc, "exit_code", 2)


if __name__ == "__main__":
    main()
