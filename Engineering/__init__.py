"""ImLatent: unsupervised latent representation learning from 2D/3D images (clean-room re-implementation)."""

__version__ = "0.1.0"
