"""Reading checkpoints safely: ``torch.load(weights_only=True)`` only, never arbitrary pickles."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lstm_forecast.errors import UserError
from lstm_forecast.models.module import CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_KEY, ForecastModule

# Lightning stores a datamodule's state under its class name. Checkpoints written before wide and long
# data shared one datamodule hold a long panel's under the name of the class it had then.
DATAMODULE_STATE_KEYS = ("ForecastDataModule", "PanelDataModule")


def _load_failure(error: BaseException) -> str:
    """Why ``torch.load`` failed, in a few words (torch's own advice to drop weights_only is wrong here)."""
    lines = str(error).strip().splitlines()
    if isinstance(error, pickle.UnpicklingError) or (lines and "weights_only" in lines[0]):
        return "corrupt, or holds objects other than tensors and plain data"
    if isinstance(error, OSError | EOFError | zipfile.BadZipFile) or not lines:
        return "truncated or corrupt file"
    if isinstance(error, RuntimeError | ValueError) and not isinstance(error, UnicodeDecodeError):
        return lines[0][:120]
    # Junk that the unpickler trips over: KeyError, AttributeError, IndexError, UnicodeDecodeError...
    return f"corrupt file: {type(error).__name__} {lines[0][:100]}"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded with ``weights_only=True`` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; pass ckpt_path=<run>/checkpoints/<file>.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as error:  # whatever junk makes the unpickler raise, the user gets one line
        raise UserError(
            f"{path} is not a readable lstm-forecast checkpoint ({_load_failure(error)}); "
            "pass a .ckpt file written by lstm-train"
        ) from error
    required = ("state_dict", "hyper_parameters", "datamodule_hyper_parameters")
    if (
        not isinstance(checkpoint, dict)
        or any(key not in checkpoint for key in required)
        or not any(key in checkpoint for key in DATAMODULE_STATE_KEYS)
    ):
        raise UserError(
            f"{path} is not an lstm-forecast checkpoint (missing model or data state); "
            "pass one written by lstm-train"
        )
    found = checkpoint.get(CHECKPOINT_FORMAT_KEY)
    if found != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path} was written by another lstm-forecast version (checkpoint format {found}, this "
            f"version reads {CHECKPOINT_FORMAT}); retrain, or use the version that wrote it"
        )
    return checkpoint


def module_from_checkpoint(checkpoint: dict[str, Any]) -> ForecastModule:
    """The trained model, in eval mode."""
    module = ForecastModule(**checkpoint["hyper_parameters"])
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise UserError(
            f"the checkpoint's weights do not fit its model ({str(error).splitlines()[0]})"
        ) from error
    return module.eval()
