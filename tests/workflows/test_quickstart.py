"""The quickstart's whole chain at toy size: every stage runs, the report exists, a rerun resumes."""

import json
import os

import pytest

from egoframe.workflows.quickstart import QuickstartConfig, run_quickstart


@pytest.mark.slow
def test_quickstart_end_to_end_and_resume(tmp_path):
    config = QuickstartConfig(out_dir=str(tmp_path / "qs"), videos=4, resolution=32, vae_steps=3, vllm_steps=3,
                              diffusion_steps=3, batch_size=4, eval_samples=2, sample_steps=2, workers=1,
                              progress=False)
    config.vae = None
    os.environ["EGOFRAME_NO_SHIPPED_VAE"] = "1"
    try:
        summary = run_quickstart(config, say=lambda _: None)
    finally:
        del os.environ["EGOFRAME_NO_SHIPPED_VAE"]
    out = tmp_path / "qs"
    for name in ("world", "curate", "enrich", "vae", "vllm", "embed", "diffusion", "report"):
        assert name in summary["timings_s"], name
    assert (out / "report.md").read_text().startswith("# egoframe quickstart report")
    assert (out / "report-grid.png").exists()
    assert (out / "diffusion" / "model" / "vllm" / "config.json").exists()  # the model carries its VLLM
    assert summary["held_out_pairs"] >= 1 and summary["psnr_generated_db"] > 0
    before = json.loads((out / "timings.json").read_text())
    again = run_quickstart(QuickstartConfig(**{**config.__dict__, "timings": {}}), say=lambda _: None)
    # Finished training stages are not redone: their recorded times stay those of the first run.
    assert again["timings_s"]["diffusion"] == before["diffusion"]
    assert again["timings_s"]["vllm"] == before["vllm"]
