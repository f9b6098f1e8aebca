"""Write tests/fixtures/labelstudio/: tasks made by `mmdetect review export`'s code, imported into
a REAL Label Studio, annotated through its API as reviewers would (one annotator, two who agree,
two who split, a skip, a changed answer, an untouched task), and the server's own JSON export.

    LABEL_STUDIO_URL=http://127.0.0.1:8080 LABEL_STUDIO_API_KEY=TOKEN \
      python scripts/labelstudio_fixture.py --out tests/fixtures/labelstudio

The Label Studio server: see docs/review.md ("Start Label Studio"). The decisions are made up
(fixed tiers and scores): the fixture is about Label Studio's format, not about a model.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mmdetect.data.reader import read_snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.ops.review import client as ls
from mmdetect.ops.review.labeling import labeling_config
from mmdetect.ops.review.selection import Selected
from mmdetect.ops.review.tasks import build_tasks

TIERS = ["review", "review", "review", "pass", "pass", "hide", "review"]
PROBS = {"review": 1.0, "pass": 0.01, "hide": 0.1}


def decision(listing_id: str, tier: str, k: int) -> dict:
    scores = {c: round(((k + 1) * (j + 3)) % 17 / 20, 4) for j, c in enumerate(DEFAULT_TAXONOMY)}
    tiers = {c: "pass" for c in DEFAULT_TAXONOMY}
    if tier != "pass":
        tiers[DEFAULT_TAXONOMY[k % len(DEFAULT_TAXONOMY)]] = tier
    return {"id": listing_id, "decision": tier, "priority": max(scores.values()),
            "decisions": tiers, "scores": scores}  # fmt: skip


def choices(*labels: str) -> list[dict]:
    return [{"from_name": "labels", "to_name": "title", "type": "choices",
             "value": {"choices": list(labels)}}]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--snapshot", type=Path, default=Path("data_samples/incoming"))
    args = p.parse_args()
    snap = read_snapshot(args.snapshot)
    listings = snap.listings[: len(TIERS)]
    selected = [Selected(x.id, t, "review" if t == "review" else "audit", PROBS[t],
                         decision(x.id, t, k)) for k, (x, t) in enumerate(zip(listings, TIERS, strict=True))]  # fmt: skip
    tasks, _ = build_tasks(selected, {x.id: x for x in listings}, snap.root, "fixture-bundle@0")
    conn = ls.client(os.environ["LABEL_STUDIO_URL"])
    project = ls.create_project(conn, f"mmdetect fixture {int(time.time())}",
                                labeling_config(DEFAULT_TAXONOMY))  # fmt: skip
    ls.push_tasks(conn, project, tasks)
    ids = sorted(t.id for t in conn.tasks.list(project=project))
    stamp = int(time.time())
    other = conn.users.create(username=f"second{stamp}", email=f"second{stamp}@example.com",
                              password="secret123x")  # fmt: skip
    note = [{"from_name": "note", "to_name": "title", "type": "textarea",
             "value": {"text": ["<script>alert(1)</script> seller | admits 偽物"]}}]  # fmt: skip
    conn.annotations.create(id=ids[0], result=choices("counterfeit") + note)  # one annotator
    conn.annotations.create(id=ids[1], result=choices("adult"))  # two who agree
    conn.annotations.create(id=ids[1], result=choices("adult"), completed_by=other.id)
    conn.annotations.create(id=ids[2], result=choices("game_account"))  # two who split
    conn.annotations.create(id=ids[2], result=choices("none"), completed_by=other.id)
    conn.annotations.create(id=ids[3], result=[], was_cancelled=True)  # skipped
    changed = conn.annotations.create(id=ids[4], result=choices("none"))  # changed later
    time.sleep(1.5)
    conn.annotations.update(id=changed.id, result=choices("stolen_goods"))
    conn.annotations.create(id=ids[5], result=choices("counterfeit", "keyword_stuffing"))
    # ids[6]: nobody annotated it
    export = ls.pull_export(conn, project)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tasks.json").write_text(json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    (args.out / "export.json").write_text(json.dumps(export, ensure_ascii=False, indent=1) + "\n")
    print(f"project {project}: {len(export)} tasks exported to {args.out}")


if __name__ == "__main__":
    main()
