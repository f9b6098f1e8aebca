"""The bodies of `mmdetect review` verbs (cli.py parses their flags)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from mmdetect.common.outputs import atomic_output, atomic_write_text, check_output
from mmdetect.data.reader import read_snapshot
from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.ops.review import client as ls
from mmdetect.ops.review.estimate import estimate as estimate_traffic
from mmdetect.ops.review.files import (
    ReviewFileError,
    read_decisions,
    read_explanations,
    read_json_file,
    read_tasks,
    taxonomy_of,
)  # fmt: skip
from mmdetect.ops.review.importer import task_reviews
from mmdetect.ops.review.labeling import labeling_config
from mmdetect.ops.review.selection import Design, select
from mmdetect.ops.review.tasks import FORMAT, build_tasks


def model_version(args: argparse.Namespace) -> str:
    """--model-version, else the bundle's name and the start of its SHA256SUMS digest."""
    if args.model_version:
        return args.model_version
    if args.bundle is None:
        raise ReviewFileError(
            "give --bundle (the bundle that made the decisions) or --model-version"
        )
    sums = args.bundle / "SHA256SUMS"
    if not sums.is_file():
        raise ReviewFileError(f"{args.bundle}: not a bundle (no SHA256SUMS)")
    return f"{args.bundle.resolve().name}@{hashlib.sha256(sums.read_bytes()).hexdigest()[:12]}"


def export(args: argparse.Namespace) -> int:
    inputs = [args.decisions, args.snapshot] + [p for p in (args.explanations, args.bundle) if p]
    out = check_output(args.out, inputs)
    version = model_version(args)
    design = Design(args.pass_rate, args.hide_rate, args.uncertainty, args.seed)
    rows, taxonomy, skipped = read_decisions(args.decisions)
    snap = read_snapshot(args.snapshot, taxonomy=taxonomy, check_images=True)
    explanations = read_explanations(args.explanations) if args.explanations else None
    selected = select(rows, design)
    tasks, counts = build_tasks(selected, {x.id: x for x in snap.listings}, snap.root, version,
                                explanations, args.audit_preannotate, args.photo_url_prefix)  # fmt: skip
    tiers = {t: sum(r["decision"] == t for r in rows) for t in ("hide", "review", "pass")}
    manifest = {"format": FORMAT, "model_version": version, "design": design.to_json(),
                "decisions": str(args.decisions), "population": tiers,
                "decisions_skipped": skipped, "counts": counts.__dict__, "taxonomy": taxonomy}  # fmt: skip
    with atomic_output(out) as fh:
        json.dump(tasks, fh, ensure_ascii=False)
    atomic_write_text(out.with_name(out.name + ".manifest.json"),
                      json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")  # fmt: skip
    if args.push:
        conn = ls.client(args.push)
        project = args.project
        if project is None:
            if not args.create_project:
                raise ReviewFileError("--push needs --project ID or --create-project TITLE")
            project = ls.create_project(conn, args.create_project, labeling_config(taxonomy))
        manifest["pushed"] = {"url": args.push, "project": project,
                              "tasks": ls.push_tasks(conn, project, tasks)}  # fmt: skip
    print(json.dumps({k: manifest[k] for k in ("model_version", "population", "counts")}
                     | ({"pushed": manifest["pushed"]} if "pushed" in manifest else {}),
                     ensure_ascii=False, indent=2))  # fmt: skip
    return 0


def import_(args: argparse.Namespace) -> int:
    inputs = [args.tasks] + ([args.export] if args.export else [])
    out = check_output(args.out, inputs)
    tasks = read_tasks(args.tasks)
    taxonomy = taxonomy_of(tasks, args.tasks)
    if args.pull:
        if args.project is None:
            raise ReviewFileError("--pull needs --project ID")
        data = ls.pull_export(ls.client(args.pull), args.project)
    elif args.export is not None:
        data = read_json_file(args.export)
    else:
        raise ReviewFileError("give the Label Studio export file, or --pull URL --project ID")
    rows, report = task_reviews(data, {t["listing_id"]: t for t in tasks}, taxonomy)
    with atomic_output(out) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(json.dumps(report.to_json(taxonomy), ensure_ascii=False, indent=2))
    return 0


def estimate(args: argparse.Namespace) -> int:
    tasks = read_tasks(args.tasks)
    taxonomy = taxonomy_of(tasks, args.tasks)
    from mmdetect.data.jsonl import iter_jsonl

    reviews = [row for _, row, problem in iter_jsonl(args.reviews)
               if problem is None and isinstance(row, dict) and isinstance(row.get("labels"), list)]  # fmt: skip
    result = estimate_traffic(reviews, tasks, taxonomy)
    text = json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if args.out:
        atomic_write_text(check_output(args.out, [args.reviews, args.tasks]), text)
    print(text, end="")
    return 0


def config(args: argparse.Namespace) -> int:
    taxonomy = list(DEFAULT_TAXONOMY)
    if args.bundle is not None:
        meta = read_json_file(Path(args.bundle) / "meta.json")
        taxonomy = meta.get("taxonomy") if isinstance(meta, dict) else None
        if not isinstance(taxonomy, list) or not all(isinstance(c, str) for c in taxonomy):
            raise ReviewFileError(f"{args.bundle}/meta.json: no taxonomy list")
    xml = labeling_config(taxonomy)
    if args.out:
        atomic_write_text(check_output(args.out, [args.bundle] if args.bundle else []), xml)
    else:
        print(xml, end="")
    return 0
