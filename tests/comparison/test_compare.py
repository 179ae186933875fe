import csv
import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.cli import app
from srgan_noise.comparison.compare import compare
from srgan_noise.comparison.compare_config import CompareConfig
from srgan_noise.comparison.schedule_table import PLAIN, SCHEDULES, run_name
from srgan_noise.comparison.sr_runs import run_or_reuse, schedule_config
from srgan_noise.comparison.tables import d_figures, sr_figures, summarise
from srgan_noise.comparison.toy_runs import toy_schedule_config
from srgan_noise.training.checkpoint import load_checkpoint, save_checkpoint
from srgan_noise.training.monitor import read_metrics
from srgan_noise.training.toy import ToyConfig
from srgan_noise.training.train_config import TrainConfig

TINY = dict(preset="tiny", pretrain_steps=2, steps=4, batch_size=2, patch_size=32, log_every=2, device="cpu",
            progress=False, critic_steps=0)
SR_HEADER = ["schedule", "seeds", "ssim_final_mean", "ssim_final_std", "ssim_tail_mean", "ssim_tail_std",
             "mse_final_mean", "mse_final_std", "mse_tail_mean", "mse_tail_std", "psnr_final_mean", "psnr_final_std",
             "psnr_tail_mean", "psnr_tail_std", "hf_ratio_final_mean", "hf_ratio_final_std", "hf_ratio_tail_mean",
             "hf_ratio_tail_std", "critic_mean", "critic_std", "d_real_mean", "d_real_std", "d_fake_mean", "d_fake_std",
             "d_fake_next_mean", "d_fake_next_std", "d_wins_mean", "d_wins_std", "g_helped_mean", "g_helped_std",
             "seconds_per_step_mean", "seconds_per_step_std"]


def read_csv(path):
    with path.open() as handle:
        return list(csv.reader(handle))


def window(step, d_real, d_fake, d_fake_next, **values):
    return {"step": step, "phase": "gan", "d_real": d_real, "d_fake": d_fake, "d_fake_next": d_fake_next,
            "seconds_per_step": 0.5, **values}


# smoke: schedules build valid configs in both modes


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_builds_sr_and_toy_configs(name):
    sr = schedule_config(TrainConfig(model=preset("tiny")), name)
    toy = toy_schedule_config(ToyConfig(), name)
    for config in (sr, toy):
        assert (config.sigma(0) > 0) == ("noise" in name)
        assert (config.gamma(0) > 0) == (name.startswith("roth") or name in ("r1", "r2"))
        assert config.label_smoothing == (name == "label-smoothing")
    assert sr.model.d_spectral_norm == toy.d_spectral_norm == (name == "spectral-norm")
    assert sr.model.d_minibatch_kernels == toy.d_minibatch_kernels
    assert (sr.model.d_minibatch_kernels > 0) == (name == "minibatch-discrimination")
    assert sr.model.d_norm == {"virtual-batch-norm": "virtual"}.get(name, "none")
    assert toy.d_norm == ("virtual" if name == "virtual-batch-norm" else "none")  # the toy MLP's default: none
    assert sr.model.d_autoencoder == toy.d_autoencoder == (sr.loss == "ebgan") == name.startswith("ebgan")
    assert (sr.pt_weight > 0) == (toy.pt_weight > 0) == (name == "ebgan-pt")
    assert SCHEDULES[name].get("model", {}) == {
        "wgan-gp": {"d_norm": "none"}, "spectral-norm": {"d_spectral_norm": True},
        "minibatch-discrimination": {"d_minibatch_kernels": 32}, "virtual-batch-norm": {"d_norm": "virtual"},
        "ebgan": {"d_autoencoder": True}, "ebgan-pt": {"d_autoencoder": True}}.get(name, {})  # unmutated


def test_architecture_schedules_start_from_the_shared_pretraining(tmp_path, image_folder):
    """D's architecture differs from pre-training's: D starts fresh, G from the shared checkpoint."""
    config = CompareConfig(schedules=("spectral-norm", "wgan-gp", "minibatch-discrimination", "virtual-batch-norm",
                                      "ebgan-pt"), seeds=1,
                           out=str(tmp_path / "compare"), data=(str(image_folder),), val=str(image_folder), **TINY)
    markdown, _, _ = compare(config)
    text = markdown.read_text()
    for name in config.schedules:
        assert f"| {name} | 1 |" in text
        records = read_metrics(tmp_path / "compare" / f"{name}-seed0")
        assert records[0] == read_metrics(tmp_path / "compare" / "pretrain-seed0")[0]
        assert all(math.isfinite(r["loss_d"]) for r in records if r["phase"] == "gan")


