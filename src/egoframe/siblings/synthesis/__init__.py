"""Synthetic edit triplets: ReasonPix2Pix Part III and SmartEdit's copy-paste data, as chains of small stages.

ReasonPix2Pix Part III (papers/003, "Part II & III", Eq. 4-7, Fig. 6): caption, nouns, ground, pick, replace;
each stage has a real-model implementation that loads local weights and an offline world stand-in that reads the
frame's true ``FrameState`` (the stage table is in :mod:`.part3`).

SmartEdit (papers/002, "synthetic editing dataset", Fig. 1): segment an object (SAM), remove it by inpainting
(MAT), paste it at another place or scale, harmonize (PIH). Here the mask is the renderer's
(``render_object_alpha``), removal is a re-render without the object (:class:`WorldInpainter`) or diffusers'
SD inpainting from a local directory (:class:`DiffusersInpainter`), and harmonization is a colour-statistics
transfer (:func:`harmonize`).

Both drivers read a curated data set (``pairs.parquet``; with ``world`` the frames are redrawn from the world's
states, so a pair differs only where the edit is) and write a new data set the sibling trainer reads like any
curated one: ``images/<id>_input.png``, ``images/<id>_edited.png`` and ``pairs.parquet`` (``action`` =
``extra["instruction"]`` = the instruction). One line per finished source record in ``progress.jsonl``
makes a rerun resume without redoing finished records; ``synthesis.json`` records the stages, and a rerun
into the same folder with other stages is refused.

Modules, each doing one thing:

- :mod:`.types`: :class:`Frame`, :class:`Detection`, :class:`Pick`, :class:`EditTriplet` and the helpers
  several stages share.
- :mod:`.weights`: the real-model stages and the checks of their local weight directories.
- :mod:`.world`: the embedded world's stand-ins, which read the frame's true state.
- :mod:`.part3`: ReasonPix2Pix Part III on one frame (:class:`Part3Stages`, :func:`part3_triplet`).
- :mod:`.smartedit`: SmartEdit's copy-paste synthesis on one frame (:func:`smartedit_triplets`).
- :mod:`.driver`: the resumable drivers over a data set (:func:`synthesize_part3`, :func:`synthesize_smartedit`).
"""

from egoframe.siblings.synthesis.driver import SynthesisSummary, synthesize_part3, synthesize_smartedit
from egoframe.siblings.synthesis.part3 import JOURNAL_FILE, Part3Stages, part3_stages, part3_triplet, world_part3_stages
from egoframe.siblings.synthesis.smartedit import (SmartEditConfig, context_stats, harmonize, smartedit_triplets,
                                                   transform_layer)
from egoframe.siblings.synthesis.types import Detection, EditTriplet, Frame, Pick
from egoframe.siblings.synthesis.weights import (Blip2Captioner, DiffusersInpainter, GligenReplacer,
                                                 GroundingDinoGrounder, LlmPicker, SpacyNouns, parse_replacement)
from egoframe.siblings.synthesis.world import (WorldCaptioner, WorldGrounder, WorldInpainter, WorldReplacer,
                                               WorldRulePicker, WorldSegmenter, world_caption)

__all__ = [
    # types
    "Frame", "Detection", "Pick", "EditTriplet",
    # real models
    "Blip2Captioner", "SpacyNouns", "GroundingDinoGrounder", "LlmPicker", "GligenReplacer", "DiffusersInpainter",
    "parse_replacement",
    # world stand-ins
    "world_caption", "WorldCaptioner", "WorldGrounder", "WorldRulePicker", "WorldReplacer", "WorldSegmenter",
    "WorldInpainter",
    # ReasonPix2Pix Part III
    "JOURNAL_FILE", "Part3Stages", "world_part3_stages", "part3_stages", "part3_triplet",
    # SmartEdit
    "SmartEditConfig", "context_stats", "harmonize", "transform_layer", "smartedit_triplets",
    # drivers
    "SynthesisSummary", "synthesize_part3", "synthesize_smartedit",
]
