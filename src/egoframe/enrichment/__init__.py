"""Enriched action descriptions (LEGO, papers/000 Fig. 9): label + boxes -> one detailed sentence.

Backends: ``rules`` (embedded, offline, deterministic) and ``openai`` (any OpenAI-compatible chat endpoint,
journaled so that reruns never pay twice). Entry points: :func:`enrich_dataset`, :func:`attach_descriptions`.
httpx is imported only when the network backend runs.
"""

from egoframe.enrichment.openai_backend import OpenAIConfig
from egoframe.enrichment.prompt import SYSTEM_PROMPT, PromptTemplate, load_examples
from egoframe.enrichment.rules import RuleConfig, describe
from egoframe.enrichment.run import (
    DESCRIPTIONS_FILE,
    EnrichSummary,
    aenrich_openai,
    attach_descriptions,
    enrich_dataset,
    load_descriptions,
)

__all__ = ["OpenAIConfig", "RuleConfig", "PromptTemplate", "SYSTEM_PROMPT", "EnrichSummary", "DESCRIPTIONS_FILE",
           "enrich_dataset", "aenrich_openai", "attach_descriptions", "load_descriptions", "describe", "load_examples"]
