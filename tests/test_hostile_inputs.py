"""Hostile and careless inputs, each failing before its fix: one `error:` line, exit 2,
nothing left behind, nothing lost."""

import os
import re
import time

import pytest
import torch
from PIL import Image

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import open_image
from srgan_noise.training.checkpoint import save_checkpoint
from srgan_noise.training.steps import step_memory
from srgan_noise.training.train_config import TrainConfig
from tests.test_cli import TINY, one_error_line, run


# 1. A batch that cannot fit is refused before anything is made.

def test_step_memory_grows_with_the_batch_and_the_patch():
    model = preset("tiny")
    one = step_memory(model, 1, 32)
    assert step_memory(model, 8, 32) == 8 * one
    assert step_memory(model, 1, 64) > 3 * one  # activations grow with the patch's area


def test_a_batch_that_cannot_fit_is_refused_up_front(tmp_path, image_folder, monkeypatch, one_thread):
    monkeypatch.setattr("srgan_noise.training.train.available_memory", lambda: 2**30)
    out = tmp_path / "run"
    result = run("train", "--data", image_folder, "--out", out, "--steps", 1, "--pretrain-steps", 1,
                 *TINY[:2], "--batch-size", 100000, "--patch-size", 16)
    one_error_line(result, r"--batch-size 100000 of 16 px patches needs about [\d.]+ GiB of memory a step, "
                           r"1\.0 GiB is available; lower --batch-size or --patch-size")
    assert not out.exists()


# 2. A checkpoint whose config asks for a huge network is refused before it is built.

def test_checkpoint_config_bigger_than_its_weights_is_refused_before_building(tmp_path, image_folder, one_thread):
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, *TINY).exit_code == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["config"]["model"].update(channels=1024, blocks=256)  # within ModelConfig's ranges: billions of weights
    save_checkpoint(state, out / "checkpoint.pt")
    start = time.perf_counter()
    result = run("train", "--resume", out, "--steps", 4, "--no-progress")
    one_error_line(result, r"checkpoint.pt: its generator weights do not match the architecture in its config "
                           r"\(missing body\.")
    assert time.perf_counter() - start < 30  # built on the meta device only


def test_checkpoint_discriminator_of_another_size_is_refused(tmp_path, image_folder, one_thread):
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, *TINY).exit_code == 0
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["config"]["model"].update(d_channels=512)
    save_checkpoint(state, out / "checkpoint.pt")
    one_error_line(run("train", "--resume", out, "--steps", 4, "--no-progress"),
                   r"its discriminator weights do not match the architecture in its config")


# 3. A plot to a format matplotlib cannot write.

def test_plot_to_an_unknown_format_is_one_line(tmp_path, image_folder, one_thread):
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, *TINY).exit_code == 0
    result = run("plot", out, "--out", tmp_path / "m.txt")
    one_error_line(result, r"m\.txt: matplotlib cannot write a \.txt; end it in one of .*\.pdf.*\.png.*\.svg")
    assert not (tmp_path / "m.txt").exists()


# 4. Not a regular file: a FIFO would block the read forever.

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_not_read(tmp_path):
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    one_error_line(run("upscale", fifo), r"fifo\.png: not a regular file or folder")
    with pytest.raises(UserError, match=r"fifo\.png: not a regular file; give an image file"):
        open_image(fifo)


# 5. Every number checked where the config is built.

@pytest.mark.parametrize("option, value, pattern", [
    ("--adv-weight", "nan", r"--adv-weight must be a number >= 0, got nan"),
    ("--noise-steps", "-5", r"--noise-steps must be an integer >= 0 \(or left out: the GAN steps\), got -5"),
    ("--lr", "0", r"--lr must be a number > 0, got 0"),
    ("--pretrain-lr", "inf", r"--pretrain-lr must be a number > 0, got inf"),
    ("--d-lr", "0", r"--d-lr must be a number > 0, got 0"),
    ("--sigma0", "nan", r"--sigma0 must be a number >= 0, got nan"),
    ("--seed", "-1", r"--seed must be an integer >= 0, got -1"),
])
def test_bad_numbers_are_refused_before_any_work(tmp_path, image_folder, option, value, pattern):
    out = tmp_path / "run"
    one_error_line(run("train", "--data", image_folder, "--out", out, option, value, *TINY), pattern)
    assert not out.exists()


def test_compare_refuses_a_nan_strength_before_pretraining(tmp_path):
    out = tmp_path / "c"
    one_error_line(run("compare", "--schedules", "none,noise-constant@nan", "--out", out, "--no-progress"),
                   r"schedule noise-constant@nan: the strength must be a number >= 0")
    assert not out.exists()


