"""Training on several processes at once: data parallelism with PyTorch's DistributedDataParallel, started by torchrun.

    torchrun --standalone --nproc_per_node 2 -m minidiff train --config mnist --out runs/mnist

torchrun starts N copies of the command and tells each who it is in environment variables: RANK (0 ... N-1),
WORLD_SIZE (N) and LOCAL_RANK (which GPU of this machine is its own), with MASTER_ADDR and MASTER_PORT to meet at.
`start` reads them and joins the process group: NCCL between GPUs, gloo between CPU processes. Without them (a plain
`python -m minidiff train`) the run is one process, and nothing in this module changes anything.

How a batch is shared. config.batch_size is the batch of one optimizer step, however many processes compute it. Every
process holds the whole data set and draws the same batch, t and noise from the same generator (the run's, seeded by
config.seed), then computes the loss of its own rows of that batch only (`micro_batches`): process r of N takes the
r-th of N equal slices, itself cut into config.accumulate micro-batches (gradient accumulation). This is what
torch's DistributedSampler does for an epoch, done per batch: each image of a step is computed by exactly one
process. DistributedDataParallel (`wrap`) averages the gradients over the processes while the backward pass runs,
so every process takes the same optimizer step and keeps the same weights.

Why the result does not depend on N (nor on accumulate): each micro-batch's loss is the mean over its images, all
micro-batches have the same size, and each is divided by the number of micro-batches; the average over processes
then gives the gradient of the mean loss over the whole batch, exactly as one process computes it. The random
draws follow the images, not the processes: t, eps and dropped conditions are drawn for the whole batch on every
process, and dropout masks come from each image's own generator (`minidiff.training.dropout`). So a run on 2
processes takes the same steps as on 1, up to float rounding, and a run may resume on another number of processes.

Only the main process (rank 0) writes checkpoints and sample grids and shows progress; decisions that depend on
its clock (stop after config.minutes) are broadcast from it, so that every process stops at the same step.
"""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from minidiff.files.device import resolve_device


@dataclass(frozen=True)
class Processes:
    """Who this process is among the run's: rank 0 ... world_size - 1, and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """The one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def environment_rank() -> tuple[int, int, int]:
    """(RANK, WORLD_SIZE, LOCAL_RANK) as torchrun sets them; (0, 1, 0) outside torchrun."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, 0
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise ValueError("WORLD_SIZE is set but RANK is missing or not a number: start distributed runs with "
                         "torchrun --nproc_per_node N -m minidiff ...") from None
    return rank, world_size, local_rank


def start(device: torch.device | str = "auto") -> Processes:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on the CPU); outside torchrun, one process.

    device: as `minidiff.files.device.resolve_device`; a CUDA process takes GPU LOCAL_RANK. Raises ValueError for
    MPS, which has no backend for several processes.
    """
    rank, world_size, local_rank = environment_rank()
    device = resolve_device(device)
    if world_size == 1:
        return Processes(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), not on {device.type}; "
                         "pass --device cpu or cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Processes(rank, world_size, device)


def wait_for_main(processes: Processes) -> None:
    """Every process waits here until all have arrived: at the end of a run, until the main one has written it."""
    if processes.distributed:
        dist.barrier()


def finish() -> None:
    """Leave the process group, if this process joined one: once, when the command is done (a process that trains
    twice, e.g. a run and then its resumption, keeps the group between them). Every process waits for the others
    first, so none tears down its connections while another still uses them."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, processes: Processes) -> nn.Module:
    """The module a step calls: in DistributedDataParallel, which averages its gradients over the processes (and
    gives every process rank 0's initial weights); the module itself in a run of one process."""
    if not processes.distributed:
        return module
    device_ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)


def micro_batches(batch_size: int, processes: Processes, accumulate: int) -> list[slice]:
    """This process's rows of a batch, as `accumulate` equal micro-batches: slice k of process r is the
    (r * accumulate + k)-th of world_size * accumulate equal slices. Raises ValueError if they cannot be equal."""
    parts = processes.world_size * accumulate
    if batch_size % parts:
        raise ValueError(f"batch_size {batch_size} cannot be split into {processes.world_size} processes x "
                         f"{accumulate} micro-batches of equal size; choose a batch size divisible by {parts}")
    size = batch_size // parts
    first = processes.rank * accumulate
    return [slice((first + k) * size, (first + k + 1) * size) for k in range(accumulate)]


def no_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """While `skip`, DistributedDataParallel keeps the gradients local (gradient accumulation: only the last
    micro-batch's backward pass averages them over the processes)."""
    if skip and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def mean_over_processes(value: float, processes: Processes) -> float:
    """The mean of a number over all processes (each process's loss -> the batch's)."""
    if not processes.distributed:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=processes.device)
    dist.all_reduce(total)
    return float(total) / processes.world_size


def main_decides(decision: bool, processes: Processes) -> bool:
    """The main process's decision, on every process (e.g. whether its clock says the run is over)."""
    if not processes.distributed:
        return decision
    flag = torch.tensor([float(decision)], device=processes.device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


@contextlib.contextmanager
def main_first(processes: Processes) -> Iterator[None]:
    """Run the block on the main process first, then on the others: it writes a cache (the encoded latents) that
    they then read."""
    if processes.distributed and not processes.is_main:
        dist.barrier()
    yield
    if processes.distributed and processes.is_main:
        dist.barrier()
