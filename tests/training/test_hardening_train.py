"""Issue 12, hardening of training and weights files: a full disk, a second
process, bad options and crafted files each give one line naming the file,
and never a torn metrics log, a lost checkpoint or a leftover temporary file."""

import errno
import json
import os

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from srgan_noise.base.atomic import remove_leftovers
from srgan_noise.base.config import ModelConfig, preset
from srgan_noise.base.errors import UserError
from srgan_noise.base.lock import locked_run
from srgan_noise.inference.weights import load_generator, save_generator
from srgan_noise.models.generator import Generator
from srgan_noise.training.checkpoint import load_checkpoint, save_checkpoint
from srgan_noise.training.monitor import MetricsLog, read_metrics
from srgan_noise.training.train import train
from srgan_noise.training.train_config import TrainConfig
from tests.test_cli import TINY as CLI_TINY, one_error_line, run

TINY = dict(model=preset("tiny"), batch_size=2, patch_size=16, log_every=2, checkpoint_every=2, progress=False)
FULL = OSError(errno.ENOSPC, "No space left on device")


def config(tmp_path, name="run", **overrides):
    return TrainConfig(out=str(tmp_path / name), **{**TINY, **overrides})


def disk_full(*args, **kwargs):
    raise FULL


def steps(run_folder):
    return [json.loads(line)["step"] for line in (run_folder / "metrics.jsonl").open()]


# 1. A full disk at every write.


def test_checkpoint_disk_full_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(UserError, match=r"checkpoint.pt: cannot write \(No space left on device\); "
                                        r"the previous checkpoint is kept$"):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_torch_save_runtime_error_on_a_full_disk(tmp_path, monkeypatch):
    """torch's own writer says "unexpected pos" when the disk fills."""
    def torn(state, file):
        open(file, "wb").write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", torn)
    monkeypatch.setattr("srgan_noise.base.atomic._disk_full", lambda folder: True)
    with pytest.raises(UserError, match=r"checkpoint.pt: cannot write \(No space left on device\)$"):
        save_checkpoint({"step": 2}, tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []


def test_weights_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "g.safetensors"
    save_generator(Generator(preset("tiny")), path)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                              "message: \"No space left on device\" })")

    monkeypatch.setattr("srgan_noise.inference.weights.save_file", full)
    with pytest.raises(UserError, match=r"g.safetensors: cannot write \(No space left on device\); "
                                        r"the previous weights are kept"):
        save_generator(Generator(preset("tiny")), path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]


def test_metrics_write_failure_leaves_no_torn_line(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write({"step": 2, "loss": 1.0})
    before = (tmp_path / "metrics.jsonl").read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, data[: len(data) // 2])
        raise FULL

    monkeypatch.setattr(os, "write", half_then_full)
    try:
        with pytest.raises(UserError, match=r"metrics.jsonl: cannot write \(No space left on device\); "
                                            r"the earlier records are kept"):
            log.write({"step": 4, "loss": 0.5})
    finally:
        monkeypatch.undo()
    assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_training_on_a_full_disk_stops_in_one_line_and_resumes(tmp_path, image_folder, monkeypatch):
    out = tmp_path / "run"
    assert run("train", "--data", image_folder, "--out", out, "--pretrain-steps", 2, "--steps", 0,
               *CLI_TINY).exit_code == 0
    monkeypatch.setattr(torch, "save", disk_full)
    one_error_line(run("train", "--resume", out, "--steps", 2, "--no-progress"),
                   rf"^error: {out}/checkpoint.pt: cannot write \(No space left on device\); "
                   r"the previous checkpoint is kept$")
    monkeypatch.undo()
    assert load_checkpoint(out)["step"] == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert run("train", "--resume", out, "--steps", 2, "--no-progress").exit_code == 0
    assert steps(out) == [2, 4]


def test_plot_disk_full(tmp_path, monkeypatch):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 2, "phase": "pretrain", "loss_content": 0.1}) + "\n")
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", disk_full)
    one_error_line(run("plot", tmp_path), r"monitor.png: cannot write \(No space left on device\)$")
    assert list(tmp_path.iterdir()) == [tmp_path / "metrics.jsonl"]


def test_torn_last_line_is_skipped_with_a_warning_and_dropped_on_resume(tmp_path, image_folder):
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=0)
    out = train(cfg)
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 4, "phase": "pre')
    with pytest.warns(UserWarning, match=r"metrics.jsonl: skipped its torn last line 2"):
        assert [r["step"] for r in read_metrics(out)] == [2]
    result = run("plot", out)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "torn last line" in result.stderr
    with pytest.warns(UserWarning, match="torn last line"):
        train(TrainConfig.from_dict({**cfg.to_dict(), "steps": 2}), resume=True)
    assert steps(out) == [2, 4]


