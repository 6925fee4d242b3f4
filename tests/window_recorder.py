"""A test-only callback: which windows each DDP rank trained and validated on, per epoch.

Loaded by a real ``lstm-train`` process (``+callbacks.window_recorder._target_=window_recorder.
WindowRecorder``, with this folder on ``PYTHONPATH``); writes ``<folder>/rank<r>.json`` at the end of
the fit: ``{"train": {epoch: [window keys]}, "val": {epoch: [window keys]}}``, a window's key being
``series_id * 10^6 + target_row``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl


class WindowRecorder(pl.Callback):
    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.seen: dict[str, dict[int, list[int]]] = {"train": {}, "val": {}}

    def _record(self, split: str, trainer: pl.Trainer, batch: dict) -> None:
        keys = (batch["series_id"].long() * 10**6 + batch["target_row"].long()).tolist()
        self.seen[split].setdefault(trainer.current_epoch, []).extend(keys)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._record("train", trainer, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking:
            self._record("val", trainer, batch)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.seen))
