"""`srgan train` and `srgan plot` from the command line: outputs and one-line errors."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from srgan_noise.cli import app

TINY = ["--preset", "tiny", "--batch-size", "2", "--patch-size", "16", "--log-every", "2", "--checkpoint-every", "2",
        "--no-progress"]


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result, pattern):
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_train_writes_run_and_plot(tmp_path, image_folder):
    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--val", image_folder, "--out", out, "--pretrain-steps", 2,
                 "--steps", 2, "--reg", "roth", "--reg-every", 2, "--amp", *TINY)
    assert result.exit_code == 0, result.output
    assert "done: run in" in result.stderr and "monitor.png" in result.stderr
    for name in ("checkpoint.pt", "metrics.jsonl", "generator.safetensors", "generator_pretrain.safetensors",
                 "monitor.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [2, 4] and records[1]["phase"] == "gan"
    assert Image.open(out / "monitor.png").size[0] > 400

    again = run("train", "--resume", out, "--steps", 4, "--no-progress")
    assert again.exit_code == 0, again.output
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()] == [2, 4, 6]
    assert run("plot", out, "--out", tmp_path / "p.png").exit_code == 0 and (tmp_path / "p.png").is_file()


@pytest.mark.parametrize("make_args, pattern", [
    (lambda d, t: ["--data", t / "missing"], r"missing: no such folder"),
    (lambda d, t: ["--data", t], r"no images"),
    (lambda d, t: ["--data", d, "--patch-size", "64"], r"patch size 64 is larger than every image"),
    (lambda d, t: ["--data", d, "--noise", "none", "--sigma0", "0.2"], r"--sigma0 has no effect with --noise none"),
    (lambda d, t: ["--data", d, "--gamma0", "1"], r"--gamma0 has no effect with --reg none"),
    (lambda d, t: ["--data", d, "--reg-share", "0.25"], r"--reg-share has no effect with --reg none"),
    (lambda d, t: ["--data", d, "--preset", "fast", "--no-image-skip"], r"subpixel generator .* needs the image skip"),
    (lambda d, t: ["--data", d, "--loss", "hinge", "--label-smoothing"], r"needs a loss with a real target"),
    (lambda d, t: ["--data", d, "--scale", "3"], r"scale must be the integer 2, 4 or 8"),
    (lambda d, t: ["--data", d, "--projection", "cubic"], r"projection must be one of none, affine"),
    (lambda d, t: ["--data", d, "--degradation", "jpeg"], r"--degradation must be one of bicubic, bicubic-mixed, realistic"),
    (lambda d, t: ["--data", d, "--degradation", "realistic", "--projection", "affine"],
     r"--projection affine .* --degradation realistic does not use"),
    (lambda d, t: ["--data", d, "--content", "vgg"], r"--content vgg needs --vgg-weights PATH"),
    (lambda d, t: ["--data", d, "--content", "vgg", "--vgg-weights", t / "vgg.pth"], r"vgg.pth: no such file"),
    (lambda d, t: ["--data", d, "--vgg-weights", t / "vgg.pth"], r"--vgg-weights has no effect with --content mse"),
    (lambda d, t: ["--data", d, "--device", "cuda"] if not __import__("torch").cuda.is_available()
     else ["--data", d, "--device", "tpu"], r"--device"),
])
def test_train_bad_input(tmp_path, image_folder, make_args, pattern):
    out = tmp_path / "run"
    result = run("train", "--out", out, "--pretrain-steps", 1, "--steps", 0, "--log-every", 1, "--checkpoint-every", 1,
                 "--preset", "tiny", "--patch-size", "16", "--no-progress", *make_args(image_folder, tmp_path))
    one_error_line(result, pattern)
    assert not out.exists()


def test_resume_errors(tmp_path):
    one_error_line(run("train", "--resume", tmp_path), r"no checkpoint to resume from")
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    one_error_line(run("train", "--resume", tmp_path), r"unreadable checkpoint")


def test_plot_without_metrics(tmp_path):
    one_error_line(run("plot", tmp_path), r"no metrics.jsonl")


def test_resume_extends_unfinished_pretraining_only(tmp_path, image_folder):
    from srgan_noise.training.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 0, *TINY).exit_code == 0
    one_error_line(run("train", "--resume", out, "--pretrain-steps", 4, "--no-progress"),
                   r"--pretrain-steps can only move an unfinished end later")
    # Make it a run interrupted at step 2 of 4 pre-training steps, then extend to 6.
    state = load_checkpoint(out)
    state["config"]["pretrain_steps"] = 4
    save_checkpoint(state, out / "checkpoint.pt")
    result = run("train", "--resume", out, "--pretrain-steps", 6, "--no-progress")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()] == [2, 4, 6]
    assert load_checkpoint(out)["config"]["pretrain_steps"] == 6


def test_resume_from_another_version(tmp_path, image_folder):
    from srgan_noise.training.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 0, *TINY).exit_code == 0
    state = load_checkpoint(out)
    state["config"]["g_loss"] = "non-saturating"
    save_checkpoint(state, out / "checkpoint.pt")
    one_error_line(run("train", "--resume", out, "--no-progress"), r"another version of srgan_noise.*g_loss")


def test_train_projected_adversarial_only_then_upscale(tmp_path, image_folder):
    """The seed's setting end to end: --projection affine --content none trains, and
    srgan upscale applies the saved projection (the output downscales to the input)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--val", image_folder, "--out", out, "--pretrain-steps", 2,
                 "--steps", 2, "--projection", "affine", "--content", "none", "--adv-weight", 1, *TINY)
    assert result.exit_code == 0, result.output
    record = [json.loads(line) for line in (out / "metrics.jsonl").open()][-1]
    assert record["loss_content"] == 0 and record["loss_pixel"] > 0 and "val_hf_ratio" in record
    lr = np.random.default_rng(0).uniform(0.2, 0.8, (20, 24, 3))
    Image.fromarray((lr * 255).round().astype(np.uint8)).save(tmp_path / "small.png")
    upscaled = run("upscale", tmp_path / "small.png", "-o", tmp_path / "big.png", "--weights",
                   out / "generator.safetensors", "--tile", 8, "--no-progress")
    assert upscaled.exit_code == 0, upscaled.output
    big = torch.from_numpy(np.asarray(Image.open(tmp_path / "big.png"), dtype=np.float32) / 255).permute(2, 0, 1)
    small = torch.from_numpy(np.asarray(Image.open(tmp_path / "small.png"), dtype=np.float32) / 255).permute(2, 0, 1)
    down = F.interpolate(big[None], scale_factor=0.25, mode="bicubic", antialias=True)[0]
    # consistent up to the output's 8-bit rounding and its clamping to [0, 1] where G overshoots
    assert (down - small).abs().median() < 0.5 / 255 and (down - small).abs().mean() < 1 / 255


