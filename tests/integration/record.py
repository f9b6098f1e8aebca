"""Test-only callbacks: the dataset indices each rank trained on; digests of its weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class RecordIndices(Callback):
    """Each rank writes {epoch: [dataset indices]} (DistributedSampler reshuffles per epoch)."""

    def __init__(self, out: str):
        self.out, self.seen = Path(out), {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.seen.setdefault(str(trainer.current_epoch), []).extend(batch["index"].tolist())

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


class RecordWeights(Callback):
    """Each rank writes SHA256 digests of its pretrained and new parameters at the start of
    training and after every epoch: bit-identical weights have equal digests."""

    def __init__(self, out: str):
        self.out, self.digests = Path(out), {}

    def digest(self, pl_module) -> dict[str, str]:
        from mmdetect.training.optim import pretrained_modules

        loaded = {id(p) for m in pretrained_modules(pl_module.net) for p in m.parameters()}
        out = {"pretrained": hashlib.sha256(), "new": hashlib.sha256()}
        for p in pl_module.net.parameters():
            out["pretrained" if id(p) in loaded else "new"].update(p.detach().cpu().numpy())
        return {k: h.hexdigest() for k, h in out.items()}

    def on_train_start(self, trainer, pl_module) -> None:
        self.digests["start"] = self.digest(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.digests[f"epoch{trainer.current_epoch}"] = self.digest(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / f"weights{trainer.global_rank}.json"
        path.write_text(json.dumps(self.digests))
