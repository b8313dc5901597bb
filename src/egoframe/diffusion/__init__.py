"""The diffusion core every editor shares: guidance, the sampling helpers, the latent encoding and
the training objective (target and classifier-free dropout), and the input frame's sizing (:class:`FrameInputs`).

Pure functions in the manner of k-diffusion: LEGO (:mod:`egoframe.pipelines.lego`), the baselines
(:mod:`egoframe.pipelines.baselines`) and every sibling (:mod:`egoframe.siblings.pipeline`) call these, so a
formula has one home and one test.
"""

from egoframe.diffusion.guidance import cfg, check_interval, dual_cfg, is_guided
from egoframe.diffusion.inputs import FrameInputs
from egoframe.diffusion.objective import PREDICTION_TYPES, cfg_dropout, diffusion_target
from egoframe.diffusion.sampling import encode_image_latents, randn_latents, step_kwargs

__all__ = ["FrameInputs", "PREDICTION_TYPES", "cfg", "cfg_dropout", "check_interval", "diffusion_target", "dual_cfg", "encode_image_latents",
           "is_guided", "randn_latents", "step_kwargs"]