def test_resume_with_more_steps_keeps_the_annealing_horizon(tmp_path, image_folder):
    """--resume --steps N of a linearly annealed run: sigma stays at 0 past the old end
    (the horizon stays the saved --steps) instead of jumping back up."""
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--val", image_folder, "--out", out, "--pretrain-steps", 2,
               "--steps", 2, "--noise", "linear", *TINY).exit_code == 0
    result = run("train", "--resume", out, "--steps", 4, "--no-progress")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [2, 4, 6] and records[-1]["sigma"] == 0.0


def test_train_realistic_degradation_is_saved_with_the_run(tmp_path, image_folder):
    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 0,
                 "--degradation", "realistic", "--scale", 2, *TINY)
    assert result.exit_code == 0, result.output
    from srgan_noise.training.checkpoint import load_checkpoint

    assert load_checkpoint(out)["config"]["degradation"] == "realistic"


def test_data_without_val_warns_in_one_line(tmp_path, image_folder):
    result = run("train", "--data", image_folder, "--out", tmp_path / "run", "--pretrain-steps", 2, "--steps", 0,
                 *TINY)
    assert result.exit_code == 0, result.output
    assert "warning: --data without --val: no validation figures" in result.stderr


def test_version_and_short_help():
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"srgan {version('srgan_noise')}"
    listing = run("--help").stdout
    commands = listing[listing.index("Commands:"):].splitlines()[1:]
    assert len(commands) == 6 and not any(line.rstrip().endswith("...") for line in commands)
    assert "upscale  Upscale images" in listing


def test_eval_no_progress(image_folder):
    result = run("eval", "--data", image_folder, "--bicubic", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "mean of 4" in result.stdout


def test_init_with_resume_is_refused(tmp_path):
    one_error_line(run("train", "--resume", tmp_path / "run", "--init", tmp_path / "g.safetensors"),
                   "--init starts a new run")


def test_train_ebgan_with_virtual_batch_norm_then_resume(tmp_path, image_folder):
    import torch

    from srgan_noise.training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, "--loss", "ebgan",
                 "--ebgan-margin", 0.05, "--pt-weight", 0.1, "--d-norm", "virtual", "--vbn-reference", 3, *TINY)
    assert result.exit_code == 0, result.output
    state = load_checkpoint(out)
    model = state["config"]["model"]
    assert (model["d_norm"], model["d_reference_size"], model["d_autoencoder"]) == ("virtual", 3, True)
    saved = state["config"]
    assert (saved["loss"], saved["ebgan_margin"], saved["pt_weight"]) == ("ebgan", 0.05, 0.1)
    assert state["discriminator"]["reference.batch"].shape == (3, 3, 16, 16)
    again = run("train", "--resume", out, "--steps", 4, "--no-progress")
    assert again.exit_code == 0, again.output
    reference = state["discriminator"]["reference.batch"]
    assert torch.equal(load_checkpoint(out)["discriminator"]["reference.batch"], reference)


