"""Multi-process training: torchrun with 2 processes, gloo on CPU, tiny models.

Same global batch and seeds, BN-free models and no instance noise (so no
per-rank random stream enters the step): a 2-process run matches one process
within TOLERANCE, relative, on every monitored figure, validation score and
penalty gradient (measured: at most 3e-7, float32 rounding of the all-reduce
and of half-batch means), and within PARAMETER_TOLERANCE, absolute, on every
parameter (a tenth of one Adam step at lr 1e-4; measured: at most 1e-7 with
Adam, 3e-6 with WGAN's RMSProp, whose first steps are 10 lr and amplify the
rounding of near-zero gradient components). This file is also the torchrun
worker for the step-level checks (python tests/test_distributed.py --worker DIR)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image

from srgan_noise.base.config import preset
from srgan_noise.base.errors import UserError
from srgan_noise.models.discriminator import Discriminator
from srgan_noise.training.checkpoint import load_checkpoint
from srgan_noise.training.distributed import (DistributedModule, World, process_group, rank_seed, rank_slice, replicate,
                                              world_from_environment)
from srgan_noise.training.monitor import read_metrics
from srgan_noise.training.regularisers import d_penalty, wgan_gradient_penalty
from srgan_noise.training.steps import build_nets, gan_step
from srgan_noise.training.train import train
from srgan_noise.training.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-5  # relative: monitored figures, validation scores, penalty gradients
PARAMETER_TOLERANCE = 1e-5  # absolute, after a few steps
TINY = dict(model=preset("tiny"), batch_size=4, patch_size=16, log_every=2, checkpoint_every=2, progress=False,
            device="cpu")
UNCOMPARED = ("seconds_per_step", "world_size", "phase", "step")


def torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """2 processes on this machine; --standalone picks a free port for the rendezvous."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-6)


def assert_records_match(first: list[dict], second: list[dict]) -> None:
    assert [r["step"] for r in first] == [r["step"] for r in second]
    for a, b in zip(first, second):
        for key in a.keys() - set(UNCOMPARED):
            assert relative_difference(a[key], b[key]) < TOLERANCE, (a["step"], key, a[key], b[key])


def assert_checkpoints_match(run_a: Path, run_b: Path) -> None:
    a, b = load_checkpoint(run_a), load_checkpoint(run_b)
    assert a["step"] == b["step"]
    for name in ("generator", "discriminator"):
        assert a[name].keys() == b[name].keys()  # plain module keys, no "module." prefix
        for key, value in a[name].items():
            torch.testing.assert_close(value, b[name][key], rtol=0, atol=PARAMETER_TOLERANCE)


# 1. Without processes: the helpers and the checks made before joining a group.

def test_world_from_environment():
    assert world_from_environment({}) == World()
    world = world_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.is_main, world.distributed) == (3, 4, 1, False, True)
    with pytest.raises(UserError, match="torchrun environment unreadable"):
        world_from_environment({"WORLD_SIZE": "two", "RANK": "0"})
    with pytest.raises(UserError, match="invalid process placement: rank 2 of 2"):
        World(rank=2, size=2)


def test_rank_slices_tile_the_global_batch():
    batch = (torch.arange(8.0).view(4, 2), torch.arange(4.0))
    slices = [rank_slice(batch, World(rank, 2)) for rank in range(2)]
    for i, tensor in enumerate(batch):
        assert torch.equal(torch.cat([s[i] for s in slices]), tensor)
    assert all(torch.equal(a, b) for a, b in zip(rank_slice(batch, World()), batch))


def test_rank_seeds_differ_by_rank_and_resume_step():
    seeds = {rank_seed(seed, rank, step) for seed in range(3) for rank in range(1, 9) for step in (0, 100)}
    assert len(seeds) == 3 * 8 * 2


def test_batch_must_split_evenly(tmp_path):
    with pytest.raises(UserError, match=r"--batch-size 3 \(the global batch\) is not a multiple of the 2 processes"):
        train(TrainConfig(out=str(tmp_path / "run"), **{**TINY, "batch_size": 3}), world=World(rank=0, size=2))