def test_ebgan_strengths_are_the_margin_and_the_pulling_away_weight():
    sr = schedule_config(TrainConfig(model=preset("tiny")), "ebgan@0.05")
    assert (sr.loss, sr.ebgan_margin, sr.pt_weight, sr.model.d_autoencoder) == ("ebgan", 0.05, 0.0, True)
    toy = toy_schedule_config(ToyConfig(mixture="grid"), "ebgan-pt@0.3")
    assert (toy.loss, toy.margin, toy.pt_weight, toy.d_autoencoder) == ("ebgan", 0.25, 0.3, True)


def test_schedule_strengths_per_mode():
    sr = schedule_config(TrainConfig(model=preset("tiny"), steps=100), "noise-linear")
    assert sr.sigma(0) == pytest.approx(0.1) and sr.sigma(50) == pytest.approx(0.05)
    toy = dataclasses.replace(ToyConfig(mixture="grid", steps=100), **{**PLAIN, **SCHEDULES["roth-annealed"]})
    assert toy.gamma(0) == pytest.approx(0.25) and toy.gamma(100) == pytest.approx(0.0025)


def test_a_new_schedule_is_one_entry(monkeypatch, tmp_path):
    monkeypatch.setitem(SCHEDULES, "wgan-gp-r1", dict(loss="wgan-gp", reg="r1", gamma_schedule="constant"))
    assert schedule_config(TrainConfig(model=preset("tiny")), "wgan-gp-r1").loss == "wgan-gp"
    config = CompareConfig(schedules=("wgan-gp-r1",), seeds=1, out=str(tmp_path), toy="grid", steps=5)
    markdown, _, _ = compare(config)
    assert "| wgan-gp-r1 | 1 |" in markdown.read_text()


# summaries on constructed records


def test_d_figures_fractions():
    gan = [window(1, 0.99, 0.01, 0.02), window(2, 0.99, 0.2, 0.1), window(3, 0.6, 0.01, 0.3), window(4, 0.5, 0.4, 0.4)]
    figures = d_figures(gan)
    assert figures["d_wins"] == 0.25  # only window 1 has D(real) > 0.95 and D(fake) < 0.05
    assert figures["g_helped"] == 0.5  # windows 1 and 3 have D_t(G_t+1) > D(fake)
    assert figures["d_real"] == pytest.approx(0.77)
    assert figures["seconds_per_step"] == 0.5


def test_sr_figures_final_and_tail():
    pretrain = {"step": 10, "phase": "pretrain", "val_ssim": 0.1, "val_mse": 9.0, "val_psnr": 20.0}
    gan = [window(10 + 2 * i, 0.5, 0.5, 0.5, val_ssim=0.1 * i, val_mse=10.0 - i, val_psnr=20.0 + i,
                  val_hf_ratio=0.1 * i) for i in range(1, 9)]
    critic = {"phase": "critic", "step": 26, "critic": 0.7, "critic_se": 0.02}
    figures = sr_figures([pretrain, *gan, critic])
    assert figures["hf_ratio_final"] == pytest.approx(0.8) and figures["hf_ratio_tail"] == pytest.approx(0.75)
    assert figures["critic"] == 0.7
    assert math.isnan(sr_figures([pretrain, *gan])["critic"])
    assert figures["ssim_final"] == pytest.approx(0.8)
    assert figures["ssim_tail"] == pytest.approx(0.75)  # the last quarter: windows 7 and 8
    assert figures["mse_tail"] == pytest.approx(2.5)
    assert figures["psnr_final"] == 28.0


def test_summarise_mean_and_std():
    summary = summarise([1.0, 3.0], lambda value: {"x": value})
    assert summary["x"] == (2.0, pytest.approx(math.sqrt(2)))
    mean, std = summarise([1.0], lambda value: {"x": value})["x"]
    assert mean == 1.0 and math.isnan(std)


# the SR compare, end to end


