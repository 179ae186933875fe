"""Frozen configurations: one for the architecture (saved with every checkpoint
and weights file so loading rebuilds the model), one per command."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from srgan_noise.base.errors import UserError


PROJECTIONS = ("none", "affine")
# The generator's x2 stages: pixel-shuffle (Ledig et al.: a conv to 4c channels, then PixelShuffle) |
# nearest (ESRGAN's: nearest-neighbour x2, then a conv), which has no weights of its own per sub-pixel
# position: the GAN grew PixelShuffle's into a pattern repeating every `scale` pixels (4-20x less with nearest).
UPSAMPLES = ("pixel-shuffle", "nearest")
GENERATORS = ("srresnet", "subpixel")  # generator.SRResNet-style Generator | generator.SubPixelGenerator
D_NORMS = ("batch", "virtual", "none")  # the discriminator's normalisation layers
# vgg: Ledig et al.'s, a logit per image | unet: Real-ESRGAN's U-Net with spectral norm, a logit per pixel
D_ARCHS = ("vgg", "unet")
# Sane sizes: a weights file or checkpoint with others is crafted or corrupt, and
# building its model would allocate memory sized by its metadata.
INT_RANGES = {"channels": (1, 1024), "blocks": (0, 256), "d_channels": (1, 1024), "d_dense": (1, 65536),
              "d_minibatch_kernels": (0, 1024), "d_minibatch_dim": (1, 1024), "d_reference_size": (1, 1024)}
BOOLS = ("batch_norm", "image_skip", "d_spectral_norm", "d_autoencoder")


@dataclass(frozen=True)
class ModelConfig:
    scale: int = 4
    # srresnet (Ledig et al.) | subpixel (ESPCN-class: a few convs on the LR grid, for speed on a CPU)
    generator: str = "srresnet"
    channels: int = 64  # generator width
    blocks: int = 16  # generator residual blocks (srresnet) or hidden 3x3 convs (subpixel)
    batch_norm: bool = True  # in the generator's residual blocks
    # Add the bicubic-upsampled input to the output so the network learns a
    # residual (BasicSR's MSRResNet): pre-training passes bicubic in a few
    # hundred steps instead of thousands. False is Ledig et al.'s original.
    image_skip: bool = True
    upsample: str = "pixel-shuffle"  # one of UPSAMPLES
    # none | affine: end with the affine projection (Sønderby et al. 2016) onto the
    # images whose downscaling is exactly the input (projection.py).
    projection: str = "none"
    d_channels: int = 64  # discriminator's first width (doubles up to 8x)
    # batch | virtual (Salimans et al. 2016: each example normalised with the statistics of
    # a fixed reference batch of d_reference_size real patches and of itself) | none
    d_norm: str = "batch"
    d_reference_size: int = 8
    d_dense: int = 1024  # discriminator's dense head width
    d_spectral_norm: bool = False  # on every conv and linear layer of D (Miyato et al. 2018)
    d_minibatch_kernels: int = 0  # minibatch discrimination kernels (0: off)
    d_minibatch_dim: int = 8  # their dimension
    # EBGAN (Zhao et al. 2017): D is a conv auto-encoder whose energy is its reconstruction
    # error (d_channels, d_norm and d_spectral_norm apply; d_dense and minibatch do not).
    d_autoencoder: bool = False
    # One of D_ARCHS (the auto-encoder aside). The U-Net has spectral norm and no other normalisation,
    # no dense head and no minibatch discrimination: d_channels is its first width.
    d_arch: str = "vgg"

    def __post_init__(self) -> None:
        if type(self.scale) is not int or self.scale not in (2, 4, 8):  # repr: the string "4" is not the number 4
            raise UserError(f"scale must be the integer 2, 4 or 8, got {self.scale!r}")
        if self.generator not in GENERATORS:
            raise UserError(f"generator must be one of {', '.join(GENERATORS)}, got {self.generator!r}")
        if self.upsample not in UPSAMPLES:
            raise UserError(f"upsample must be one of {', '.join(UPSAMPLES)}, got {self.upsample!r}")
        if self.projection not in PROJECTIONS:
            raise UserError(f"projection must be one of {', '.join(PROJECTIONS)}, got {self.projection!r}")
        if self.d_norm not in D_NORMS:
            raise UserError(f"d_norm must be one of {', '.join(D_NORMS)}, got {self.d_norm!r}")
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise UserError(f"{name} must be an integer from {low} to {high}, got {value!r}")
        for name in BOOLS:
            if type(getattr(self, name)) is not bool:
                raise UserError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.generator == "subpixel" and (self.batch_norm or not self.image_skip):
            raise UserError("the subpixel generator has no batch norm and needs the image skip (it predicts a luma "
                            "residual on the bicubic image)")
        if self.generator == "subpixel" and self.upsample != "pixel-shuffle":
            raise UserError("the subpixel generator has no upsampling stages (--upsample is SRResNet's)")
        if self.d_arch not in D_ARCHS:
            raise UserError(f"d_arch must be one of {', '.join(D_ARCHS)}, got {self.d_arch!r}")
        if self.d_arch == "unet" and (self.d_autoencoder or self.d_minibatch_kernels or self.d_norm != "none"):
            raise UserError("the U-Net discriminator has spectral norm and no other normalisation, no minibatch "
                            "discrimination, and is not EBGAN's auto-encoder")
        if self.d_autoencoder and self.d_minibatch_kernels:
            raise UserError("minibatch discrimination needs the Ledig discriminator, not EBGAN's auto-encoder")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        if not isinstance(values, dict):
            raise UserError(f"the architecture must be a JSON object, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        if "d_batch_norm" in values and "d_norm" not in values:  # files written before d_norm replaced it
            old = values["d_batch_norm"]
            if type(old) is not bool:
                raise UserError(f"d_batch_norm must be true or false, got {old!r}")
            values = {**{k: v for k, v in values.items() if k != "d_batch_norm"}, "d_norm": "batch" if old else "none"}
        unknown = set(values) - names
        if unknown:
            raise UserError(f"unknown architecture fields {sorted(unknown)}")
        return cls(**values)


# SRResNet presets upsample by nearest x2 + conv: ModelConfig's default stays pixel-shuffle, what
# files written before the field existed hold (docs/stabilisation-evidence.md, "Where the GAN adds detail").
# Their discriminators have no normalisation: batch norm hid the fakes' noise from D (same section).
# The GAN presets' D is the U-Net, UNET_D_CHANNELS wide (a narrow D learns fast: docs/realism.md);
# d_channels and d_dense are the VGG-style D's, for --d-arch vgg (the presets' D before December 2026).
# tiny keeps the VGG-style D, whose toolbox (virtual batch norm, minibatch discrimination, EBGAN) its
# tests exercise.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(channels=8, blocks=2, upsample="nearest", d_channels=8, d_dense=32, d_norm="none"),
    "small": dict(channels=32, blocks=6, upsample="nearest", d_arch="unet", d_channels=32, d_dense=256, d_norm="none"),
    "srresnet": dict(channels=64, blocks=16, upsample="nearest", d_arch="unet", d_channels=64, d_dense=1024,
                     d_norm="none"),
    # For speed on a CPU (about 1/33 of small's multiply-adds a pixel); the D is small's, for a GAN phase.
    "fast": dict(generator="subpixel", channels=16, blocks=4, batch_norm=False, d_arch="unet", d_channels=32,
                 d_dense=256, d_norm="none"),
}
UNET_D_CHANNELS = 8  # the U-Net's first width in every preset, unless d_channels is given


def preset(name: str, scale: int = 4, **overrides: Any) -> ModelConfig:
    """The preset's architecture with `overrides`. Without a d_arch of their own, overrides that
    only the VGG-style D has (a normalisation, minibatch discrimination, spectral norm as an
    option, EBGAN's auto-encoder, which stands in for it) pick it; its D's width is then the
    U-Net's or the VGG-style D's, whichever d_arch it ends with."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    fields = {**PRESETS[name], **overrides}
    if "d_arch" not in overrides and (fields["d_norm"] != "none" or fields.get("d_minibatch_kernels")
                                      or fields.get("d_spectral_norm") or fields.get("d_autoencoder")):
        fields["d_arch"] = "vgg"
    if fields.get("d_arch") == "unet" and "d_channels" not in overrides:
        fields["d_channels"] = UNET_D_CHANNELS
    return ModelConfig(scale=scale, **fields)
