"""egoframe.demo: the Gradio demo (`egoframe demo`). Gradio is optional: `pip install 'egoframe[demo]'`.

The app imports the pipelines and the world inside its functions, on purpose: importing it loads no torch or diffusers.
"""

from egoframe.demo.app import DemoModels, DemoResult, build_app, example_frames, launch, load_models, run_demo

__all__ = ["DemoModels", "DemoResult", "build_app", "example_frames", "launch", "load_models", "run_demo"]