def test_tiny_sr_compare_writes_table_and_png_and_reuses_runs(tmp_path, image_folder):
    config = CompareConfig(schedules=("none", "roth-annealed"), seeds=1, out=str(tmp_path / "compare"),
                           data=(str(image_folder),), val=str(image_folder), **{**TINY, "critic_steps": 5})
    tmp_path = tmp_path / "compare"
    markdown, table, figure = compare(config)
    rows = read_csv(table)
    assert rows[0] == SR_HEADER
    assert [row[0] for row in rows[1:]] == ["mse-pretrain", "none", "roth-annealed"]
    assert "| schedule | seeds | SSIM final | SSIM tail |" in markdown.read_text()
    assert figure.suffix == ".png" and figure.stat().st_size > 0
    # Every schedule starts from the same pre-trained generator: identical records up to the GAN phase.
    none, roth = read_metrics(tmp_path / "none-seed0"), read_metrics(tmp_path / "roth-annealed-seed0")
    assert none[0] == roth[0] == read_metrics(tmp_path / "pretrain-seed0")[0]
    assert [r["step"] for r in none] == [2, 4, 6] and roth[-1]["gamma"] > 0 and none[-1]["gamma"] == 0
    critic = json.loads((tmp_path / "none-seed0" / "critic.json").read_text())
    assert critic["step"] == 6 and 0 <= critic["critic"] <= 1
    assert float(rows[2][SR_HEADER.index("critic_mean")]) == pytest.approx(critic["critic"], abs=1e-6)
    # A second call with one more schedule reuses the finished runs.
    finished = (tmp_path / "none-seed0" / "metrics.jsonl").stat().st_mtime_ns
    tested = (tmp_path / "none-seed0" / "critic.json").stat().st_mtime_ns
    compare(dataclasses.replace(config, schedules=("none", "roth-annealed", "label-smoothing")))
    assert (tmp_path / "none-seed0" / "metrics.jsonl").stat().st_mtime_ns == finished
    assert (tmp_path / "none-seed0" / "critic.json").stat().st_mtime_ns == tested
    assert [row[0] for row in read_csv(table)[1:]] == ["mse-pretrain", "none", "roth-annealed", "label-smoothing"]


def test_toy_compare_writes_table_and_png(tmp_path):
    config = CompareConfig(schedules=("none", "noise-linear"), seeds=2, out=str(tmp_path), toy="ring", steps=20)
    markdown, table, figure = compare(config)
    rows = read_csv(table)
    assert rows[0][:8] == ["schedule", "seeds", "modes_mean", "modes_std", "high_quality_mean", "high_quality_std",
                           "reverse_kl_mean", "reverse_kl_std"]
    assert [row[0] for row in rows[1:]] == ["plain GAN, published (PacGAN)", "none", "noise-linear"]
    assert rows[1][2] == "6.3"
    assert "sigma0 0.191" in markdown.read_text()
    assert figure.name == "toy-ring.png" and figure.stat().st_size > 0
    assert (tmp_path / "toy-ring" / "none-seed1.json").is_file()


# exception


def test_config_rejects_unknown_schedule_and_data_without_val():
    with pytest.raises(UserError, match="unknown schedule wgan-lp; choose from none, noise-linear"):
        CompareConfig(schedules=("none", "wgan-lp"))
    with pytest.raises(UserError, match="--data needs --val"):
        CompareConfig(data=("images",))
    with pytest.raises(UserError, match="--toy must be one of ring, grid"):
        CompareConfig(toy="spiral")
    with pytest.raises(UserError, match="--pretrain-steps must be at least 1"):
        CompareConfig(pretrain_steps=0)


