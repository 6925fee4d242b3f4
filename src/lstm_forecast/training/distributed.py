"""Facts about the process launch that the apps need before Lightning starts: rank, relaunching DDP."""

from __future__ import annotations

import logging
import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from lstm_forecast.errors import UserError

log = logging.getLogger(__name__)

# Set by Lightning's DDP re-execution (LOCAL_RANK, NODE_RANK), torchrun (RANK) and SLURM (SLURM_PROCID).
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")

# Strategies that start the other ranks by re-executing the command line (Lightning's subprocess launcher).
_SPAWNING_MARKERS = ("spawn", "fork", "notebook")


def is_rank_zero() -> bool:
    """Whether this process is the global rank 0 (or not distributed at all).

    Read from the environment, so it is known before any Trainer exists: the other ranks must
    not write the run's files (job record, FAILED) nor delete its folder.
    """
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in _RANK_VARIABLES)


def _local_process_count(trainer: DictConfig) -> int:
    """Processes per node that Lightning would start for ``trainer`` (devices, or 1 where unknown)."""
    devices = trainer.get("devices", 1)
    accelerator = str(trainer.get("accelerator", "auto"))
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, str) and "," in devices:
        return len([d for d in devices.split(",") if d.strip()])
    if not isinstance(devices, int | str):  # a list of device ids
        return len(devices)
    if accelerator == "cpu":
        return 1 if str(devices) in ("auto", "-1") else int(devices)
    import torch  # imported where needed: the apps' start-up (--help) does without torch

    return max(torch.cuda.device_count(), 1)


def relaunches_command_line(trainer: DictConfig) -> bool:
    """Whether ``trainer`` makes Lightning re-execute the command line once per extra local process.

    That is DDP (and FSDP, DeepSpeed) with more than one process on this node, unless the ranks are spawned
    from this process (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``).
    """
    strategy = str(trainer.get("strategy", "auto")).lower()
    if any(marker in strategy for marker in _SPAWNING_MARKERS):
        return False
    if strategy != "auto" and not strategy.startswith(("ddp", "fsdp", "deepspeed")):
        return False
    return _local_process_count(trainer) > 1


def spawn_ranks_in_local_multirun(trainer: DictConfig) -> None:
    """Let a local multirun's DDP job start its ranks from the job's own process (``ddp_spawn``).

    ``strategy=ddp`` starts the extra ranks by re-executing the command line, ``-m`` included, which
    inside a local multirun would start the whole sweep again in every job; spawned ranks run only
    this job, so ``lstm-train -m trainer=cpu,ddp_cpu`` runs every job as typed (one line says so). On
    SLURM (the submitit ``slurm`` launcher) the cluster starts the ranks and nothing changes. FSDP and
    DeepSpeed have no spawning variant in Lightning: such a job is refused with the alternatives.
    """
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    launcher_target = str(hydra_cfg.launcher.get("_target_", ""))
    if not multirun or "SlurmLauncher" in launcher_target or not relaunches_command_line(trainer):
        return
    strategy = str(trainer.get("strategy", "auto")).lower()
    if strategy == "auto" or strategy.startswith("ddp"):
        # ddp_find_unused_parameters_true becomes ddp_spawn_find_unused_parameters_true (Lightning's name).
        spawning = "ddp_spawn" + (strategy[len("ddp") :] if strategy.startswith("ddp") else "")
        log.warning(
            "trainer.strategy=%s in a local multirun: this job spawns its %d processes "
            "(trainer.strategy=%s), as re-executing the command line would start the sweep again",
            strategy, _local_process_count(trainer), spawning,
        )  # fmt: skip
        with open_dict(trainer):
            trainer.strategy = spawning
        return
    raise UserError(
        f"trainer.strategy={trainer.get('strategy')} with several processes re-executes the command line, "
        "which inside a local multirun would relaunch the sweep; use one device per job (trainer.devices=1) "
        "or hydra/launcher=slurm, or run it as a single run (without -m)"
    )


def refuse_several_processes_in_python(trainer: DictConfig) -> None:
    """Raise a :class:`UserError` for a trainer of several processes (or a distributed strategy) in a
    fit called from Python (``Forecaster.fit``): Lightning's DDP would re-execute the caller's own
    script in every extra process, and a spawned one would re-import it."""
    strategy = str(trainer.get("strategy", "auto")).lower()
    processes = _local_process_count(trainer) * int(trainer.get("num_nodes", 1) or 1)
    if processes <= 1 and not strategy.startswith(("ddp", "fsdp", "deepspeed")):
        return
    raise UserError(
        f"Forecaster.fit trains in this one process, and trainer.strategy={trainer.get('strategy')} with "
        f"{processes} process(es) would re-run your script in each; train on several devices with the CLI "
        "(lstm-train trainer=ddp ...) and use its best checkpoint with Forecaster.load, or fit here on one "
        "device (trainer=cpu, or trainer.devices=1 trainer.strategy=auto)"
    )


def _cpu_supports_bf16() -> bool:
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


def refuse_unsupported_precision(trainer: DictConfig) -> None:
    """Raise a :class:`UserError` for bf16 on a CPU without bf16 instructions.

    There oneDNN cannot build the LSTM and the fit dies with a low-level RuntimeError.
    """
    import torch

    precision = str(trainer.get("precision", "32-true"))
    accelerator = str(trainer.get("accelerator"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and not _cpu_supports_bf16():
        raise UserError(
            f"trainer.precision={precision} needs a GPU (Ampere or newer) or a CPU with bf16 instructions "
            "(AVX512-BF16, AMX), which this one lacks; use trainer.precision=32-true here"
        )
