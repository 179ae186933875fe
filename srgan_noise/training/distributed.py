"""Multi-process training on torchrun with DistributedDataParallel: which
process this is, the process group, the DDP wrapper the step calls, the
per-rank share of a batch and of the random streams, and cross-rank means.

One process per device. torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and
MASTER_ADDR/MASTER_PORT, which torch reads when joining the group); the CLI
reads them with world_from_environment, so the library reads no environment.

Data: every rank draws the whole global batch from the data generator, seeded
alike on every rank, and keeps its slice (rank_slice). Rank r therefore trains
on exactly the r-th slice of what one process would draw, for any number of
processes, and a run resumes across world sizes with the same crops. The
price: each rank crops as many patches as one process would (a few ms for
tens of patches), work that does not shrink with more processes.

Double backward: the regularisers take grad_x D(x) with
torch.autograd.grad(create_graph=True), through the DDP forward. That is safe
because autograd.grad with inputs=x runs none of the parameters'
gradient-accumulation nodes, where DDP's all-reduce hooks sit; the one
loss.backward() that follows accumulates each parameter's first- and
second-order terms in a single node, so each hook fires once and the all-reduce
averages the full gradient (tests/test_distributed.py checks it against one
process). Buffers are broadcast once, when DDP wraps the module, not at every
forward: a step makes four or more forwards, and training reads batch
statistics, never the BN running statistics (rank 0's are the ones validated
and saved; SyncBatchNorm keeps all ranks' equal anyway)."""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from srgan_noise.base.errors import UserError

T = TypeVar("T")

# No buffer broadcast at each forward (see above); torch 2.13 renamed the option.
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the device index on this node

    def __post_init__(self) -> None:
        if self.size < 1 or not 0 <= self.rank < self.size or self.local_rank < 0:
            raise UserError(f"invalid process placement: rank {self.rank} of {self.size}, local rank {self.local_rank}")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics, TensorBoard events and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_environment(environ: Mapping[str, str] = os.environ) -> World:
    """torchrun's RANK, WORLD_SIZE and LOCAL_RANK; one process without them."""
    if "WORLD_SIZE" not in environ:
        return World()
    try:
        return World(rank=int(environ["RANK"]), size=int(environ["WORLD_SIZE"]),
                     local_rank=int(environ.get("LOCAL_RANK", "0")))
    except (KeyError, ValueError):
        names = ", ".join(f"{name}={environ.get(name)!r}" for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        raise UserError(f"torchrun environment unreadable ({names}); launch with torchrun --nproc-per-node N") from None


def device_for(world: World, device: torch.device) -> torch.device:
    """A CUDA device becomes this process's own, cuda:LOCAL_RANK."""
    if device.type != "cuda" or not world.distributed:
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise UserError(f"local rank {world.local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                        f"use --nproc-per-node {torch.cuda.device_count()} or fewer")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """Join the default process group for the block (NCCL on CUDA, gloo on CPU);
    one already joined (by a test harness, say) is used and left open."""
    if not world.distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()
        # Gloo's worker threads release a finished collective's tensors just
        # after the caller has its result (a barrier's work holds the ones
        # before it, so a barrier only moves the problem), and a tensor made
        # in Python needs the GIL for that. A worker that asks for it once the
        # interpreter is shutting down aborts the process ("terminate called
        # without an active exception": about one 2-process CPU run in 20, seen
        # in CI). torch has no call that waits for them; a pause with the GIL
        # released gives them the few microseconds they need, with margin.
        time.sleep(0.2)


class DistributedModule(DistributedDataParallel):
    """DDP that the training step uses as the module it wraps.

    Calling it (forward) makes the next backward average gradients across
    ranks, as DDP does. forward_features and forward_maps (the discriminator's, which
    the step calls only with D frozen, in G's update, so there is nothing to average) and
    named_parameters (HistoricalAverage's keys) pass through to the wrapped
    module, so the step reads the same with and without DDP."""

    def forward_features(self, x: torch.Tensor) -> Any:
        return self.module.forward_features(x)

    def forward_maps(self, x: torch.Tensor) -> Any:
        return self.module.forward_maps(x)

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True) -> Iterator[tuple[str, nn.Parameter]]:
        return self.module.named_parameters(prefix, recurse, remove_duplicate)


def replicate(module: nn.Module, device: torch.device, sync_batch_norm: bool = False) -> DistributedModule:
    """Wrap `module` (already on `device`, already loaded) for data-parallel
    training. DDP copies rank 0's parameters and buffers to every rank here.
    sync_batch_norm swaps BatchNorm layers in place for SyncBatchNorm (the same
    parameters and state-dict keys), so batch statistics span the global batch."""
    if sync_batch_norm:
        if device.type != "cuda":
            raise UserError("--sync-batch-norm needs CUDA devices: SyncBatchNorm has no CPU implementation")
        nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return DistributedModule(module, device_ids=[device.index] if device.type == "cuda" else None,
                             **_NO_FORWARD_BUFFER_SYNC)


def rank_slice(batch: tuple[torch.Tensor, ...], world: World) -> tuple[torch.Tensor, ...]:
    """Rank r's share of a global batch: rows [r B/W, (r+1) B/W) of each (B, ...) tensor."""
    per_rank = batch[0].shape[0] // world.size
    return tuple(x[world.rank * per_rank:(world.rank + 1) * per_rank] for x in batch)


def rank_seed(seed: int, rank: int, step: int) -> int:
    """Seed of rank r's torch stream (instance noise, WGAN-GP mixes) from rank 1 on,
    after a start or resume at `step`: distinct per rank so ranks draw independent
    noise, a pure function so a run is reproducible. Rank 0 keeps the one-process
    stream (and the checkpoint's)."""
    return ((seed * 1_000_003 + step) * 1_000_003 + rank) % 2**64


def mean_over_ranks(values: dict[str, float], world: World, device: torch.device) -> dict[str, float]:
    """Each figure averaged over the ranks (every rank gets the means): one all-reduce."""
    if not world.distributed:
        return values
    names = sorted(values)  # the same order on every rank
    totals = torch.tensor([values[name] for name in names], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    means = dict(zip(names, (totals / world.size).tolist()))
    return {name: means[name] for name in values}


def from_main(value: T, world: World) -> T:
    """Rank 0's `value` on every rank (a picklable object), so all ranks decide alike."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