def test_run_with_other_settings_is_not_reused(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), model=preset("tiny"), steps=0, pretrain_steps=2, batch_size=2,
                         patch_size=32, log_every=2, checkpoint_every=2, progress=False)
    run_or_reuse(config)
    with pytest.raises(UserError, match=r"holds a run with other settings \(lr\); use another --out"):
        run_or_reuse(dataclasses.replace(config, lr=1e-3))
    # A field added to TrainConfig after the run was written counts as its default.
    path = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(path)
    del state["config"]["adv_weight"]
    save_checkpoint(state, path)
    finished = (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns
    run_or_reuse(config)
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_mtime_ns == finished


def test_cli_rejects_sr_options_with_toy(tmp_path):
    result = CliRunner().invoke(app, ["compare", "--toy", "ring", "--preset", "small", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--preset has no effect with --toy" in result.output


@pytest.mark.parametrize("spec, fields", [
    ("noise-linear@0.03", dict(noise="linear", sigma0=0.03)),
    ("roth-constant@0.1/4", dict(reg="roth", gamma_schedule="constant", gamma0=0.1, reg_every=4)),
    ("r1@1", dict(reg="r1", gamma0=1.0)),
    ("historical-averaging@0.01", dict(historical_averaging=0.01)),
])
def test_schedule_strength_syntax(spec, fields):
    config = schedule_config(TrainConfig(model=preset("tiny"), steps=100), spec)
    for name, value in fields.items():
        assert getattr(config, name) == value, name
    assert run_name(spec) == spec.replace("/", "-every")


@pytest.mark.parametrize("spec, message", [
    ("label-smoothing@0.9", "label-smoothing takes no strength"),
    ("noise-linear@0.1/2", "/K .* is for roth-annealed"),
    ("roth-constant@big", "expected roth-constant@NUMBER"),
    ("roth-constant@1/0", "K >= 1"),
    ("noise-linear@-1", "strength must be a number >= 0"),
    ("roth-sideways@1", "unknown schedule roth-sideways"),
])
def test_schedule_strength_errors(spec, message):
    with pytest.raises(UserError, match=message):
        CompareConfig(schedules=(spec,))


def test_sweep_runs_in_the_chosen_regime(tmp_path, image_folder):
    """Strength-named schedules run as separate, reusable runs in the projected, adversarial-only regime."""
    config = CompareConfig(schedules=("noise-constant@0.05", "roth-constant@0.5/2"), seeds=1,
                           out=str(tmp_path / "sweep"), data=(str(image_folder),), val=str(image_folder),
                           projection="affine", content="none", adv_weight=1.0, **TINY)
    markdown, _, _ = compare(config)
    assert "| noise-constant@0.05 | 1 |" in markdown.read_text() and "affine projection" in markdown.read_text()
    saved = TrainConfig.from_dict(load_checkpoint(tmp_path / "sweep" / "roth-constant@0.5-every2-seed0")["config"])
    assert (saved.gamma0, saved.reg_every, saved.content, saved.adv_weight) == (0.5, 2, "none", 1.0)
    assert saved.model.projection == "affine"
    noise = read_metrics(tmp_path / "sweep" / "noise-constant@0.05-seed0")
    assert noise[-1]["sigma"] == 0.05 and noise[-1]["loss_content"] == 0


def test_full_disk_during_compare_is_one_line(tmp_path, monkeypatch):
    """An OSError no layer below turned into a UserError (here: the table write) still
    ends the command in one line, not a traceback."""
    import errno

    import srgan_noise.comparison.toy_runs as toy_runs_module

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(toy_runs_module, "write_text_atomic", full)
    result = CliRunner().invoke(app, ["compare", "--toy", "ring", "--schedules", "none", "--seeds", "1", "--steps",
                                      "3", "--out", str(tmp_path / "c"), "--no-progress"])
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output
    assert lines[0] == f"error: {tmp_path / 'c' / 'toy-ring' / 'none-seed0.json'}: No space left on device"


def test_no_train_tabulates_the_runs_as_far_as_they_got(tmp_path, image_folder):
    """--no-train: a sweep under way is tabulated and plotted, unfinished runs labelled
    with the steps they reached, missing ones left out; nothing is trained or changed."""
    common = dict(seeds=2, out=str(tmp_path), data=(str(image_folder),), val=str(image_folder), **TINY)
    with pytest.raises(UserError, match="no runs with these settings yet"):
        compare(CompareConfig(schedules=("none",), train=False, **common))
    compare(CompareConfig(schedules=("none",), **{**common, "seeds": 1}))  # seed 0 only
    metrics = tmp_path / "none-seed0" / "metrics.jsonl"  # as if stopped after its first GAN window
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:-1]))
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()
              and path.suffix in (".pt", ".jsonl")}
    markdown, table, figure = compare(CompareConfig(schedules=("none", "roth-annealed"), train=False, **common))
    rows = read_csv(table)
    assert [(row[0], row[1]) for row in rows[1:]] == [("mse-pretrain", "1"), ("none (2 of 4 GAN steps)", "1")]
    assert figure.stat().st_size > 0
    assert not (tmp_path / "pretrain-seed1").exists() and not (tmp_path / "roth-annealed-seed0").exists()
    assert {path: path.stat().st_mtime_ns for path in before} == before
    with pytest.raises(UserError, match="--no-train is for the SR task"):
        CompareConfig(toy="ring", train=False)


