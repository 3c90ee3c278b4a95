"""Training a latent LPIPS (the distance itself: tlcm.losses.latent_lpips) for one VAE's latent
space: ``python -m tlcm.latent_lpips.train`` (train.py: the command and its training loop; data.py:
the pixel-space perceptual proxy, the distortions, the triplets). docs/latent_lpips.md."""
