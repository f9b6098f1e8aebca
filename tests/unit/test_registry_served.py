"""One rule for `current` (issue #27, item 6): `mmdetect registry` and `mmdetect serve
--registry` both go through registry.served_bundle, so a hand-edited pointer (a bundle never
promoted, a bundles/ entry linked from outside, an absolute path) is refused by both, with the
same one-line reason; the service keeps serving the old bundle and /readyz shows why (item 7:
one line, also for a multi-line load error)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmdetect.artifacts.bundle_format import write_checksums
from mmdetect.artifacts.registry_layout import BUNDLES, CURRENT, served_bundle
from mmdetect.cli.registry import registry_main
from mmdetect.ops.registry import RegistryError, current_problem
from mmdetect.serving.reload import Active, Slot, Watcher, one_line
from tests.unit.test_http_switch import record_promotion


def fake_bundle(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.ts").write_bytes(b"not a model: the loader here is a fake")
    write_checksums(path)
    return path


def point(root: Path, target: str) -> None:
    """A hand edit of `current` (ln -sfn TARGET current)."""
    tmp = root / ".hand-edit"
    os.symlink(target, tmp)
    os.replace(tmp, root / CURRENT)


@pytest.fixture
def registry(tmp_path) -> Path:
    root = tmp_path / "registry"
    fake_bundle(root / BUNDLES / "good")
    record_promotion(root, "good")
    point(root, f"{BUNDLES}/good")
    fake_bundle(root / BUNDLES / "rogue")  # copied in by hand, never promoted
    fake_bundle(tmp_path / "outside")
    os.symlink(tmp_path / "outside", root / BUNDLES / "linked")
    record_promotion(root, "linked")  # even a recorded name: its directory is outside
    return root


def hand_edits(registry: Path) -> dict[str, tuple[str, str]]:
    outside = str(registry.parent / "outside")
    return {"never promoted": (f"{BUNDLES}/rogue", "never promoted"),
            "linked from outside": (f"{BUNDLES}/linked", "a symlink"),
            "absolute path": (outside, "not to bundles/<name>"),
            "dot-dot": (f"{BUNDLES}/../{BUNDLES}/good", "not to bundles/<name>"),
            "missing": (f"{BUNDLES}/gone", "does not exist")}  # fmt: skip


def test_registry_and_service_refuse_hand_edited_pointers_alike(registry, capsys):
    assert served_bundle(registry) == (registry / BUNDLES / "good").resolve()
    assert current_problem(registry) is None
    loaded: list[str] = []

    def load(path: Path, name: str) -> Active:
        loaded.append(name)
        return Active(name, path, None, 0.0)  # type: ignore[arg-type]

    slot = Slot()
    watcher = Watcher(registry, slot, load)
    assert watcher.check_once() and slot.active.name == "good"
    for case, (target, words) in hand_edits(registry).items():
        point(registry, target)
        with pytest.raises(RegistryError, match=words) as rule:
            served_bundle(registry)
        assert current_problem(registry) == str(rule.value), case
        assert registry_main(["--registry", str(registry)]) == 1
        assert f"error: {rule.value}" in capsys.readouterr().err
        assert not watcher.check_once(), case
        assert slot.active.name == "good" and loaded == ["good"], case  # never even loaded
        assert slot.refused["reason"] == str(rule.value) and "\n" not in str(rule.value), case
        point(registry, f"{BUNDLES}/good")  # back: the refusal is over
        assert not watcher.check_once() and slot.refused is None, case


def test_a_refusal_is_logged_and_counted_once(registry):
    changes: list[bool] = []
    slot = Slot()
    watcher = Watcher(
        registry,
        slot,
        lambda p, n: Active(n, p, None, 0.0),
        on_change=lambda s, r: changes.append(r),
    )  # type: ignore[arg-type]
    watcher.check_once()
    point(registry, f"{BUNDLES}/rogue")
    for _ in range(3):
        watcher.check_once()
    assert changes == [False, True]


def test_readyz_reason_is_one_line(registry):
    """A bundle whose load fails with a traceback-long message: /readyz gets its first line."""
    slot = Slot()
    first = {"done": False}

    def load(path: Path, name: str) -> Active:
        if first["done"]:
            raise RuntimeError("The following operation failed in the TorchScript interpreter.\n"
                               "Traceback of TorchScript (most recent call last):\n"
                               '  File "code/__torch__.py", line 12, in forward\n'
                               "RuntimeError: shape mismatch")  # fmt: skip
        first["done"] = True
        return Active(name, path, None, 0.0)  # type: ignore[arg-type]

    watcher = Watcher(registry, slot, load)
    watcher.check_once()
    fake_bundle(registry / BUNDLES / "broken")
    record_promotion(registry, "broken")
    point(registry, f"{BUNDLES}/broken")
    assert not watcher.check_once() and slot.active.name == "good"
    reason = slot.refused["reason"]
    assert reason == ("The following operation failed in the TorchScript interpreter. "
                      "(+3 lines in the log)")  # fmt: skip
    assert one_line(ValueError("")) == "ValueError"
