"""Run `ft train` on several processes, GPUs or machines through torchrun (torch.distributed.run).

ft does not launch workers itself: it hands the same command line to torchrun, which starts one worker per
process, sets RANK/WORLD_SIZE/LOCAL_RANK, and restarts nothing. The Trainer (through accelerate) then runs data
parallel with NCCL on GPUs or gloo on CPUs. Every worker gets the same run name, chosen here, so that they agree
on the run folder; only rank 0 creates it and writes to it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ft.errors import FtError


def is_worker() -> bool:
    """Return whether this process was started by torchrun (or another launcher that sets LOCAL_RANK)."""
    return "LOCAL_RANK" in os.environ


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def leave_process_group() -> None:
    """Tear down this worker's process group once it has run its last collective operation.

    Without it a worker that finishes first exits while gloo's threads still run, and the C++ runtime can abort it
    at interpreter exit ("terminate called without an active exception"). Each rank leaves on its own: after the
    final evaluation no rank takes part in another collective, so no barrier is needed (rank 0 may still save,
    evaluate tool calls and push for minutes, longer than a barrier would wait)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_args(args, run_name: str) -> list[str]:
    """Build torchrun's argument list for `ft train` with the same config, overrides and resume flag."""
    if args.nnodes > 1 and not args.master_addr:
        raise FtError("--master-addr is required with --nnodes > 1: give the address of the node with --node-rank 0.")
    launcher = [f"--nproc-per-node={args.nproc}", f"--nnodes={args.nnodes}", f"--node-rank={args.node_rank}",
                f"--master-addr={args.master_addr or '127.0.0.1'}", f"--master-port={args.master_port}"]
    worker = ["-m", "ft.cli", "train", args.config]
    for item in args.overrides:
        worker += ["--set", item]
    worker += ["--set", f"output.run_name={run_name}"]
    if args.resume:
        worker += ["--resume", args.resume]
    return launcher + worker


def launch(args, loaded) -> int:
    """Start the workers through torchrun; return 0 when all of them succeed."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    run_name = loaded.config.output.run_name or f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    command = torchrun_args(args, run_name)
    print(f"launching {args.nproc} process(es) per node on {args.nnodes} node(s) with torchrun; run name {run_name}",
          flush=True)
    try:
        torchrun(command)
    except ChildFailedError as err:
        failures = ", ".join(f"rank {r}: exit code {f.exitcode}" for r, f in err.failures.items())
        print(f"error: a training process failed ({failures}); its messages are above", flush=True)
        return max((f.exitcode for f in err.failures.values() if f.exitcode and f.exitcode > 0), default=1)
    return 0