def test_sync_batch_norm_refuses_double_backward_through_bn(tmp_path):
    batch = {**TINY, "model": preset("tiny", d_norm="batch")}
    with pytest.raises(UserError, match="--sync-batch-norm with --reg roth needs --d-norm none or virtual"):
        TrainConfig(out=str(tmp_path), reg="roth", sync_batch_norm=True, **batch)
    with pytest.raises(UserError, match="--sync-batch-norm with --loss wgan-gp needs --d-norm none or virtual"):
        TrainConfig(out=str(tmp_path), loss="wgan-gp", sync_batch_norm=True, **batch)
    TrainConfig(out=str(tmp_path), reg="roth", sync_batch_norm=True, **{**TINY, "model": preset("tiny", d_norm="none")})


def test_sync_batch_norm_needs_cuda():
    with pytest.raises(UserError, match="--sync-batch-norm needs CUDA devices"):
        replicate(Discriminator(preset("tiny")), torch.device("cpu"), sync_batch_norm=True)


@pytest.fixture
def group_of_one():
    """A one-process gloo group, enough for DDP to wrap modules in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_wrapper_passes_through_what_the_step_uses(group_of_one):
    discriminator = Discriminator(preset("tiny"))
    wrapped = replicate(discriminator, torch.device("cpu"))
    assert isinstance(wrapped, DistributedModule) and wrapped.module is discriminator
    assert [name for name, _ in wrapped.named_parameters()] == [name for name, _ in discriminator.named_parameters()]
    x = torch.rand(2, 3, 16, 16)
    features, logits = wrapped.forward_features(x)
    torch.testing.assert_close(logits, wrapped(x))
    maps, pooled, logits_again = wrapped.forward_maps(x)
    torch.testing.assert_close(pooled, features)
    torch.testing.assert_close(logits_again, logits)
    assert len(maps) == 8  # one map per conv's activation


# 2. The step under DDP, 2 processes (the worker at the end of this file).

@pytest.fixture(scope="module")
def step_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("worker")
    torchrun(str(Path(__file__).resolve()), "--worker", str(out))
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def test_double_backward_gradients_match_one_process(step_results):
    """grad of each penalty w.r.t. D's parameters, through autograd.grad(create_graph=True)
    under DDP, equals one process's on the global batch."""
    for results in step_results:
        assert set(results["gradients"]) == {"roth", "r1", "r2", "wgan-gp", "roth, virtual batch norm"}
        for name, difference in results["gradients"].items():
            assert difference < TOLERANCE, (name, difference)


def test_every_technique_trains_and_keeps_ranks_in_step(step_results):
    for results in step_results:
        for name, check in results["techniques"].items():
            assert check["finite"] and check["discriminator_changed"], name
            assert check["rank_spread"] == 0.0, name  # averaged gradients: identical parameters on all ranks
            if check["versus_one_process"] is not None:
                assert check["versus_one_process"] < PARAMETER_TOLERANCE, name


# 3. `srgan train` under torchrun against one process; resume across world sizes.

