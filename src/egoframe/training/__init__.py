"""Training LEGO's diffusion model (and the tiny VAE of the embedded default)."""
