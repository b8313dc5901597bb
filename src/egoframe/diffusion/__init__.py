"""The diffusion core every editor shares: guidance, the sampling helpers and the latent encoding.

Pure functions in the manner of k-diffusion: LEGO (:mod:`egoframe.pipelines.lego`), the baselines
(:mod:`egoframe.pipelines.baselines`) and every sibling (:mod:`egoframe.siblings.pipeline`) call these, so a
formula has one home and one test.
"""

from egoframe.diffusion.guidance import cfg, check_interval, dual_cfg, is_guided
from egoframe.diffusion.sampling import encode_image_latents, randn_latents, step_kwargs

__all__ = ["cfg", "check_interval", "dual_cfg", "encode_image_latents", "is_guided", "randn_latents", "step_kwargs"]
