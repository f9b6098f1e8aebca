"""Check the worker's streams: every listing exactly one decision, at most one action.

python scripts/worker_demo_check.py --broker redis://127.0.0.1:PORT/0 --expect 500 [--wait-s 300]
(used by scripts/worker_demo.sh). Waits up to --wait-s for --expect listings to be decided and
nothing pending, then prints the counts; exit 1 if a listing has no decision or two, or two
actions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import redis


def listing_ids(client: redis.Redis, stream: str) -> list[str]:
    return [f[b"listing_id"].decode() for _, f in client.xrange(stream)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", required=True)
    p.add_argument("--stream", default="listings")
    p.add_argument("--group", default="mmdetect")
    p.add_argument("--expect", type=int, required=True, help="listings that must be decided")
    p.add_argument("--wait-s", type=float, default=0.0)
    args = p.parse_args()
    client = redis.Redis.from_url(args.broker)
    deadline = time.monotonic() + args.wait_s
    while True:
        decided = len(set(listing_ids(client, "decisions")))
        pending = client.xpending(args.stream, args.group)["pending"]
        if decided >= args.expect and pending == 0 or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    decisions = Counter(listing_ids(client, "decisions"))
    actions = Counter(listing_ids(client, "actions") + listing_ids(client, "review_queue"))
    bundles = Counter(f[b"bundle"].decode() for _, f in client.xrange("decisions"))
    tiers = Counter(json.loads(f[b"decision"])["decision"] for _, f in client.xrange("decisions"))
    group = next(g for g in client.xinfo_groups(args.stream) if g["name"].decode() == args.group)
    print(f"events published: {client.xlen(args.stream)}; listings decided: {len(decisions)} "
          f"of {args.expect}; pending: {group['pending']}; lag: {group.get('lag')}")  # fmt: skip
    print(f"decisions per listing: {dict(sorted(Counter(decisions.values()).items()))} "
          f"(count: listings); by bundle: {dict(bundles)}; by tier: {dict(tiers)}")  # fmt: skip
    print(f"actions: hide {client.xlen('actions')}, review {client.xlen('review_queue')}; "
          f"most actions for one listing: {max(actions.values(), default=0)}; "
          f"dead letters: {client.xlen(args.stream + '.dead')}")  # fmt: skip
    ok = len(decisions) == args.expect and set(decisions.values()) == {1}
    ok = ok and max(actions.values(), default=0) <= 1
    print("OK: every listing exactly one decision, at most one action" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
