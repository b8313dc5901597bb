"""egoframe.study: a user-study server for generated frames (papers/001 Fig. 4, papers/000 Fig. 12).

Library entry points (the CLI's `egoframe study ...` commands are thin layers over these):

- :func:`create_study` / :class:`StudyConfig`: build a study from a generation set folder;
- :func:`add_rater`: one more invite link;
- :func:`egoframe.study.server.create_app` / :func:`egoframe.study.server.serve`: the web server;
- :func:`compute_results`, :func:`paper_table`, :func:`write_plot`, :func:`votes_csv`: the analysis.

FastAPI, SQLAlchemy and uvicorn are imported by the submodules that need them, not here.
Its modules import egoframe.evaluation (and scipy with it) inside the functions that need it, on purpose.
"""

from __future__ import annotations

_EXPORTS = {
    "StudyConfig": "egoframe.study.create",
    "create_study": "egoframe.study.create",
    "add_rater": "egoframe.study.create",
    "read_generation_set": "egoframe.study.generation_set",
    "compute_results": "egoframe.study.results",
    "paper_table": "egoframe.study.results",
    "write_plot": "egoframe.study.results",
    "votes_csv": "egoframe.study.results",
    "win_rates_csv": "egoframe.study.results",
    "fleiss_kappa": "egoframe.study.results",
}


def __getattr__(name: str):
    # Lazy: `import egoframe.study` must not pull in SQLAlchemy for callers that only read a generation set.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'egoframe.study' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
