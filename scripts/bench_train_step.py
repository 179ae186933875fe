"""Cost of the monitored, stabilised GAN step, measured in one run.

1. `gan_step` (noise on, D_t(G_{t+1}) monitored) against a bare step of the
   same two networks: G forward/backward through D, D forward/backward on
   real and (reused, detached) fake - the BasicSR SRGAN step with nothing else.
2. The discriminator update with the Roth regulariser (double backward)
   against without it, eager (every step) and lazy (every 4th, scaled by 4),
   on the whole batch and on a share of it (--reg-share, a forward of its own).
3. `gan_step` with the generator's affine projection (--projection affine)
   against without it, the same weights.
4. Virtual batch norm in D (--d-norm virtual: the reference batch of
   --vbn-reference patches goes through D with every batch) against batch
   norm, D step and `gan_step`; and `gan_step` with EBGAN's auto-encoder D.
5. `gan_step` with the U-Net D (--d-arch unet, --unet-channels wide) and the
   paired D-feature loss against `gan_step` with the preset's VGG-style D and
   the MSE content term: the default GAN step before the U-Net.

Variants are interleaved and the median of the repeats is reported (process CPU
time on the CPU, wall time on CUDA); --only picks some of them. --profile
prints torch.profiler's table of the Roth D step instead (whole batch, then share).

    .venv/bin/python scripts/bench_train_step.py --preset srresnet --batch-size 16 --repeats 5
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_train_step.py --preset small --patch-size 64 --only gan_step
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
import torch.nn.functional as F

from srgan_noise.base.config import preset
from srgan_noise.training.losses import d_loss_bce, g_loss_non_saturating
from srgan_noise.training.regularisers import add_instance_noise, d_penalty_on_share, roth_omega
from srgan_noise.training.steps import Nets, build_nets, gan_step
from srgan_noise.training.train_config import TrainConfig


def bare_step(nets: Nets, lr: torch.Tensor, hr: torch.Tensor, adv_weight: float) -> None:
    nets.discriminator.requires_grad_(False)
    fake = nets.generator(lr)
    loss_g = F.mse_loss(fake, hr) + adv_weight * g_loss_non_saturating(nets.discriminator(fake))
    nets.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    nets.opt_g.step()
    nets.discriminator.requires_grad_(True)
    loss_d = d_loss_bce(nets.discriminator(hr), nets.discriminator(fake.detach()))
    nets.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    nets.opt_d.step()


def d_step(nets: Nets, hr: torch.Tensor, fake: torch.Tensor, gamma: float, share: float = 1.0) -> None:
    """The D update of gan_step, on its own (sigma 0.1 noise, as by default); the
    Roth term on the whole batch (share 1) or on a share of it."""
    x_real, x_fake = add_instance_noise(hr, 0.1), add_instance_noise(fake, 0.1)
    whole_batch = gamma and share == 1
    if whole_batch:
        x_real, x_fake = x_real.requires_grad_(True), x_fake.requires_grad_(True)
    logits_real, logits_fake = nets.discriminator(x_real), nets.discriminator(x_fake)
    loss = d_loss_bce(logits_real, logits_fake)
    if whole_batch:
        loss = loss + gamma / 2 * roth_omega(logits_real, x_real, logits_fake, x_fake)
    elif gamma:
        loss = loss + gamma / 2 * d_penalty_on_share("roth", nets.discriminator, x_real, x_fake, share)
    nets.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_d.step()


def profile_roth(nets: Nets, hr: torch.Tensor, fake: torch.Tensor, share: float) -> None:
    """torch.profiler's table (self CPU time) of one D step with the Roth term, whole batch and share."""
    from torch.profiler import ProfilerActivity, profile

    for name, step_share in (("whole batch", 1.0), (f"share {share:g}", share)):
        d_step(nets, hr, fake, 2.0, step_share)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            d_step(nets, hr, fake, 2.0, step_share)
        print(f"D step + Roth, {name}:")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def timed(function, device: torch.device) -> float:
    """Seconds of `function`: wall time on CUDA (synchronised), process CPU time on the CPU,
    which on a shared machine does not count the time other processes hold the cores."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        torch.cuda.synchronize()
        return time.perf_counter() - start
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="srresnet")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vbn-reference", type=int, default=8, help="reference batch of the virtual batch norm variants")
    parser.add_argument("--share", type=float, default=0.25, help="--reg-share of the share variants")
    parser.add_argument("--profile", action="store_true", help="profile the Roth D step instead")
    parser.add_argument("--unet-channels", type=int, default=None, help="the U-Net D's first width [default: the preset's]")
    parser.add_argument("--only", default="", help="run only the variants whose names contain this (e.g. 'D step')")
    args = parser.parse_args()

    device = torch.device(args.device)
    # Variants 1-4 and the baseline of 5: the preset's VGG-style D (its D before December 2026).
    config = TrainConfig(model=preset(args.preset, d_arch="vgg"), batch_size=args.batch_size,
                         patch_size=args.patch_size,
                         noise="linear", sigma0=0.1, steps=1000, progress=False)
    nets = build_nets(config.model, config, device)
    projected_config = dataclasses.replace(config, model=dataclasses.replace(config.model, projection="affine"))
    projected = build_nets(projected_config.model, projected_config, device)
    projected.generator.load_state_dict(nets.generator.state_dict())
    virtual_config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, d_norm="virtual", d_reference_size=args.vbn_reference))
    virtual = build_nets(virtual_config.model, virtual_config, device)
    ebgan_config = dataclasses.replace(config, loss="ebgan", model=dataclasses.replace(config.model, d_autoencoder=True))
    ebgan = build_nets(ebgan_config.model, ebgan_config, device)
    unet_config = dataclasses.replace(config, d_feature_weight=1.0, model=preset(
        args.preset, d_arch="unet", **({"d_channels": args.unet_channels} if args.unet_channels else {})))
    unet = build_nets(unet_config.model, unet_config, device)
    for other in (virtual, ebgan, unet):
        other.generator.load_state_dict(nets.generator.state_dict())
    scale = config.model.scale
    hr = torch.rand(args.batch_size, 3, args.patch_size, args.patch_size, device=device)
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True)
    hr, lr = (x.contiguous(memory_format=torch.channels_last) for x in (hr, lr))
    with torch.no_grad():
        fake = nets.generator(lr)
    reference = torch.rand(args.vbn_reference, 3, args.patch_size, args.patch_size, device=device)
    virtual.discriminator.reference.set(reference.contiguous(memory_format=torch.channels_last))

    def autocast():
        return torch.autocast(device.type, enabled=False)

    if args.profile:
        profile_roth(nets, hr, fake, args.share)
        return
    lazy = dataclasses.replace(config, reg="roth", reg_every=4)
    lazy_share = dataclasses.replace(lazy, reg_share=args.share)
    share = args.share
    variants = {
        "bare G+D forward/backward": lambda: bare_step(nets, lr, hr, config.adv_weight),
        "gan_step (noise, monitored)": lambda: gan_step(nets, [(lr, hr)], 0, config, autocast),
        "D step": lambda: d_step(nets, hr, fake, 0.0),
        "D step + Roth": lambda: d_step(nets, hr, fake, 2.0),
        "D step + Roth lazy k=4 (4 steps)": lambda: [d_step(nets, hr, fake, 2.0 * 4 if k == 0 else 0.0)
                                                     for k in range(4)],
        "D step + Roth on a share": lambda: d_step(nets, hr, fake, 2.0, share),
        "D step + Roth on a share, k=4 (4 steps)": lambda: [d_step(nets, hr, fake, 2.0 * 4 if k == 0 else 0.0, share)
                                                            for k in range(4)],
        "gan_step + Roth lazy k=4 (4 steps)": lambda: [gan_step(nets, [(lr, hr)], t, lazy, autocast)
                                                       for t in range(4)],
        "gan_step + Roth share, k=4 (4 steps)": lambda: [gan_step(nets, [(lr, hr)], t, lazy_share, autocast)
                                                         for t in range(4)],
        "gan_step, affine projection": lambda: gan_step(projected, [(lr, hr)], 0, projected_config, autocast),
        "D step, virtual batch norm": lambda: d_step(virtual, hr, fake, 0.0),
        "gan_step, virtual batch norm": lambda: gan_step(virtual, [(lr, hr)], 0, virtual_config, autocast),
        "gan_step, ebgan (auto-encoder D)": lambda: gan_step(ebgan, [(lr, hr)], 0, ebgan_config, autocast),
        "gan_step, U-Net D + D-feature loss": lambda: gan_step(unet, [(lr, hr)], 0, unet_config, autocast),
    }
    variants = {name: function for name, function in variants.items() if args.only in name}
    for function in variants.values():  # warm-up
        function()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, function in variants.items():
            times[name].append(timed(function, device))
    median = {name: statistics.median(values) for name, values in times.items()}

    clock = "wall time" if device.type == "cuda" else "process CPU time"
    print(f"device {device}, preset {args.preset}, batch {args.batch_size}, patch {args.patch_size}, "
          f"threads {torch.get_num_threads()}, {clock}, median of {args.repeats}")
    for name, value in median.items():
        print(f"  {name:42s} {value * 1000:9.1f} ms")
    ratios = [  # (what, numerator, denominator, steps in the numerator, goal)
        ("gan_step / bare step", "gan_step (noise, monitored)", "bare G+D forward/backward", 1, "<= 1.10"),
        ("D step with Roth / without", "D step + Roth", "D step", 1, "<= 2.0"),
        ("D step with Roth lazy k=4 / without", "D step + Roth lazy k=4 (4 steps)", "D step", 4, "<= 1.3"),
        (f"D step with Roth on {share:g} of the batch / without", "D step + Roth on a share", "D step", 1, "<= 2.0"),
        (f"D step with Roth on {share:g} of the batch, k=4 / without", "D step + Roth on a share, k=4 (4 steps)",
         "D step", 4, "<= 1.3"),
        ("gan_step with affine projection / without", "gan_step, affine projection", "gan_step (noise, monitored)",
         1, "<= 1.10"),
        (f"D step, virtual batch norm (reference {args.vbn_reference}) / batch norm", "D step, virtual batch norm",
         "D step", 1, None),
        ("gan_step, virtual batch norm / batch norm", "gan_step, virtual batch norm", "gan_step (noise, monitored)",
         1, None),
        ("gan_step, ebgan / non-saturating with Ledig's D", "gan_step, ebgan (auto-encoder D)",
         "gan_step (noise, monitored)", 1, None),
        (f"gan_step, U-Net D ({unet_config.model.d_channels} ch) + D-feature loss / VGG D + MSE",
         "gan_step, U-Net D + D-feature loss", "gan_step (noise, monitored)", 1, "<= 1.5"),
    ]
    for what, numerator, denominator, steps, goal in ratios:
        if numerator in median and denominator in median:
            ratio = median[numerator] / (steps * median[denominator])
            print(f"{what + ':':58s} {ratio:.3f}x" + (f"  (goal {goal})" if goal else ""))


if __name__ == "__main__":
    main()
