import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.base.images import load_rgb
from srgan_noise.cli import app
from srgan_noise.evaluation.evaluate import (CSV_COLUMNS, EvalConfig, bicubic_down, bicubic_up, evaluate,
                                             evaluate_images, score)
from srgan_noise.evaluation.results import BICUBIC, MODEL
from srgan_noise.models.generator import Generator
import srgan_noise.inference.weights as weights_module
from srgan_noise.inference.weights import load_generator, save_generator

SET5 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "Set5"


@pytest.fixture(autouse=True)
def no_shipped_weights(tmp_path, monkeypatch):
    """Tests must not depend on which weights srgan_noise/inference/pretrained/ ships."""
    monkeypatch.setattr(weights_module, "WEIGHTS_FOLDER", tmp_path / "shipped")


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_generator(Generator(preset("tiny", scale=4)), path)
    return path


# smoke


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 not present")
def test_bicubic_set5_reproduces_reference():
    result = evaluate(EvalConfig(data=str(SET5), bicubic=True, device="cpu"))
    assert [row.image for row in result.rows] == ["baby.png", "bird.png", "butterfly.png", "head.png", "woman.png"]
    assert result.methods == [BICUBIC] and result.weights is None
    mean = result.mean[BICUBIC]
    assert mean["psnr"] == pytest.approx(28.43, abs=0.02)  # ../shared/data/README.md
    assert mean["psnr"] == pytest.approx(28.42, abs=0.02)  # Ledig et al. 2017, Table 2
    assert mean["ssim"] == pytest.approx(0.811, abs=0.002)
    woman = result.rows[-1]
    assert (woman.height, woman.width) == (344, 228)  # 344x228 is already a multiple of 4