def test_config_checks_horizons_and_rates_directly():
    with pytest.raises(UserError, match="--noise-steps must be an integer >= 0"):
        TrainConfig(noise_steps=-5)
    with pytest.raises(UserError, match="--adv-weight must be a number >= 0, got nan"):
        TrainConfig(adv_weight=float("nan"))


# 6. An output that is the input.

def test_upscale_refuses_to_overwrite_its_own_input(tmp_path):
    image = tmp_path / "self.png"
    Image.new("RGB", (12, 10), (200, 30, 40)).save(image)
    before = image.read_bytes()
    one_error_line(run("upscale", image, "-o", image, "--force", "--model", "fast"),
                   r"self\.png: the output .*self\.png is the input itself; name another output")
    link = tmp_path / "link.png"
    link.symlink_to(image)
    one_error_line(run("upscale", image, "-o", link, "--force", "--model", "fast"),
                   r"the output .*link\.png is the input itself")
    assert image.read_bytes() == before and link.is_symlink()


# SIGTERM mid-write: the hidden temporary file goes with the process.

def test_sigterm_mid_write_leaves_no_temporary_file(tmp_path):
    import signal
    import subprocess
    import sys

    import numpy as np

    image = tmp_path / "in" / "big.png"
    image.parent.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "srgan_noise", "upscale", str(image), "-o", str(out),
                                "--model", "fast", "--no-progress"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and any(path.name.startswith(".") for path in out.iterdir()):
            break  # the output's temporary file is being written
        time.sleep(0.005)
    else:
        pytest.skip("the write finished before it could be interrupted")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


# Rough edges.

def test_train_progress_is_whole_lines_when_stderr_is_no_terminal(tmp_path, image_folder, one_thread):
    args = [a for a in TINY if a != "--no-progress"]
    result = run("train", "--data", image_folder, "--val", image_folder, "--out", tmp_path / "run",
                 "--pretrain-steps", 2, "--steps", 2, *args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["2/4", "4/4"]
    assert re.fullmatch(r"step 4/4  gan  mse [\d.]+  D\(real\) [\d.]+  D\(fake\) [\d.]+  loss_d [\d.]+  "
                        r"val [\d.]+ dB, high-band [\d.]+", lines[-1]), lines[-1]


def test_a_scale_that_is_a_string_says_it_must_be_an_integer():
    with pytest.raises(UserError, match=r"scale must be the integer 2, 4 or 8, got '4'"):
        preset("tiny", scale="4")


def test_export_checks_the_name_before_the_existing_file(tmp_path):
    weights = tmp_path / "g.safetensors"
    from srgan_noise.inference.weights import save_generator
    from srgan_noise.models.generator import build_generator

    save_generator(build_generator(preset("tiny")), weights)
    folder = tmp_path / "existing"
    folder.mkdir()
    one_error_line(run("export", weights, "-o", folder), r"-o .*existing: the output must end in \.onnx")
    one_error_line(run("export", weights, "-o", folder, "--force"), r"the output must end in \.onnx")


def test_file_and_folder_mix_ups_say_what_was_given(tmp_path, image_folder, one_thread):
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 2, *TINY).exit_code == 0
    other = tmp_path / "saved.pt"
    other.write_bytes((out / "checkpoint.pt").read_bytes())
    one_error_line(run("train", "--resume", other, "--steps", 4, "--no-progress"),
                   r"--resume .*saved\.pt: is a file; give the run folder \(it holds checkpoint\.pt\)")
    image = tmp_path / "a.png"
    Image.new("RGB", (12, 10)).save(image)
    one_error_line(run("upscale", image, "--weights", out),
                   rf"{re.escape(str(out))}: is a folder; give a weights file \(\.safetensors\), e\.g\. "
                   rf"{re.escape(str(out / 'generator.safetensors'))}")
    one_error_line(run("upscale", image, "--weights", out / "checkpoint.pt"),
                   r"checkpoint\.pt: is a torch\.save file \(a training checkpoint\?\), not a safetensors weights "
                   r"file; give a run's generator\.safetensors")


def test_sizes_print_in_the_unit_that_fits():
    from srgan_noise.base.memory import format_bytes

    assert [format_bytes(n) for n in (512, 2 * 2**20, 3 * 2**30 // 2, 2**41)] == [
        "512 B", "2.0 MiB", "1.5 GiB", "2.0 TiB"]