def test_resume_a_run_saved_with_d_batch_norm(tmp_path, image_folder):
    """Checkpoints written before --d-norm replaced --no-d-batch-norm hold d_batch_norm: they resume."""
    from srgan_noise.training.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, "--d-norm", "none",
               *TINY).exit_code == 0
    state = load_checkpoint(out)
    model = state["config"]["model"]
    for name in ("d_norm", "d_reference_size", "d_autoencoder"):
        del model[name]
    model["d_batch_norm"] = False
    save_checkpoint(state, out / "checkpoint.pt")
    result = run("train", "--resume", out, "--steps", 4, "--no-progress")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out)["config"]["model"]["d_norm"] == "none"


@pytest.mark.parametrize("args, pattern", [
    (["--pt-weight", "0.1"], r"--pt-weight has no effect without --loss ebgan"),
    (["--ebgan-margin", "0.1", "--loss", "hinge"], r"--ebgan-margin has no effect without --loss ebgan"),
    (["--vbn-reference", "4"], r"--vbn-reference has no effect with --d-norm none"),
    (["--d-norm", "layer"], r"d_norm must be one of batch, virtual, none, got 'layer'"),
    (["--loss", "ebgan", "--patch-size", "20"], r"--loss ebgan needs a --patch-size that is a multiple of 8"),
    (["--loss", "ebgan", "--minibatch-discrimination", "4"], r"minibatch discrimination needs the Ledig discriminator"),
    (["--loss", "ebgan", "--ebgan-margin", "0"], r"--ebgan-margin must be > 0"),
])
def test_train_ebgan_and_d_norm_errors(tmp_path, image_folder, args, pattern):
    one_error_line(run("train", "--data", image_folder, "--out", tmp_path / "run", "--pretrain-steps", 1,
                       "--steps", 0, *TINY, *args), pattern)
    assert not (tmp_path / "run").exists()


def test_train_unet_d_with_feature_loss_end_to_end(tmp_path, image_folder):
    """--d-arch unet and --d-feature-weight reach the run: saved in its config, the U-Net's weights in its
    checkpoint, D at its own default rate, and per-pixel monitor means logged."""
    from srgan_noise.training.checkpoint import load_checkpoint
    from srgan_noise.training.monitor import read_metrics

    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--val", image_folder, "--out", out, "--pretrain-steps", 2,
                 "--steps", 2, "--d-arch", "unet", "--d-feature-weight", 0.5, "--reg", "roth", *TINY)
    assert result.exit_code == 0, result.output
    state = load_checkpoint(out)
    assert state["config"]["model"]["d_arch"] == "unet" and state["config"]["d_feature_weight"] == 0.5
    assert any(name.startswith("down.") for name in state["discriminator"])
    assert state["opt_d"]["param_groups"][0]["lr"] == 2e-3
    gan = [row for row in read_metrics(out) if row["phase"] == "gan"]
    assert gan and all(0 < row["d_real"] < 1 and row["omega"] >= 0 for row in gan)


@pytest.mark.parametrize("extra, arch", [([], "unet"), (["--d-norm", "virtual"], "vgg"),
                                         (["--minibatch-discrimination", "2"], "vgg"), (["--d-arch", "vgg"], "vgg")])
def test_small_preset_d_is_the_unet_unless_a_vgg_option_asks(tmp_path, image_folder, extra, arch):
    from srgan_noise.training.checkpoint import load_checkpoint

    args = [*TINY[2:]]  # the small preset's D, tiny's batch
    result = run("train", "--data", image_folder, "--out", tmp_path / "run", "--pretrain-steps", 1, "--steps", 1,
                 "--preset", "small", *args, *extra)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run")["config"]["model"]["d_arch"] == arch


def test_unet_with_a_vgg_option_is_one_line(tmp_path, image_folder):
    one_error_line(run("train", "--data", image_folder, "--out", tmp_path / "run", "--d-arch", "unet",
                       "--d-norm", "batch", *TINY), "U-Net discriminator has spectral norm")