def test_bicubic_is_pil_bicubic_after_mod_crop(tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (51, 45, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "odd.png")
    result = evaluate(EvalConfig(data=str(tmp_path), bicubic=True))
    (row,) = result.rows
    assert (row.height, row.width) == (48, 44)
    hr = Image.fromarray(array).crop((0, 0, 44, 48))
    up = hr.resize((11, 12), Image.BICUBIC).resize((44, 48), Image.BICUBIC)
    expected = score(torch.from_numpy(np.array(up)).permute(2, 0, 1).float() / 255,
                     torch.from_numpy(np.array(hr)).permute(2, 0, 1).float() / 255, scale=4)
    assert (row.psnr, row.ssim, row.hf_ratio) == pytest.approx(expected)
    assert 0 < row.hf_ratio < 1  # bicubic upscaling restores little of the band above the LR Nyquist
    down = bicubic_down(load_rgb(tmp_path / "odd.png")[:, :48, :44], 4)
    assert down.dtype == torch.uint8 and down.shape == (3, 12, 11)
    assert bicubic_up(down, 4).shape == (3, 48, 44)


def test_model_rows_score_the_generator_output(image_folder, weights):
    result = evaluate(EvalConfig(data=str(image_folder), weights=str(weights), bicubic=True, device="cpu"))
    assert result.methods == [MODEL, BICUBIC] and result.weights == str(weights)
    assert [row.method for row in result.rows] == [MODEL] * 4 + [BICUBIC] * 4
    generator = load_generator(weights)
    hr = load_rgb(image_folder / "img0.png")  # 48x40, already a multiple of 4
    lr = bicubic_down(hr, 4).float().div(255)
    with torch.inference_mode():
        sr = generator(lr[None])[0]
    assert (result.rows[0].psnr, result.rows[0].ssim, result.rows[0].hf_ratio) == pytest.approx(
        score(sr, hr.float() / 255, 4), abs=1e-5)
    for method in (MODEL, BICUBIC):
        rows = [row for row in result.rows if row.method == method]
        assert result.mean[method]["psnr"] == pytest.approx(np.mean([row.psnr for row in rows]))
        assert result.mean[method]["ssim"] == pytest.approx(np.mean([row.ssim for row in rows]))


def test_results_written_as_csv_and_json(image_folder, weights, tmp_path):
    out = tmp_path / "results"
    result = evaluate(EvalConfig(data=str(image_folder), weights=str(weights), bicubic=True, out=str(out)))
    with open(out / "results.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == CSV_COLUMNS
    assert [(row["method"], row["image"]) for row in table] == (
        [(MODEL, f"img{i}.png") for i in range(4)] + [(BICUBIC, f"img{i}.png") for i in range(4)]
        + [(MODEL, "mean"), (BICUBIC, "mean")])
    assert (table[0]["height"], table[0]["width"]) == ("48", "40")
    assert float(table[-1]["psnr"]) == pytest.approx(result.mean[BICUBIC]["psnr"], abs=1e-4)
    document = json.loads((out / "results.json").read_text())
    assert document["scale"] == 4 and document["weights"] == str(weights)
    assert len(document["rows"]) == 8 and set(document["rows"][0]) == set(CSV_COLUMNS)
    assert list(document["mean"]) == [MODEL, BICUBIC]
    for method, mean in result.mean.items():
        assert document["mean"][method] == pytest.approx(mean)
    assert sorted(p.name for p in out.iterdir()) == ["results.csv", "results.json"]  # no temporary files left


# exception


def test_missing_folder():
    with pytest.raises(UserError, match="no-such-folder: no such folder"):
        evaluate(EvalConfig(data="no-such-folder", bicubic=True))


def test_scale_mismatch(image_folder, weights):
    with pytest.raises(UserError, match=r"--scale 2 does not match .*tiny.safetensors, a x4 generator; use --scale 4"):
        evaluate(EvalConfig(data=str(image_folder), weights=str(weights), scale=2))


def test_weights_not_safetensors(image_folder, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weight": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match=r"bad.pt: is a torch.save file \(a training checkpoint\?\), not a safetensors"):
        evaluate(EvalConfig(data=str(image_folder), weights=str(bad)))


def test_no_weights_and_none_shipped(image_folder):
    with pytest.raises(UserError, match="no --weights given and no shipped gan x4 weights at .*use --bicubic alone"):
        evaluate(EvalConfig(data=str(image_folder)))


def test_unreadable_image_is_skipped_with_a_warning_as_train_and_upscale_do(image_folder, tmp_path):
    (image_folder / "broken.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="skipping .*broken.png: not an image Pillow can read; the means are over "
                                         "the other images"):
        result = evaluate(EvalConfig(data=str(image_folder), bicubic=True, out=str(tmp_path / "out")))
    assert result.skipped == ("broken.png",) and "broken.png" not in {row.image for row in result.rows}
    assert len(result.rows) == 4
    assert json.loads((tmp_path / "out" / "results.json").read_text())["skipped"] == ["broken.png"]
    for path in image_folder.iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(UserError, match="none of its 5 image files could be read"), pytest.warns(UserWarning):
        evaluate(EvalConfig(data=str(image_folder), bicubic=True))


def test_image_too_small(tmp_path):
    Image.new("RGB", (40, 17)).save(tmp_path / "thin.png")
    with pytest.raises(UserError, match=r"thin.png: 40x16 after cropping to a multiple of 4 is too small"):
        evaluate(EvalConfig(data=str(tmp_path), bicubic=True))


def test_bad_options():
    with pytest.raises(UserError, match="--device must be one of auto, cpu, cuda, got 'gpu'"):
        EvalConfig(data=".", device="gpu")
    with pytest.raises(UserError, match="--scale must be at least 2, got 1"):
        EvalConfig(data=".", scale=1)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_images([], 4)


# command


def _run(*args):
    result = CliRunner().invoke(app, ["eval", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_command_prints_table_and_writes_files(image_folder, weights, tmp_path):
    result = _run("--data", image_folder, "--weights", weights, "--bicubic", "--out", tmp_path / "out",
                  "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    assert "img3.png" in result.stdout and "mean of 4" in result.stdout and "tiny" in result.stdout
    assert result.stderr.splitlines() == [f"wrote {tmp_path / 'out' / 'results.csv'}, "
                                          f"{tmp_path / 'out' / 'results.json'}"]


@pytest.mark.parametrize("degradation", ["cv-cubic", "jpeg75"])
def test_degradation_makes_the_lr_input_of_model_and_bicubic(image_folder, weights, degradation):
    """Both methods see the family's LR image: bicubic is PIL bicubic up from it."""
    from srgan_noise.training.degradations import FAMILIES

    result = evaluate(EvalConfig(data=str(image_folder), weights=str(weights), bicubic=True,
                                 degradation=degradation))
    assert result.degradation == degradation
    hr = load_rgb(image_folder / "img0.png")[:, :48, :40]
    lr = FAMILIES[degradation](hr, 4)
    expected = score(bicubic_up(lr, 4).float() / 255, hr.float() / 255, 4)
    row = next(row for row in result.rows if row.method == BICUBIC and row.image == "img0.png")
    assert (row.psnr, row.ssim, row.hf_ratio) == pytest.approx(expected)
    protocol = evaluate(EvalConfig(data=str(image_folder), weights=str(weights), bicubic=True))
    assert protocol.degradation == "pil-bicubic" and protocol.mean[BICUBIC]["psnr"] != result.mean[BICUBIC]["psnr"]


def test_command_degradation_in_table_and_json(image_folder, tmp_path):
    result = _run("--data", image_folder, "--bicubic", "--degradation", "cv-linear", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr
    assert "LR by cv-linear" in result.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text())["degradation"] == "cv-linear"


def test_command_bicubic_only_says_so(image_folder):
    result = _run("--data", image_folder, "--bicubic")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == ["note: no --weights and no shipped weights: bicubic baseline only"]
    assert "bicubic" in result.stdout


@pytest.mark.parametrize("case, message", [
    ("missing", "error: .*missing: no such folder"),
    ("scale", "error: --scale 8 does not match .*, a x4 generator; use --scale 4"),
    ("not-safetensors", "error: .*bad.safetensors: not a safetensors file"),
    ("no-weights", "error: no --weights given and no shipped gan x4 weights"),
    ("degradation", "error: --degradation must be one of pil-bicubic, pil-lanczos, .*, got 'blur'"),
])
def test_command_errors_are_one_line_and_exit_2(case, message, image_folder, weights, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_text("not weights")
    args = {"missing": ["--data", tmp_path / "missing", "--bicubic"],
            "scale": ["--data", image_folder, "--weights", weights, "--scale", 8],
            "not-safetensors": ["--data", image_folder, "--weights", bad],
            "no-weights": ["--data", image_folder],
            "degradation": ["--data", image_folder, "--bicubic", "--degradation", "blur"]}[case]
    result = _run(*args)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and re.match(message, lines[0]), result.stderr
    assert result.stdout == ""


def test_critic_test_per_method(tmp_path):
    """--critic: each method's held-out accuracy is the mean of --critic-seeds
    realism.critic_accuracy tests of its 8-bit outputs against the cropped HR images."""
    from srgan_noise.evaluation.realism import critic_accuracy

    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (100, 92, 3), dtype=np.uint8)).save(tmp_path / f"noise{i}.png")
    result = evaluate(EvalConfig(data=str(tmp_path), bicubic=True, critic_steps=60, critic_seeds=2))
    hr = [load_rgb(tmp_path / f"noise{i}.png")[:, :100, :92] for i in range(2)]
    up = [bicubic_up(bicubic_down(image, 4), 4).float() / 255 for image in hr]
    tests = [critic_accuracy(up, [image.float() / 255 for image in hr], steps=60, border=4, seed=seed).accuracy
             for seed in (0, 1)]
    assert result.mean[BICUBIC]["critic"] == pytest.approx(sum(tests) / 2)  # the mean of two tests
    assert result.mean[BICUBIC]["critic_se"] == pytest.approx(abs(tests[0] - tests[1]) / 2)  # sd / sqrt 2
    assert result.mean[BICUBIC]["critic"] > 0.75  # bicubic of white noise is told apart easily
