"""Optimiser parameter groups by provenance and their learning-rate schedule (pure torch).

Only weights loaded from a pretrained source are "pretrained": the text tower's `encoder` when
`model.text.pretrained` names one, the image tower's `backbone` when `model.image.weights` does.
Layers the towers add around them (poolings, the missing-photo embedding) are new, like the
fusion and the head, and learn at `lr`.

Freezing is a zero learning rate for the pretrained groups, not `requires_grad` toggling: under
DDP the set of parameters that receive gradients must not change after the model is wrapped
("Expected to have finished reduction" errors). With lr = 0, AdamW moves nothing, weight decay
included (it is scaled by lr); the Adam moments keep accumulating, so the first unfrozen step is
already a well-scaled one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import nn

PRETRAINED, NEW = "pretrained", "new"


def pretrained_modules(net: nn.Module) -> list[nn.Module]:
    """The submodules of `net` whose weights came from a pretrained source."""
    out = []
    text, image = getattr(net, "text", None), getattr(net, "image", None)
    if text is not None and net.cfg.text.pretrained:
        out.append(text.encoder)
    if image is not None and net.cfg.image.weights:
        out.append(image.backbone)
    return out


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Biases and norm scales (every 1-D tensor) are not decayed: decay would only shrink them."""
    return param.ndim <= 1 or name.endswith(".bias")


def named_groups(net: nn.Module) -> dict[tuple[str, bool], list[tuple[str, nn.Parameter]]]:
    """(provenance, decayed) -> [(qualified name, parameter)], every trainable parameter once."""
    pretrained = {id(p) for m in pretrained_modules(net) for p in m.parameters()}
    groups: dict[tuple[str, bool], list[tuple[str, nn.Parameter]]] = {
        (kind, decay): [] for kind in (NEW, PRETRAINED) for decay in (True, False)
    }
    for name, p in net.named_parameters():
        if p.requires_grad:
            kind = PRETRAINED if id(p) in pretrained else NEW
            groups[(kind, not no_decay(name, p))].append((name, p))
    return groups


def param_groups(net: nn.Module, lr: float, pretrained_lr: float, weight_decay: float) -> list:
    """AdamW parameter groups (non-empty ones only), each with a `name` and its `kind`."""
    out = []
    for (kind, decay), named in named_groups(net).items():
        if named:
            out.append(
                {
                    "name": f"{kind}{'' if decay else '/no_decay'}",
                    "kind": kind,
                    "params": [p for _, p in named],
                    "lr": pretrained_lr if kind == PRETRAINED else lr,
                    "weight_decay": weight_decay if decay else 0.0,
                }
            )
    return out


def warmup_decay(step: int, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def group_lambdas(
    groups: list[dict], warmup: int, total: int, frozen_steps: int
) -> list[Callable[[int], float]]:
    """One LambdaLR factor per group: the shared warm-up/decay; for the pretrained groups, 0
    during the first `frozen_steps` optimizer steps, then a fresh `warmup`-step ramp."""

    def schedule(step: int) -> float:
        return warmup_decay(step, warmup, total)

    def frozen_then_schedule(step: int) -> float:
        if step < frozen_steps:
            return 0.0
        # warm up again once unfrozen: a jump to the full rate would jolt the weights the new
        # layers have just been fitted against
        rewarm = min(1.0, (step - frozen_steps + 1) / warmup) if frozen_steps else 1.0
        return rewarm * warmup_decay(step, warmup, total)

    return [frozen_then_schedule if g["kind"] == PRETRAINED else schedule for g in groups]


def group_names(groups: list[dict], net: nn.Module) -> Iterator[tuple[str, list[str]]]:
    """(group name, parameter names) per group, for logs and tests."""
    names = {id(p): n for n, p in net.named_parameters()}
    for g in groups:
        yield g["name"], [names[id(p)] for p in g["params"]]