def test_init_starts_every_schedule_from_the_weights_without_pretraining(tmp_path, image_folder):
    """--init with no pre-training: each schedule's GAN phase starts from the weights file (its
    architecture too), whose own figures (recorded by train at step 0) and critic make the first row."""
    from srgan_noise.training.train import train

    source = train(TrainConfig(out=str(tmp_path / "source"), data=(str(image_folder),), val=str(image_folder),
                               model=preset("tiny", batch_norm=False), steps=0, pretrain_steps=2, batch_size=2,
                               patch_size=32,
                               log_every=2, checkpoint_every=2, device="cpu", progress=False))
    weights = str(source / "generator.safetensors")
    config = CompareConfig(schedules=("none", "noise-constant@0.05"), seeds=1, out=str(tmp_path / "c"),
                           data=(str(image_folder),), val=str(image_folder), init=weights, d_norm="none",
                           **{**TINY, "pretrain_steps": 0, "critic_steps": 5})
    _, table, _ = compare(config)
    rows = read_csv(table)
    assert [row[0] for row in rows[1:]] == ["init", "none", "noise-constant@0.05"]
    assert not list((tmp_path / "c").glob("pretrain-seed*"))
    # The generator's architecture is the file's (no batch norm, unlike the tiny preset); D's the regime's.
    saved = TrainConfig.from_dict(load_checkpoint(tmp_path / "c" / "none-seed0")["config"])
    assert (saved.model.batch_norm, saved.model.d_norm, saved.init) == (False, "none", weights)
    none = read_metrics(tmp_path / "c" / "none-seed0")
    noise = read_metrics(tmp_path / "c" / "noise-constant@0.05-seed0")
    assert [r["step"] for r in none] == [0, 2, 4] and none[0]["phase"] == "init" and none[0] == noise[0]
    source_end = read_metrics(source)[-1]
    assert none[0]["val_psnr"] == pytest.approx(source_end["val_psnr"], abs=1e-9)  # the file's own figures
    column = SR_HEADER.index
    assert float(rows[1][column("psnr_final_mean")]) == pytest.approx(source_end["val_psnr"], rel=1e-5)
    critic = json.loads((tmp_path / "c" / "init-critic.json").read_text())
    assert float(rows[1][column("critic_mean")]) == pytest.approx(critic["critic"], abs=1e-6)
    cached = (tmp_path / "c" / "init-critic.json").stat().st_mtime_ns
    compare(config)  # reused: neither retrained nor re-tested
    assert (tmp_path / "c" / "init-critic.json").stat().st_mtime_ns == cached
    with pytest.raises(UserError, match="or 0 with --init"):
        CompareConfig(pretrain_steps=0)
    with pytest.raises(UserError, match="--upsample has no effect with --init"):
        CompareConfig(init=weights, pretrain_steps=0, upsample="nearest")


def test_regime_upsample_and_d_norm_reach_every_run(tmp_path, image_folder):
    """--upsample pixel-shuffle --d-norm batch: the settings of the tables made before they changed."""
    config = CompareConfig(schedules=("none",), seeds=1, out=str(tmp_path), data=(str(image_folder),),
                           val=str(image_folder), upsample="pixel-shuffle", d_norm="batch", **TINY)
    compare(config)
    for run in ("pretrain-seed0", "none-seed0"):
        model = TrainConfig.from_dict(load_checkpoint(tmp_path / run)["config"]).model
        assert (model.upsample, model.d_norm) == ("pixel-shuffle", "batch")


def test_no_train_reads_cached_critics_and_runs_none(tmp_path, image_folder):
    """--no-train takes a run's critic accuracy from its critic.json and runs no critic test
    (they cost minutes): without the file the cell is blank and no file appears."""
    common = dict(schedules=("none",), seeds=1, out=str(tmp_path), data=(str(image_folder),), val=str(image_folder),
                  **{**TINY, "critic_steps": 5, "critic_seeds": 1})
    compare(CompareConfig(**common))
    cache = tmp_path / "none-seed0" / "critic.json"
    rows = read_csv(compare(CompareConfig(**{**common, "train": False}))[1])
    column = rows[0].index("critic_mean")
    assert rows[2][column] != ""  # the cached accuracy
    cache.unlink()
    rows = read_csv(compare(CompareConfig(**{**common, "train": False}))[1])
    assert rows[2][column] == "" and not cache.exists()
