"""The benchmark protocols and the run's settings: what each protocol reads from its manifest, which metrics it
scores (and their exact definitions, written into every report) and :class:`BenchConfig`.

Protocols
- ``reason-edit`` (SmartEdit, papers/002 Sec. 4.1 and Table 1): input, instruction, mask of the region to
  edit, optional target phrase. Background (outside the binarised mask) PSNR / SSIM / LPIPS of the generated
  image against the input; CLIP score of the mask's crop with the target phrase; CLIP-T of the image with
  the instruction as an automatic stand-in for the paper's human Ins-align (not the same thing).
- ``magicbrush`` (SmartEdit supplement Table 2, on the MagicBrush test set of Zhang et al. 2023): L1,
  CLIP-I, DINO-I against the ground-truth target, CLIP-T against the target caption (L2 on request).
- ``rp2p`` (ReasonPix2Pix, papers/003 Sec. 4.1 and Table 3): the same pairs edited once with the direct and
  once with the reasoning instruction; L1, L2, CLIP-I, DINO, CLIP-T for both columns and the paired
  difference reasoning - direct.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egoframe.errors import InputError
from egoframe.evaluation import stats
from egoframe.evaluation.clip_dino import LONG_TEXT_MODES
from egoframe.evaluation.lpips import ALIASES, NETS
from egoframe.evaluation.runner import MetricWeights

# metric -> (higher is better, exact definition written into every report)
METRIC_INFO: dict[str, tuple[bool, str]] = {
    "bg-psnr": (True, "10 log10(1 / MSE) in dB, MSE over the background pixels only (outside the binarised "
                      "mask, all 3 channels), generated vs input, images in [0, 1]; inf when the background is "
                      "unchanged"),
    "bg-ssim": (True, "SSIM map (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, as egoframe's ssim) of the "
                      "generated image with its masked region replaced by the input's pixels vs the input, "
                      "averaged over the background pixels whose window lies inside the image"),
    "bg-lpips": (False, "LPIPS v0.1 spatial map (each layer's distance map bilinearly upsampled to the image "
                        "and summed, the release's spatial mode) of the generated image with its masked region "
                        "replaced by the input's pixels vs the input, averaged over the background pixels"),
    "fg-clip": (True, "CLIP cosine of the generated image's crop around the mask (bounding box grown to a "
                      "square inside the image) with the target phrase; samples without a phrase are skipped; "
                      "SmartEdit prints 100 x cosine"),
    "ins-clip": (True, "CLIP cosine of the whole generated image with the instruction (CLIP-T); an automatic "
                       "proxy, not SmartEdit's human Ins-align rate"),
    "l1": (False, "mean absolute difference to the ground-truth target over all pixels and channels, [0, 1]"),
    "l2": (False, "mean squared difference to the ground-truth target over all pixels and channels, [0, 1]"),
    "clip-i": (True, "cosine of the projected CLIP image embeddings of generated and ground-truth target"),
    "clip-t": (True, "cosine of the generated image's CLIP embedding and the target caption's text embedding"),
    "dino": (True, "cosine of the DINO CLS features of generated and ground-truth target (DINO-I)"),
}


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    required: tuple[str, ...]  # manifest columns
    optional: tuple[str, ...]
    default_metrics: tuple[str, ...]
    allowed_metrics: tuple[str, ...]
    columns: tuple[str, ...]  # generated variants; "generated" = the folder itself

    @property
    def subfolders(self) -> bool:
        return self.columns != ("generated",)


GROUP_COLUMNS = ("scenario", "category")

PROTOCOLS: dict[str, Protocol] = {
    # SmartEdit (Huang et al., CVPR 2024), papers/002 Sec. 4.1 / Table 1.
    "reason-edit": Protocol(
        "reason-edit", "Reason-Edit (SmartEdit, papers/002)",
        ("id", "input", "mask", "instruction"), ("target_phrase", *GROUP_COLUMNS),
        ("bg-psnr", "bg-ssim", "bg-lpips", "fg-clip", "ins-clip"),
        ("bg-psnr", "bg-ssim", "bg-lpips", "fg-clip", "ins-clip"), ("generated",)),
    # MagicBrush test set as scored in SmartEdit's supplement, papers/002 Sec. 6 / Table 2.
    "magicbrush": Protocol(
        "magicbrush", "MagicBrush (metrics of papers/002 Table 2)",
        ("id", "input", "target", "instruction", "target_caption"), GROUP_COLUMNS,
        ("l1", "clip-i", "clip-t", "dino"), ("l1", "l2", "clip-i", "clip-t", "dino"), ("generated",)),
    # ReasonPix2Pix (Jin et al. 2024), papers/003 Sec. 4.1 / Table 3.
    "rp2p": Protocol(
        "rp2p", "ReasonPix2Pix benchmark (papers/003 Table 3)",
        ("id", "input", "target", "direct_instruction", "reasoning_instruction", "target_caption"),
        ("input_caption", *GROUP_COLUMNS),
        ("l1", "l2", "clip-i", "dino", "clip-t"), ("l1", "l2", "clip-i", "dino", "clip-t"), ("direct", "reasoning")),
}


@dataclass
class BenchConfig:
    protocol: str
    metrics: list[str] | None = None  # None: the protocol's defaults (every metric of the paper)
    weights: MetricWeights = field(default_factory=MetricWeights)
    lpips_net: str = "squeeze"  # SmartEdit's public script and egoframe's `lpips` (the paper names none)
    size: int | None = None  # score pixel metrics at size x size (SmartEdit's public script: 256)
    long_text: str = "truncate"  # CLIP text over 77 tokens: truncate (keeping EOT) | chunks
    resamples: int = stats.DEFAULT_RESAMPLES
    confidence: float = stats.DEFAULT_CONFIDENCE
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 16

    @property
    def spec(self) -> Protocol:
        return PROTOCOLS[self.protocol]

    def resolved_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics else list(self.spec.default_metrics)

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InputError(f"unknown benchmark protocol {self.protocol!r}; choose from {', '.join(PROTOCOLS)}")
        metrics = self.resolved_metrics()
        unknown = [m for m in metrics if m not in self.spec.allowed_metrics]
        if unknown:
            raise InputError(f"metric(s) {', '.join(unknown)} are not part of the {self.protocol} protocol; "
                             f"choose from {', '.join(self.spec.allowed_metrics)}")
        if len(set(metrics)) != len(metrics):
            raise InputError(f"metrics listed twice: {', '.join(metrics)}")
        if self.size is not None and self.size < 11:
            raise InputError(f"size must be >= 11 pixels (the SSIM window), got {self.size}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.long_text not in LONG_TEXT_MODES:
            raise InputError(f"long_text must be one of {', '.join(LONG_TEXT_MODES)}, got {self.long_text!r}")
        if ALIASES.get(self.lpips_net, self.lpips_net) not in NETS:
            raise InputError(f"unknown LPIPS backbone {self.lpips_net!r}: use alex, squeeze or vgg")
