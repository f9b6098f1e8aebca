"""A test-only callback: each rank writes the dataset indices it trained on."""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class RecordIndices(Callback):
    def __init__(self, out: str):
        self.out, self.seen = Path(out), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen += batch["index"].tolist()

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))
