"""Ledig et al.'s (2017) VGG54 content loss: the MSE between VGG19 feature maps
of the super-resolved and the real image, taken at conv5_4 before its ReLU.

The VGG19 weights come from a file the user gives (nothing is downloaded):
a torchvision VGG19 state dict, as `torch.save(vgg19().state_dict())` writes
it, or a .safetensors file with the same keys."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from srgan_noise.base.errors import UserError

# torchvision's vgg19.features: index 34 is conv5_4 and 35 its ReLU, so [:35]
# ends on conv5_4's raw output (Ledig's phi_5,4; features can be negative).
VGG54_LAYERS = 35
# Ledig et al. rescale the feature maps by 1/12.75 (about 255/20) so the VGG
# loss is of the order of the pixel MSE: the loss is 1/162.5625 of the raw feature MSE.
FEATURE_SCALE = 1 / 12.75
# torchvision's VGG weights expect images in [0, 1] normalised with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MISSING_WEIGHTS = ("--content vgg needs --vgg-weights PATH: a torchvision VGG19 state dict "
                   "(torch.save(vgg19().state_dict()), .pth) or a .safetensors file with its keys; "
                   "nothing is downloaded")


def vgg54() -> nn.Sequential:
    """torchvision's VGG19 `features` up to conv5_4 before its ReLU, with
    uninitialised weights (built on the meta device: the 120M-parameter
    classifier is never allocated); load a state dict before use."""
    from torchvision.models import vgg19  # lazily: only `--content vgg` needs torchvision

    with torch.device("meta"):
        features = vgg19(weights=None).features[:VGG54_LAYERS]
    return features.to_empty(device="cpu")


class VGGLoss(nn.Module):
    """VGG54 content loss between SR and HR images (B, 3, H, W) in [0, 1]:
    mean((phi(sr) - phi(hr)) / 12.75)^2, phi the conv5_4 feature map
    (B, 512, H/16, W/16) of the ImageNet-normalised image. The VGG is frozen
    and always in eval mode; the loss is float32 under autocast."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGLoss:
        # A parent's .train() must not switch the frozen feature extractor.
        return super().train(False)

    def feature_maps(self, image: torch.Tensor) -> torch.Tensor:
        """phi_5,4 of images (B, 3, H, W) in [0, 1]: (B, 512, H/16, W/16), unscaled."""
        return self.features((image - self.mean) / self.std)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features_hr = self.feature_maps(hr)
        features_sr = self.feature_maps(sr)
        return F.mse_loss(features_sr.float() * FEATURE_SCALE, features_hr.float() * FEATURE_SCALE)


def _reason(error: BaseException) -> str:
    """One line on why a file could not be read, without torch's advice to
    retry with weights_only=False (which would run arbitrary pickled code)."""
    if "weights_only" in str(error) and error.__context__ is not None:
        error = error.__context__  # the restricted unpickler's own reason
    text = str(error).strip()
    if isinstance(error, EOFError):
        return "unexpected end of file"
    if found := re.search(r"GLOBAL (\S+) was not an allowed global", text):
        return f"it pickles a {found[1]}; only tensors are loaded"
    if "weights_only" in text:
        return "it pickles Python objects other than tensors"
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def read_state_dict(path: Path) -> dict:
    """The dict in a .safetensors file, or in a torch.save file loaded with
    weights_only (unpickling nothing but tensors and containers); a one-line
    UserError when the file is missing, unreadable or holds no dict."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a bad file makes torch.load raise any of many types: all the user's problem
        raise UserError(f"{path}: cannot read weights ({_reason(error)})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a state dict (a {type(state).__name__}, not a dict of tensors)")
    return state


def load_vgg(path: Path) -> nn.Sequential:
    """VGG19 features up to conv5_4 (before its ReLU), frozen, in eval mode,
    on the CPU, loaded from a torchvision VGG19 state dict (the full model's
    or only its `features.*` keys)."""
    state = read_state_dict(path)
    features = vgg54()
    needed = {}
    for name, parameter in features.state_dict().items():
        key = f"features.{name}"
        value = state.get(key)
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: not a VGG19 state dict (missing {key})")
        if value.shape != parameter.shape:
            raise UserError(f"{path}: not a VGG19 state dict ({key} has shape {tuple(value.shape)}, "
                            f"VGG19 has {tuple(parameter.shape)})")
        if not value.is_floating_point():
            raise UserError(f"{path}: not a VGG19 state dict ({key} is {value.dtype}, not floating point)")
        if not torch.isfinite(value).all():
            raise UserError(f"{path}: the weights contain inf or NaN values ({key})")
        needed[name] = value
    features.load_state_dict(needed)
    return features.eval().requires_grad_(False)


def load_vgg_loss(path: Path) -> VGGLoss:
    """The VGG54 content loss with weights from `path`, on the CPU: `.to(device)` it."""
    return VGGLoss(load_vgg(path))
