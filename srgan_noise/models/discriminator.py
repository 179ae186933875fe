"""Discriminators: Ledig et al. (2017)'s VGG-style one returning logits, with
optional spectral normalisation, minibatch discrimination and virtual batch
normalisation; Real-ESRGAN's U-Net returning a logit per pixel (Wang et al. 2021);
and EBGAN's auto-encoder returning energies (Zhao et al. 2017)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from srgan_noise.base.config import ModelConfig


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. (2016): features f (B, A) -> o (B, kernels) with
    M_i = f_i T reshaped (kernels, dim) and o(x_i)_b = sum_j exp(-||M_i,b - M_j,b||_L1),
    the sum over the batch it is called with (so real and fake batches apart)."""

    def __init__(self, in_features: int, kernels: int, dim: int) -> None:
        super().__init__()
        self.kernels, self.dim = kernels, dim
        self.tensor = nn.Parameter(torch.randn(in_features, kernels * dim) * 0.1 / in_features**0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        m = (features @ self.tensor).view(-1, self.kernels, self.dim).transpose(0, 1)  # (kernels, B, dim)
        # cdist, not a (B, B, kernels, dim) difference tensor: 3.6x faster at B = 256, double-backward safe.
        l1 = torch.cdist(m, m, p=1)  # (kernels, B, B)
        return torch.exp(-l1).sum(2).transpose(0, 1)


class VirtualBatchNorm(nn.Module):
    """Virtual batch normalisation (Salimans et al. 2016) of (N + B, C, ...) inputs whose
    first N rows are the reference batch (ReferenceBatch.prepend puts them there).

    The reference rows are normalised with their own statistics; each of the B others
    with the statistics of the reference batch and of itself, weighted N/(N+1) and
    1/(N+1), so an example's output does not depend on the rest of its batch. Per
    channel over the batch and the positions (dimensions 2 on), as BatchNorm, then a
    learned scale and shift; no running statistics, so train and eval modes agree.
    Gradients flow through the reference statistics too, as in the paper."""

    def __init__(self, channels: int, reference_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.reference_size, self.eps = reference_size, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, positions = self.reference_size, tuple(range(2, x.dim()))
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in float32 (at least) under autocast too
        reference, examples = h[:n], h[n:]
        reference_var, reference_mean = torch.var_mean(reference, dim=(0, *positions), correction=0, keepdim=True)
        if positions:
            own_var, own_mean = torch.var_mean(examples, dim=positions, correction=0, keepdim=True)
        else:  # dense features: an example's own statistics are its values
            own_var, own_mean = torch.zeros_like(examples), examples
        # The mixture of the reference batch (weight N/(N+1)) and the example (1/(N+1)).
        new = 1 / (n + 1)
        mean = new * own_mean + (1 - new) * reference_mean
        var = new * own_var + (1 - new) * reference_var + new * (1 - new) * (own_mean - reference_mean).pow(2)
        # A scale and shift per row and channel, then one pass over x (not a pass per operation).
        row_means = torch.cat([reference_mean.expand(n, *reference_mean.shape[1:]), mean])
        row_vars = torch.cat([reference_var.expand(n, *reference_var.shape[1:]), var])
        shape = (1, -1) + (1,) * len(positions)
        scale = torch.rsqrt(row_vars + self.eps) * self.weight.view(shape)
        shift = self.bias.view(shape) - row_means * scale
        return torch.addcmul(shift, h, scale).to(x.dtype)


class ReferenceBatch(nn.Module):
    """Virtual batch norm's fixed reference batch (N, ...) of real inputs, chosen once by
    set() and kept as a buffer, so checkpoints hold it and a resume is exact."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("batch", torch.empty(0))

    @torch.no_grad()
    def set(self, batch: torch.Tensor) -> None:
        if batch.shape[0] != self.size:
            raise ValueError(f"the reference batch must have {self.size} examples, got {batch.shape[0]}")
        self.batch = batch.detach().to(self.batch.device, torch.float32, copy=True)

    def prepend(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (N + B, ...): the reference batch, then x."""
        if self.batch.numel() == 0:
            raise RuntimeError("virtual batch norm needs its reference batch: call set() first")
        if x.shape[1:] != self.batch.shape[1:]:
            raise ValueError(f"virtual batch norm: inputs of shape {tuple(x.shape[1:])}, but the reference "
                             f"batch's are {tuple(self.batch.shape[1:])}")
        return torch.cat([self.batch.to(x.dtype), x])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        stored = state_dict.get(prefix + "batch")
        if stored is not None:  # the empty buffer takes the stored batch's shape
            self.batch = torch.empty_like(stored, device=self.batch.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def reference_stream(seed: int) -> torch.Generator:
    """The generator a run draws its reference batch from: seeded by the run's seed but
    apart from its data stream, so a run with virtual batch norm sees the same batches
    as one without."""
    return torch.Generator().manual_seed(seed + 1_000_003)


def norm_layers(kind: str, channels: int, reference_size: int, dense: bool = False) -> list[nn.Module]:
    """The normalisation after a conv (a linear layer if dense) for ModelConfig.d_norm
    `kind` (batch | virtual | none): one layer, or none."""
    if kind == "batch":
        return [nn.BatchNorm1d(channels) if dense else nn.BatchNorm2d(channels)]
    if kind == "virtual":
        return [VirtualBatchNorm(channels, reference_size)]
    if kind == "none":
        return []
    raise ValueError(f"unknown normalisation {kind!r}")


def spectral_normalise(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every conv, transposed conv and linear layer, in place."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                setattr(parent, name, spectral_norm(child))


def signal_preserving_init(discriminator: "Discriminator", input_mean: float = 0.0) -> None:
    """He-normal weights for LeakyReLU(0.2), zero biases (the first conv's cancelling an
    input of constant `input_mean`) and a near-zero last layer (logits start at about 0).

    For a D without normalisation: PyTorch's default init shrinks the signal about
    sqrt(3)-fold per layer, so after eight convs the biases swamp the input and D's
    loss sits at ln 2 for hundreds of steps (at Adam 1e-4, a GAN phase's whole length)."""
    if next(discriminator.parameters()).is_meta:  # shapes only: nothing to draw (see Generator._init_weights)
        return
    for module in discriminator.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(module.bias)
    first = discriminator.features[0]
    with torch.no_grad():
        first.bias.copy_(-input_mean * first.weight.sum((1, 2, 3)))
    nn.init.normal_(discriminator.head[-1].weight, std=0.01)


class MapsDiscriminator(nn.Module):
    """A discriminator whose forward_maps(x) gives (feature maps for the paired feature loss,
    pooled features for feature matching, outputs): its other two calls follow from it."""

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_maps(x)[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x)[2]


class Discriminator(MapsDiscriminator):
    """(B, 3, H, W) in [0, 1] (any H, W >= 16) -> logits (B,).

    Eight 3x3 convs, widths c, c, 2c, 2c, 4c, 4c, 8c, 8c with stride 2 on every
    second one, LeakyReLU 0.2 and BN (not after the first), then adaptive
    pooling to 6x6 (what a 96x96 patch gives, so Ledig's head is unchanged)
    and a dense head. With config.d_norm "virtual" the BNs are virtual batch
    norms and inputs must have the reference batch's size (set_reference).
    With d_norm "none" the weights start signal-preserving (signal_preserving_init),
    for inputs whose mean is about `input_mean` (0.5: images in [0, 1])."""

    def __init__(self, config: ModelConfig, input_mean: float = 0.5) -> None:
        super().__init__()
        self.config = config
        c = config.d_channels
        widths = [c, c, 2 * c, 2 * c, 4 * c, 4 * c, 8 * c, 8 * c]
        layers: list[nn.Module] = []
        in_channels = 3
        for i, width in enumerate(widths):
            stride = 2 if i % 2 == 1 else 1
            layers.append(nn.Conv2d(in_channels, width, 3, stride=stride, padding=1))
            if i > 0:
                layers += norm_layers(config.d_norm, width, config.d_reference_size)
            layers.append(nn.LeakyReLU(0.2))
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.reference = ReferenceBatch(config.d_reference_size) if config.d_norm == "virtual" else None
        self.pool = nn.AdaptiveAvgPool2d(6)
        feature_count = 8 * c * 36
        self.minibatch = (MinibatchDiscrimination(feature_count, config.d_minibatch_kernels, config.d_minibatch_dim)
                          if config.d_minibatch_kernels else None)
        self.head = nn.Sequential(
            nn.Linear(feature_count + config.d_minibatch_kernels, config.d_dense),
            nn.LeakyReLU(0.2),
            nn.Linear(config.d_dense, 1),
        )
        if config.d_norm == "none":
            signal_preserving_init(self, input_mean)
        if config.d_spectral_norm:
            spectral_normalise(self)

    def forward_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """-> the feature maps after every conv's activation (the paired feature loss), the pooled
        features (B, 8c*36) (feature matching), and logits (B,). With virtual batch norm the
        reference batch goes through the convs ahead of x (and is cut from what this returns)."""
        h = x if self.reference is None else self.reference.prepend(x)
        maps = []
        for layer in self.features:
            h = layer(h)
            if isinstance(layer, nn.LeakyReLU):
                maps.append(h[-x.shape[0]:])
        features = self.pool(h).flatten(1)[-x.shape[0]:]
        head_input = features if self.minibatch is None else torch.cat([features, self.minibatch(features)], 1)
        return maps, features, self.head(head_input).squeeze(1)


class AutoEncoderDiscriminator(MapsDiscriminator):
    """EBGAN's discriminator (Zhao et al. 2017): (B, 3, H, W) in [0, 1], H and W
    multiples of 8 -> energy (B,), the mean squared error of its reconstruction of x
    (low: taken for real).

    A DCGAN-style conv auto-encoder, as EBGAN's image models: x scaled to [-1, 1],
    three 4x4 stride-2 convs of widths c, 2c, 4c (LeakyReLU 0.2, a norm after the
    second) to the code (B, 4c, H/8, W/8), three 4x4 stride-2 transposed convs back
    (ReLU, norms after the first two) and a tanh, scaled back to [0, 1]; c =
    config.d_channels, norms per config.d_norm. Centred so, the untrained
    auto-encoder starts near mid-grey rather than black, and its energies fall in
    tens of steps rather than hundreds."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.d_channels
        norm = functools.partial(norm_layers, config.d_norm, reference_size=config.d_reference_size)
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), *norm(2 * c), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), *norm(2 * c), nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), *norm(c), nn.ReLU(),
            nn.ConvTranspose2d(c, 3, 4, stride=2, padding=1),
        )
        self.reference = ReferenceBatch(config.d_reference_size) if config.d_norm == "virtual" else None
        if config.d_spectral_norm:
            spectral_normalise(self)

    def forward_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """-> the code maps (the paired feature loss), codes (B, 4c * H/8 * W/8), which the
        pulling-away term and feature matching use, and energies (B,)."""
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"the auto-encoder discriminator needs sides that are multiples of 8, "
                             f"got {tuple(x.shape[-2:])}")
        h = x if self.reference is None else self.reference.prepend(x)
        codes = self.encoder(2 * h - 1)
        reconstruction = (torch.tanh(self.decoder(codes)[-x.shape[0]:].float()) + 1) / 2
        energies = (reconstruction - x.float()).pow(2).flatten(1).mean(1)
        codes = codes[-x.shape[0]:]
        return [codes], codes.flatten(1), energies


class UNetDiscriminator(MapsDiscriminator):
    """Real-ESRGAN's U-Net discriminator with spectral normalisation (Wang et al. 2021):
    (B, 3, H, W) in [0, 1], H and W multiples of 8 -> a logit per pixel (B, 1, H, W).

    A conv to c channels, three 4x4 stride-2 convs (2c, 4c, 8c), three bilinear x2
    upsamplings each followed by a 3x3 conv (4c, 2c, c) and the skip from the encoder
    level of that size, two 3x3 convs and a 3x3 conv to one channel; LeakyReLU 0.2; every
    conv but the first and last spectrally normalised, with no bias (c = config.d_channels).
    Each pixel's verdict rests on the 64x64 window around it (through the bottleneck); the
    monitor, the losses and the regularisers average the per-pixel terms (steps.gan_step).

    Unlike Real-ESRGAN's, it sees its input centred, 2x - 1: on [0, 1] images every feature
    carries the brightness offset, whose direction sets each spectrally normalised layer's
    largest singular value, so the small differences between real and fake shrink at every
    layer (docs/realism.md: centred, a fresh D of 8 channels tells the PSNR model's outputs
    from HR within 300 steps; uncentred it has barely started by then)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.d_channels

        def normalised(in_channels: int, out_channels: int, kernel: int, stride: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(in_channels, out_channels, kernel, stride, padding=1, bias=False))

        self.conv0 = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.ModuleList([normalised(c, 2 * c, 4, 2), normalised(2 * c, 4 * c, 4, 2),
                                   normalised(4 * c, 8 * c, 4, 2)])
        self.up = nn.ModuleList([normalised(8 * c, 4 * c, 3, 1), normalised(4 * c, 2 * c, 3, 1),
                                 normalised(2 * c, c, 3, 1)])
        self.tail = nn.ModuleList([normalised(c, c, 3, 1), normalised(c, c, 3, 1)])
        self.conv_out = nn.Conv2d(c, 1, 3, padding=1)

    def forward_maps(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """-> the feature maps of every level (encoder, decoder, tail: the paired feature loss),
        the bottleneck's features pooled over positions (B, 8c) (feature matching), and the
        logits (B, 1, H, W)."""
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"the U-Net discriminator needs sides that are multiples of 8, got {tuple(x.shape[-2:])}")
        h = F.leaky_relu(self.conv0(2 * x - 1), 0.2)
        skips, maps = [h], []
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.2)
            skips.append(h)
            maps.append(h)
        skips.pop()  # the bottleneck has no skip of its own
        for conv in self.up:
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = F.leaky_relu(conv(h), 0.2) + skips.pop()
            maps.append(h)
        for conv in self.tail:
            h = F.leaky_relu(conv(h), 0.2)
            maps.append(h)
        return maps, maps[2].mean((2, 3)), self.conv_out(h)


def build_discriminator(config: ModelConfig) -> Discriminator | AutoEncoderDiscriminator | UNetDiscriminator:
    """The discriminator config describes: EBGAN's auto-encoder, Real-ESRGAN's U-Net or Ledig's."""
    if config.d_autoencoder:
        return AutoEncoderDiscriminator(config)
    return UNetDiscriminator(config) if config.d_arch == "unet" else Discriminator(config)