def test_torn_line_before_the_last_is_an_error(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 2}\n{"st\n{"step": 4}\n')
    with pytest.raises(UserError, match=r"metrics.jsonl: line 2 is not a metrics record"):
        read_metrics(tmp_path)


# 2. One training process per run folder.


def test_a_second_lock_on_a_run_is_refused_until_released(tmp_path):
    with locked_run(tmp_path):
        with pytest.raises(UserError, match=rf"^{tmp_path}: in use by another srgan train "
                                            rf"\(lock {tmp_path}/.lock held\)$"):
            with locked_run(tmp_path):
                pass
    with locked_run(tmp_path):  # released
        pass


def test_train_refuses_a_run_in_use(tmp_path, image_folder):
    cfg = config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=0)
    out = train(cfg)
    with locked_run(out):
        with pytest.raises(UserError, match="in use by another srgan train"):
            train(TrainConfig.from_dict({**cfg.to_dict(), "steps": 2}), resume=True)
        with pytest.raises(UserError, match="in use by another srgan train"):
            train(cfg)
    assert steps(out) == [2]
    train(TrainConfig.from_dict({**cfg.to_dict(), "steps": 2}), resume=True)  # the lock went with its holder
    assert steps(out) == [2, 4]


def test_a_second_process_is_refused(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from srgan_noise.base.lock import locked_run\n"
            "try:\n    with locked_run(Path(sys.argv[1])): pass\nexcept Exception as e: print(e); sys.exit(2)")
    with locked_run(tmp_path):
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert other.returncode == 2 and "in use by another srgan train" in other.stdout
    assert subprocess.run([sys.executable, "-c", code, str(tmp_path)]).returncode == 0


# 3. Bad options and crafted files.


@pytest.mark.parametrize("make_args, pattern", [
    (lambda d, t: ["--out", t / "file.txt"], r"file.txt: is a file, not a run folder"),
    (lambda d, t: ["--out", t / "file.txt" / "run"], r"cannot create the run folder \(.*file.txt is a file\)"),
    (lambda d, t: ["--out", t / "run", "--lr", "-1"], r"--lr must be a number > 0, got -1"),
    (lambda d, t: ["--out", t / "run", "--pretrain-lr", "-0.1"], r"--pretrain-lr must be a number > 0"),
    (lambda d, t: ["--out", t / "run", "--lr", "nan"], r"--lr must be a number > 0, got nan"),
    (lambda d, t: ["--out", t / "run", "--minibatch-discrimination", "-1"],
     r"--minibatch-discrimination must be >= 0"),
])
def test_train_bad_options(tmp_path, image_folder, make_args, pattern):
    (tmp_path / "file.txt").write_text("not a folder")
    result = run("train", "--data", image_folder, "--pretrain-steps", 1, "--steps", 0, "--log-every", 1,
                 "--checkpoint-every", 1, "--preset", "tiny", "--patch-size", "16", "--no-progress",
                 *make_args(image_folder, tmp_path))
    one_error_line(result, pattern)
    assert (tmp_path / "file.txt").read_text() == "not a folder" and not (tmp_path / "run").exists()


def test_train_unwritable_out(tmp_path, image_folder, monkeypatch):
    real_access = os.access  # as root, chmod cannot make a folder unwritable
    monkeypatch.setattr(os, "access", lambda path, mode: path != tmp_path and real_access(path, mode))
    one_error_line(run("train", "--data", image_folder, "--out", tmp_path / "run", "--pretrain-steps", 1,
                       "--steps", 0, *CLI_TINY), r"run: cannot write there \(.* is not writable\)")


@pytest.mark.parametrize("field, value, message", [
    ("channels", "8", r"channels must be an integer from 1 to 1024, got '8'"),
    ("channels", 10 ** 9, r"channels must be an integer from 1 to 1024, got 1000000000"),
    ("blocks", 2.0, r"blocks must be an integer from 0 to 256, got 2.0"),
    ("blocks", -1, r"blocks must be an integer from 0 to 256"),
    ("d_dense", 10 ** 7, r"d_dense must be an integer from 1 to 65536"),
    ("d_minibatch_kernels", -1, r"d_minibatch_kernels must be an integer from 0 to 1024"),
    ("batch_norm", "yes", r"batch_norm must be true or false, got 'yes'"),
    ("image_skip", 1, r"image_skip must be true or false"),
    ("scale", 4.0, r"scale must be the integer 2, 4 or 8"),
])
def test_crafted_weights_metadata_refused_in_one_line(tmp_path, field, value, message):
    generator = Generator(preset("tiny"))
    path = tmp_path / "crafted.safetensors"
    crafted = {**generator.config.to_dict(), field: value}
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(path),
              metadata={"format": "srgan_noise.generator", "config": json.dumps(crafted)})
    with pytest.raises(UserError, match=rf"^{path}: {message}"):
        load_generator(path)
    with pytest.raises(UserError, match=message):
        ModelConfig.from_dict(crafted)


