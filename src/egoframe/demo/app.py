"""The interactive demo: upload or pick an egocentric frame, type an action, see the VLLM's description,
the generated frame, and optionally baselines side by side.

The model work is :func:`run_demo`, a plain function over :class:`DemoModels` (tested without a browser);
:func:`build_app` wraps it in a Gradio Blocks UI. Gradio is an optional extra, imported only there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from egoframe.errors import InputError

logger = logging.getLogger(__name__)

INSTALL_HINT = "gradio is not installed: pip install 'egoframe[demo]'"
VLLM_NOTE_PREFIX = "VLLM description "
# CPU-friendly defaults: a demo answers in seconds; the paper's 100 steps stay one slider away.
DEFAULT_STEPS = 20
MAX_STEPS = 100


@dataclass
class DemoModels:
    """The model shown as "LEGO" and the baselines run on the same input, in display order."""

    main: object  # LegoPipeline
    main_name: str = "egoframe"
    baselines: dict[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # load-time notes, e.g. "random weights"


@dataclass
class DemoResult:
    description: str  # what conditioned the model: the VLLM's answer, the user's text, or a statement of neither
    frame: object  # PIL image from the main model
    baselines: list[tuple[object, str]]  # (PIL image, caption)
    notes: list[str]


def load_models(model: str | None = None, baselines: dict[str, str] | None = None,
                device: str | None = None) -> DemoModels:
    """The main pipeline (a directory, or the embedded default) and each named baseline directory."""
    from egoframe.pipelines.default import load_default_pipeline
    from egoframe.pipelines.loading import load_pipeline

    notes: list[str] = []
    main = load_pipeline(model, device=device) if model else load_default_pipeline(notes)
    if not model and device:
        main.to(device)
    loaded = {}
    for name, path in (baselines or {}).items():
        if not name.strip():
            raise InputError(f"baseline {path!r} needs a name: NAME=DIR")
        loaded[name.strip()] = load_pipeline(path, device=device)
    name = os.path.basename(os.path.normpath(model)) if model else "egoframe (embedded)"
    return DemoModels(main=main, main_name=name, baselines=loaded, notes=notes)


def parse_baselines(specs: list[str]) -> dict[str, str]:
    """``["ip2p=/models/ip2p", ...]`` -> {"ip2p": "/models/ip2p"}; one-line errors for malformed entries."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise InputError(f"--baseline {spec!r}: expected NAME=DIR, e.g. ip2p=models/ip2p")
        if name.strip() in out:
            raise InputError(f"--baseline name {name.strip()!r} is given twice")
        out[name.strip()] = path.strip()
    return out


def example_frames(n: int = 4, seed: int = 0, resolution: int = 128) -> list[tuple[object, str]]:
    """Input frames from the embedded world, each with its true next action: (PIL image, action label).

    The frame is the action's PRE-15 frame, the input the LEGO benchmarks use (papers/001 Sec. 4).
    """
    from PIL import Image

    from egoframe.world.config import WorldConfig
    from egoframe.world.render import render_state
    from egoframe.world.simulate import plan_video, play

    config = WorldConfig(n_videos=max(n, 1), seed=seed, resolution=resolution).validate()
    out = []
    for index in range(n):
        plan = plan_video(config, index)
        states = play(config, plan)
        action = plan.actions[0]
        frame = render_state(states[max(action.pnr - config.pre_frames, 0)], resolution)
        out.append((Image.fromarray(frame), action.label))
    return out


def run_demo(models: DemoModels, image, action: str, description: str = "", steps: int = DEFAULT_STEPS,
             image_guidance_scale: float = 1.5, guidance_scale: float = 7.5, seed: int = 0,
             show_baselines: bool = True) -> DemoResult:
    """Generate the frame showing ``action`` done in ``image`` with the main model (and the baselines)."""
    import torch
    from PIL import Image

    if image is None:
        raise InputError("no input frame: upload one or pick an example")
    if not isinstance(image, Image.Image):
        raise InputError(f"input frame must be an image, got {type(image).__name__}")
    action = (action or "").strip()
    if not action:
        raise InputError("action is empty: type what to do, e.g. 'take cup'")
    steps = int(steps)
    if not 1 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be in 1..{MAX_STEPS}, got {steps}")
    description = (description or "").strip() or None

    def generate(pipe):
        # One seeded generator per model: every model starts from the same noise, so differences are the models'.
        generator = torch.Generator().manual_seed(int(seed))
        return pipe(image.convert("RGB"), action, description=description, num_inference_steps=steps,
                    image_guidance_scale=float(image_guidance_scale), guidance_scale=float(guidance_scale),
                    generator=generator, progress=False)

    main = generate(models.main)
    vllm_text = [n[len(VLLM_NOTE_PREFIX):].split(": ", 1)[-1] for n in main.notes if n.startswith(VLLM_NOTE_PREFIX)]
    if vllm_text:
        shown = vllm_text[0]
    elif description:
        shown = f"(your description; no VLLM attached) {description}"
    else:
        shown = "(no VLLM attached and no description given: the model read the action label only)"
    notes = list(models.notes) + [n for n in main.notes if not n.startswith(VLLM_NOTE_PREFIX)]
    baselines = []
    if show_baselines:
        for name, pipe in models.baselines.items():
            out = generate(pipe)
            baselines.append((out.images[0], name))
            notes += [f"{name}: {n}" for n in out.notes if not n.startswith(VLLM_NOTE_PREFIX)]
    return DemoResult(description=shown, frame=main.images[0], baselines=baselines, notes=notes)


