"""Image super-resolution with a GAN that trains stably (instance noise, Roth et al. regularisation)."""

__version__ = "0.1.0"