def make_images(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        y, x = np.mgrid[0:48, 0:40]
        base = np.stack([np.sin(x / (3 + i)), np.cos(y / (4 + i)), np.sin((x + y) / 5)], -1) * 100 + 128
        Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 2-process run through the CLI and the same config (read back from its
    checkpoint) in one process: 2 MSE steps, 2 GAN steps with the Roth regulariser."""
    base = tmp_path_factory.mktemp("runs")
    images = make_images(base / "images")
    two, one = base / "two", base / "one"
    done = torchrun("-m", "srgan_noise", "train", "--data", str(images), "--val", str(images), "--out", str(two),
                    "--preset", "tiny", "--no-batch-norm", "--d-norm", "none", "--batch-size", "4",
                    "--patch-size", "16", "--pretrain-steps", "2", "--steps", "2", "--log-every", "1",
                    "--checkpoint-every", "1", "--noise", "none", "--reg", "roth", "--device", "cpu", "--no-progress")
    assert "torchrun: 2 processes, global batch 4 = 2 x 2 patches per process" in done.stderr
    config = TrainConfig.from_dict(load_checkpoint(two)["config"])
    train(dataclasses.replace(config, out=str(one)))
    return one, two


def resumed(run: Path, name: str, steps: int) -> Path:
    """A copy of `run` continued in this process to `steps` GAN steps, as `--resume --steps` does."""
    folder = shutil.copytree(run, run.parent / name)
    saved = TrainConfig.from_dict(load_checkpoint(folder)["config"])
    return train(dataclasses.replace(saved.extended(steps), out=str(folder)), resume=True)


@pytest.fixture(scope="module")
def one_then_one(runs):
    """The one-process run continued in one process: 2 more GAN steps."""
    return resumed(runs[0], "one_then_one", 4)


def test_two_processes_match_one(runs):
    one, two = runs
    first, second = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in second] == [1, 2, 3, 4]
    assert {r["world_size"] for r in first} == {1} and {r["world_size"] for r in second} == {2}
    assert_records_match(first, second)
    assert_checkpoints_match(one, two)
    assert len(list((two / "tb").iterdir())) == 1  # one events file: rank 0 alone writes


def test_two_process_checkpoint_resumes_in_one(runs, one_then_one):
    continued = resumed(runs[1], "two_then_one", 4)
    records = read_metrics(continued)
    assert [r["world_size"] for r in records] == [2, 2, 2, 2, 1, 1]
    assert_records_match(read_metrics(one_then_one), records)
    assert_checkpoints_match(one_then_one, continued)


def test_one_process_checkpoint_resumes_in_two(runs, one_then_one):
    moved = shutil.copytree(runs[0], runs[0].parent / "one_then_two")
    torchrun("-m", "srgan_noise", "train", "--resume", str(moved), "--steps", "4", "--no-progress")
    records = read_metrics(moved)
    assert [r["world_size"] for r in records] == [1, 1, 1, 1, 2, 2]
    assert_records_match(read_metrics(one_then_one), records)
    assert_checkpoints_match(one_then_one, moved)


# The torchrun worker: each rank writes rank<r>.json with what the tests above assert.

def _global_batches(count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(4, 3, 4, 4, generator=g), torch.rand(4, 3, 16, 16, generator=g)) for _ in range(count)]


def _gradient_differences(world: World) -> dict[str, float]:
    """|grad_DDP - grad_one_process| / |grad_one_process| over D's parameters, per penalty;
    for virtual batch norm, of the penalty plus a loss (so through the reference batch's statistics)."""
    _, real = _global_batches(1, seed=1)[0]
    fake = real.flip(-1)
    differences = {}
    for name in ("roth", "r1", "r2", "wgan-gp", "roth, virtual batch norm"):
        kind, virtual = name.split(",")[0], name.endswith("virtual batch norm")
        torch.manual_seed(0)
        discriminator = Discriminator(preset("tiny", d_norm="virtual" if virtual else "none", d_reference_size=2))
        if virtual:
            discriminator.reference.set(real[:2].flip(-2))  # the same on every rank
        reference = copy.deepcopy(discriminator)
        wrapped = replicate(discriminator, torch.device("cpu"))

        def penalty(critic, real, fake):
            """The penalty, + 0 x logits so that every parameter has a gradient for DDP
            (grad_x D does not depend on the last bias); in the step, loss_d gives them."""
            x_real, x_fake = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
            logits_real, logits_fake = critic(x_real), critic(x_fake)
            if name == "wgan-gp":  # x_real for x_fake: the interpolate is x_real whatever the random mix
                value = wgan_gradient_penalty(critic, x_real, x_real)
            else:
                value = d_penalty(kind, logits_real, x_real, logits_fake, x_fake)
            if virtual:
                return value + logits_real.mean() - logits_fake.mean()
            return value + 0 * logits_real.sum()

        penalty(reference, real, fake).backward()
        penalty(wrapped, *rank_slice((real, fake), world)).backward()
        expected = torch.cat([p.grad.flatten() for p in reference.parameters()])
        got = torch.cat([p.grad.flatten() for p in discriminator.parameters()])
        differences[name] = ((got - expected).norm() / expected.norm()).item()
    return differences


TECHNIQUES = {  # name: (overrides, comparable with one process on the global batch)
    "roth": (dict(reg="roth", gamma0=100.0), True),
    "r1, 2 D steps, lazy": (dict(reg="r1", d_steps=2, reg_every=2), True),
    "historical averaging": (dict(reg="r2", historical_averaging=0.1), True),
    "wgan clip": (dict(loss="wgan"), True),
    "roth, batch norm": (dict(reg="roth", model=preset("tiny")), False),
    "wgan-gp": (dict(loss="wgan-gp"), False),
    "feature matching, batch norm": (dict(feature_matching="add", model=preset("tiny")), False),
    "spectral norm, minibatch": (dict(reg="roth", model=preset("tiny", d_norm="none", d_spectral_norm=True,
                                                                  d_minibatch_kernels=4)), False),
    # EBGAN's energies are per example, so DDP's halves add up to one process. So are virtual
    # batch norm's outputs, but like batch norm it makes the gradient of a conv bias before it
    # zero in exact arithmetic, rounding noise that Adam scales up to lr-sized steps: its
    # gradients are compared with one process's above instead.
    "virtual batch norm": (dict(reg="roth", model=preset("tiny", batch_norm=False, d_norm="virtual",
                                                         d_reference_size=2)), False),
    "ebgan, r1": (dict(loss="ebgan", reg="r1", model=preset("tiny", batch_norm=False, d_norm="none",
                                                            d_autoencoder=True)), True),
    "ebgan-pt, virtual batch norm": (dict(loss="ebgan", pt_weight=0.1, model=preset(
        "tiny", batch_norm=False, d_norm="virtual", d_reference_size=2, d_autoencoder=True)), False),
}


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


def _technique_checks(world: World) -> dict[str, dict]:
    """Two GAN steps per technique on DDP-wrapped nets, each rank on its slice."""
    checks = {}
    for name, (overrides, comparable) in TECHNIQUES.items():
        config = TrainConfig(out="unused", noise="none", **{**TINY, "model": preset("tiny", batch_norm=False,
                                                                                     d_norm="none"),
                                                            **overrides})
        torch.manual_seed(0)
        nets = build_nets(config.model, config, torch.device("cpu"))
        if config.model.d_norm == "virtual":  # the same on every rank, as train() draws it
            nets.discriminator.reference.set(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)))
        reference = copy.deepcopy(nets)
        before = [p.detach().clone() for p in nets.discriminator.parameters()]
        plain = [nets.generator, nets.discriminator]
        nets = dataclasses.replace(nets, generator=replicate(plain[0], torch.device("cpu")),
                                   discriminator=replicate(plain[1], torch.device("cpu")))
        values = []
        for t in range(2):
            batches = _global_batches(config.d_steps, seed=10 + t)
            values.append(gan_step(nets, [rank_slice(b, world) for b in batches], t, config, _no_autocast))
            if comparable:
                gan_step(reference, batches, t, config, _no_autocast)
        parameters = torch.cat([p.detach().flatten() for module in plain for p in module.parameters()])
        highest, lowest = parameters.clone(), parameters.clone()
        dist.all_reduce(highest, op=dist.ReduceOp.MAX)
        dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
        versus = None
        if comparable:
            expected = torch.cat([p.detach().flatten() for module in (reference.generator, reference.discriminator)
                                  for p in module.parameters()])
            versus = (parameters - expected).abs().max().item()
        checks[name] = {
            "finite": all(math.isfinite(v) for step in values for v in step.values()),
            "discriminator_changed": any(not torch.equal(p, q) for p, q in zip(before, plain[1].parameters())),
            "rank_spread": (highest - lowest).abs().max().item(),
            "versus_one_process": versus,
        }
    return checks


def _worker(out: Path) -> None:
    world = world_from_environment()
    with process_group(world, torch.device("cpu")):
        results = {"gradients": _gradient_differences(world), "techniques": _technique_checks(world)}
    (out / f"rank{world.rank}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(Path(sys.argv[2]))