def build_app(models: DemoModels, examples: list[tuple[object, str]] | None = None, example_dir: str | None = None):
    """The Gradio Blocks app around :func:`run_demo` (gradio imported here, never at module import)."""
    from egoframe.pipelines.lego import PAPER_SAMPLING

    try:
        import gradio as gr
    except ModuleNotFoundError:
        raise InputError(INSTALL_HINT) from None

    examples = example_frames() if examples is None else examples
    example_rows = []
    if examples:
        import tempfile

        folder = example_dir or tempfile.mkdtemp(prefix="egoframe-demo-")
        for i, (image, label) in enumerate(examples):
            path = os.path.join(folder, f"example-{i}.png")
            image.save(path)
            example_rows.append([path, label])

    def on_generate(image, action, description, steps, image_scale, text_scale, seed, show_baselines):
        try:
            result = run_demo(models, image, action, description, steps, image_scale, text_scale, seed,
                              show_baselines)
        except InputError as exc:  # the user's to fix: a message in the UI, not a traceback
            raise gr.Error(str(exc)) from None
        return result.description, result.frame, result.baselines, "\n".join(result.notes)

    with gr.Blocks(title="egoframe demo") as app:
        gr.Markdown("## egoframe: what will the frame look like after the action?\n"
                    f"Model: **{models.main_name}**" +
                    (f" · baselines: {', '.join(models.baselines)}" if models.baselines else ""))
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Egocentric input frame", sources=["upload", "clipboard"])
                action = gr.Textbox(label="Action", placeholder="take cup", max_lines=1)
                description = gr.Textbox(label="Description (optional; the attached VLLM writes one if empty)",
                                         lines=2)
                with gr.Accordion("Sampling", open=False):
                    steps = gr.Slider(1, MAX_STEPS, value=DEFAULT_STEPS, step=1, label="Steps (paper: 100)")
                    # Start at the main model's own sampling (sampling.json), else LEGO's public code's.
                    recommended = {**PAPER_SAMPLING, **(getattr(models.main, "sampling_defaults", None) or {})}
                    image_scale = gr.Slider(1.0, 15.0, value=float(recommended["image_guidance_scale"]), step=0.5,
                                            label="Image guidance s_x (LEGO's code: 1.5)")
                    text_scale = gr.Slider(1.0, 15.0, value=float(recommended["guidance_scale"]), step=0.5,
                                           label="Text guidance s_c (LEGO's code: 7.5)")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                show_baselines = gr.Checkbox(value=bool(models.baselines), label="Show baselines side by side",
                                             interactive=bool(models.baselines))
                run = gr.Button("Generate", variant="primary")
            with gr.Column():
                vllm_description = gr.Textbox(label="VLLM description", interactive=False, lines=3)
                frame = gr.Image(type="pil", label="Generated action frame", interactive=False)
                gallery = gr.Gallery(label="Baselines", columns=3, visible=bool(models.baselines))
                notes = gr.Textbox(label="Notes", interactive=False, lines=3)
        if example_rows:
            gr.Examples(example_rows, inputs=[image, action], label="Frames from the embedded world")
        run.click(on_generate, inputs=[image, action, description, steps, image_scale, text_scale, seed,
                                       show_baselines],
                  outputs=[vllm_description, frame, gallery, notes])
    return app


def launch(model: str | None = None, baselines: dict[str, str] | None = None, host: str = "127.0.0.1",
           port: int = 7860, device: str | None = None, share: bool = False) -> None:
    """Load the models and serve the demo (blocking)."""
    try:
        import gradio  # noqa: F401 - fail before the minutes of model loading, not after
    except ModuleNotFoundError:
        raise InputError(INSTALL_HINT) from None
    models = load_models(model, baselines, device=device)
    for note in models.notes:
        logger.warning(note)
    build_app(models).launch(server_name=host, server_port=port, share=share)
