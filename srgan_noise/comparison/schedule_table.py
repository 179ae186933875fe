"""The stabilisation schedules `srgan compare` knows: each name is the settings it
puts on a plain GAN, for the SR runs and the toy alike, with an optional strength."""

from __future__ import annotations

import math
from typing import Any

from srgan_noise.base.errors import UserError


# Schedule name -> the fields it sets, on a plain GAN (no noise, no regulariser,
# no smoothing), in both TrainConfig and ToyConfig. Strengths (sigma0, gamma0)
# are each mode's defaults: 0.1 and 2.0 for images, TOY_SIGMA0/TOY_GAMMA0 for the toy.
# "model" holds discriminator architecture fields (ModelConfig's; the toy's MLP
# takes the same names where they apply). The SR R1/R2 gamma is Roth's 2.0.
PLAIN = dict(noise="none", reg="none", label_smoothing=False)
SCHEDULES: dict[str, dict[str, Any]] = {
    "none": {},
    "noise-linear": dict(noise="linear"),
    "noise-constant": dict(noise="constant"),
    "roth-annealed": dict(reg="roth", gamma_schedule="annealed"),
    "roth-constant": dict(reg="roth", gamma_schedule="constant"),
    "label-smoothing": dict(label_smoothing=True),
    "saturating": dict(loss="saturating"),
    "lsgan": dict(loss="lsgan"),
    "hinge": dict(loss="hinge"),
    "relativistic": dict(loss="relativistic"),
    "wgan": dict(loss="wgan"),
    "wgan-gp": dict(loss="wgan-gp", model=dict(d_norm="none")),
    "r1": dict(reg="r1", gamma_schedule="constant"),
    "r2": dict(reg="r2", gamma_schedule="constant"),
    "spectral-norm": dict(model=dict(d_spectral_norm=True, d_arch="vgg")),
    "minibatch-discrimination": dict(model=dict(d_minibatch_kernels=32, d_arch="vgg")),
    "feature-matching": dict(feature_matching="replace"),
    "historical-averaging": dict(historical_averaging=1e-3),
    "virtual-batch-norm": dict(model=dict(d_norm="virtual", d_arch="vgg")),
    "ebgan": dict(loss="ebgan", model=dict(d_autoencoder=True, d_arch="vgg")),
    "ebgan-pt": dict(loss="ebgan", pt_weight=0.1, model=dict(d_autoencoder=True, d_arch="vgg")),
}


# The field a schedule's strength sets: `srgan compare --schedules noise-linear@0.03,roth-constant@0.1/4`
# (NAME@STRENGTH, and /K for a regulariser computed on every K-th D step, scaled by K).
STRENGTHS = {"noise-linear": "sigma0", "noise-constant": "sigma0", "roth-annealed": "gamma0", "roth-constant": "gamma0",
             "r1": "gamma0", "r2": "gamma0", "wgan": "clip", "wgan-gp": "gp_weight",
             "historical-averaging": "historical_averaging", "ebgan": "ebgan_margin", "ebgan-pt": "pt_weight"}
REGULARISED = ("roth-annealed", "roth-constant", "r1", "r2")


DEFAULT_SCHEDULES = ("none", "noise-linear", "noise-constant", "roth-annealed", "roth-constant", "label-smoothing")


def schedule_fields(spec: str) -> dict[str, Any]:
    """The fields schedule `spec` sets on the plain GAN: NAME, NAME@STRENGTH (the
    field of STRENGTHS[NAME]) or, for a regulariser, NAME@STRENGTH/K (every K-th D step)."""
    name, _, strength = spec.partition("@")
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name}; choose from {', '.join(SCHEDULES)}")
    fields = {**PLAIN, **SCHEDULES[name]}
    if not strength:
        return fields
    if name not in STRENGTHS:
        raise UserError(f"schedule {spec}: {name} takes no strength (those that do: {', '.join(STRENGTHS)})")
    value, _, every = strength.partition("/")
    if every and name not in REGULARISED:
        raise UserError(f"schedule {spec}: /K (lazy, every K-th D step) is for {', '.join(REGULARISED)}")
    try:
        fields[STRENGTHS[name]] = float(value)
        if every:
            fields["reg_every"] = int(every)
    except ValueError:
        raise UserError(f"schedule {spec}: expected {name}@NUMBER{'[/K]' if name in REGULARISED else ''}") from None
    if not math.isfinite(fields[STRENGTHS[name]]) or fields[STRENGTHS[name]] < 0 or fields.get("reg_every", 1) < 1:
        raise UserError(f"schedule {spec}: the strength must be a number >= 0 and K >= 1")
    return fields


def run_name(spec: str) -> str:
    """A schedule's folder name: '/' would make a sub-folder."""
    return spec.replace("/", "-every")
