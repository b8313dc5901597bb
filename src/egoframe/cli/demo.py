"""`egoframe demo`: the interactive Gradio demo over egoframe.demo (gradio is imported inside the command)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("demo", help="Interactive demo: frame + action -> VLLM description and generated frame.")(demo)


def demo(
    model: Optional[Path] = typer.Option(None, "--model", "-m", help="egoframe or SD 1.5 directory (default: embedded)."),
    baseline: List[str] = typer.Option([], "--baseline", help="NAME=DIR of a baseline to show side by side; repeat."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    share: bool = typer.Option(False, "--share", help="Ask Gradio for a public share link (needs internet)."),
) -> None:
    from egoframe.demo.app import launch, parse_baselines

    launch(str(model) if model else None, parse_baselines(baseline), host=host, port=port, device=device, share=share)
