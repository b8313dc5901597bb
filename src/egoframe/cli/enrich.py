"""`egoframe enrich`: write enriched action descriptions for a curated data set."""

from __future__ import annotations

from typing import Optional

import typer

from egoframe.cli.params import finite_float


def register(app: typer.Typer) -> None:
    app.command("enrich")(enrich)


def enrich(
    data_dir: str = typer.Argument(..., help="Curated data set directory (holds pairs.parquet)."),
    backend: str = typer.Option("rules", help="rules (offline, deterministic) or openai (any OpenAI-compatible endpoint)."),
    base_url: Optional[str] = typer.Option(None, help="Chat endpoint base URL, e.g. http://127.0.0.1:8000/v1 (env EGOFRAME_LLM_BASE_URL)."),
    model: Optional[str] = typer.Option(None, help="Model name served there (env EGOFRAME_LLM_MODEL)."),
    api_key: Optional[str] = typer.Option(None, help="API key (env OPENAI_API_KEY); local servers need none."),
    concurrency: int = typer.Option(8, help="Requests in flight at once."),
    max_retries: int = typer.Option(4, help="Retries per item (errors or invalid answers) before it is marked failed."),
    timeout: float = typer.Option(60.0, parser=finite_float, help="Seconds for one request."),
    backoff: float = typer.Option(1.0, parser=finite_float,
                                  help="First retry delay in seconds; doubles per retry (with jitter)."),
    limit: Optional[int] = typer.Option(None, help="Handle at most this many unfinished items in this run."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Also resend items an earlier run marked failed."),
    examples: Optional[str] = typer.Option(None, help="JSON file of worked in-context examples (default: built in)."),
    price_prompt: float = typer.Option(0.0, parser=finite_float,
                                       help="USD per 1000 prompt tokens, for the cost line."),
    price_completion: float = typer.Option(0.0, parser=finite_float,
                                           help="USD per 1000 completion tokens, for the cost line."),
    surface: Optional[str] = typer.Option(None, help="rules: surface named in places, e.g. counter (default: per source)."),
) -> None:
    """Enrich every action label with a one-sentence description (which hand, which object, where)."""
    from egoframe.enrichment import OpenAIConfig, PromptTemplate, RuleConfig, enrich_dataset, load_examples

    openai_cfg = template = None
    rules_cfg = RuleConfig(surface=surface)
    if backend == "openai":
        openai_cfg = OpenAIConfig.from_env(
            base_url=base_url, model=model, api_key=api_key, concurrency=concurrency, max_retries=max_retries,
            timeout=timeout, backoff_base=backoff, price_prompt_per_1k=price_prompt,
            price_completion_per_1k=price_completion)
        template = PromptTemplate(examples=load_examples(examples)) if examples else PromptTemplate()
    progress = _progress_printer()
    try:
        summary = enrich_dataset(data_dir, backend, openai=openai_cfg, rules=rules_cfg, template=template, limit=limit,
                                 retry_failed=retry_failed, progress=progress)
    finally:
        if progress is not None:
            typer.echo("", err=True)  # end the counter's line
    for line in summary.lines():
        typer.echo(line)


def _progress_printer():
    """A one-line counter on a terminal, nothing when piped: logs of long runs should not fill with it."""
    import sys

    if not sys.stderr.isatty():
        return None
    counts = {"done": 0, "failed": 0}

    def show(status: str) -> None:
        counts[status] += 1
        sys.stderr.write(f"\r{counts['done']} done, {counts['failed']} failed")
        sys.stderr.flush()

    return show
