"""The instruction-tuning questions and the LLaVA-1.5 prompt format.

The LEGO supplement (papers/000, F.2) says it used 10 prompt templates with the action label inserted and
picked one at random per action at training time, but it does not list them. These 10 are our own: each
asks, in a different wording, how the labelled action is carried out in the shown first-person frame, so
the answer has to be the enriched description (which hand, which object, where).
"""

from __future__ import annotations

from egoframe.errors import ConfigError

QUESTION_TEMPLATES: tuple[str, ...] = (
    "How is the action '{action}' done in this image? Describe it in one sentence.",
    "Describe in detail how the person will {action} here.",
    "The camera wearer is about to {action}. Which hand and which object are involved, and where?",
    "Explain how to {action} in this first-person view.",
    "Give a detailed description of the action '{action}' in this frame.",
    "What will it look like when I {action} in this scene?",
    "Looking at this egocentric view, describe how the person does '{action}'.",
    "In one sentence, how should the person {action} from here?",
    "What exactly happens when the camera wearer does '{action}' in this picture?",
    "Describe the hand and the object used to {action} in this image.",
)

# LLaVA-1.5's single-turn conversation format (the one llava-hf/llava-1.5-*-hf model cards use).
PROMPT_FORMAT = "USER: <image>\n{question} ASSISTANT:"


def question_for(action: str, template: int = 0) -> str:
    """The question of template number ``template`` (0-9) about ``action``."""
    if not 0 <= template < len(QUESTION_TEMPLATES):
        raise ConfigError(f"question template must be 0..{len(QUESTION_TEMPLATES) - 1}, got {template}")
    action = " ".join(action.split())
    return QUESTION_TEMPLATES[template].format(action=action)


def prompt_for(action: str, template: int = 0, image_token: str = "<image>") -> str:
    """The full user prompt (with the image placeholder) that the VLLM answers."""
    return PROMPT_FORMAT.replace("<image>", image_token).format(question=question_for(action, template))