def test_metadata_that_is_not_an_object(tmp_path):
    path = tmp_path / "crafted.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"config": "[1, 2]"})
    with pytest.raises(UserError, match=rf"^{path}: the architecture must be a JSON object, got list"):
        load_generator(path)


def test_weights_of_another_size_are_refused_before_building_the_model(tmp_path):
    """The file, not its metadata, bounds the memory: a large architecture over small tensors is refused."""
    generator = Generator(preset("tiny"))
    path = tmp_path / "big.safetensors"
    big = {**generator.config.to_dict(), "channels": 1024, "blocks": 256}
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(path),
              metadata={"config": json.dumps(big)})
    with pytest.raises(UserError, match=r"weights do not match the architecture in its metadata \(missing "):
        load_generator(path)


def test_crafted_checkpoint_config_refused_in_one_line(tmp_path, image_folder):
    out = train(config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=0))
    state = load_checkpoint(out)
    state["config"]["model"]["blocks"] = 10 ** 6
    save_checkpoint(state, out / "checkpoint.pt")
    with pytest.raises(UserError, match=rf"^{out}/checkpoint.pt: blocks must be an integer from 0 to 256"):
        load_checkpoint(out)
    one_error_line(run("train", "--resume", out, "--no-progress"), r"checkpoint.pt: blocks must be an integer")
    save_checkpoint({"step": 2}, out / "checkpoint.pt")
    one_error_line(run("train", "--resume", out, "--no-progress"),
                   r"checkpoint.pt: not a checkpoint of srgan train \(no config, rng, generator\)")


# 4. Restarts.


def test_fresh_run_after_a_kill_before_the_first_checkpoint_starts_a_new_log(tmp_path, image_folder):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 2, "phase": "pretrain"}) + "\n")
    train(config(tmp_path, data=str(image_folder), pretrain_steps=4, steps=0))
    assert steps(out) == [2, 4]


def test_leftover_temporary_files_removed_at_start(tmp_path, image_folder):
    out = tmp_path / "run"
    out.mkdir()
    leftovers = [".checkpoint.pt.ab_d1234.tmp", ".generator.safetensors.x9y8z7w6.tmp", ".monitor.png.abcdefgh.png"]
    kept = ["notes.tmp", ".hidden.tmp", ".checkpoint.pt.short.tmp", ".monitor.png.abcdefgh.jpg"]
    for name in leftovers + kept:
        (out / name).write_text("x")
    assert sorted(p.name for p in remove_leftovers(out)) == sorted(leftovers)
    for name in leftovers:
        (out / name).write_text("x")
    train(config(tmp_path, data=str(image_folder), pretrain_steps=2, steps=0))
    names = {p.name for p in out.iterdir()}
    assert not names & set(leftovers) and set(kept) <= names


def test_unreadable_checkpoint_gives_no_weights_only_advice(tmp_path):
    class Code:
        def __reduce__(self):
            return print, ("hi",)

    torch.save({"x": Code()}, tmp_path / "checkpoint.pt")
    result = run("train", "--resume", tmp_path)
    one_error_line(result, r"checkpoint.pt: unreadable checkpoint \(UnpicklingError: Unsupported global: "
                           r"GLOBAL print was not an allowed global by default\)$")
    assert "weights_only" not in result.stderr


def test_eval_results_disk_full_leaves_nothing(tmp_path, monkeypatch):
    from srgan_noise.evaluation.evaluate import write_results
    from srgan_noise.evaluation.results import EvalResult

    result = EvalResult(rows=(), mean={}, scale=4, weights=None)
    real_write_text = type(tmp_path).write_text

    def full(path, *args, **kwargs):
        real_write_text(path, "half")
        raise FULL

    monkeypatch.setattr(type(tmp_path), "write_text", full)
    with pytest.raises(UserError, match=rf"^{tmp_path}: cannot write results there \(No space left on device\)$"):
        write_results(result, tmp_path)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
