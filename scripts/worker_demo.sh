#!/usr/bin/env bash
# `make worker-demo` (docs/worker.md): a local redis-server, two `mmdetect worker`s on one group
# over a registry, October (data_samples/drift) published at a steady rate; halfway a second
# bundle is promoted and one worker is killed with -9; then the other is stopped with SIGTERM,
# and scripts/worker_demo_check.py shows that every listing got exactly one decision and at
# most one action. BUNDLE: the bundle to serve (default: `make demo`'s runs/demo/bundle).
set -euo pipefail
RUN=${1:-runs/worker-demo}
BUNDLE=${BUNDLE:-runs/demo/bundle}
MM=${MMDETECT:-.venv/bin/mmdetect}
PY=${PYTHON:-.venv/bin/python}
RATE=${RATE:-40}
export HF_HUB_OFFLINE=1
if [ ! -f "$BUNDLE/SHA256SUMS" ]; then
  echo "no bundle at $BUNDLE: run \`make demo\` first, or BUNDLE=DIR make worker-demo" >&2
  exit 1
fi
command -v redis-server >/dev/null || { echo "redis-server missing: make install" >&2; exit 1; }
rm -rf "$RUN" && mkdir -p "$RUN/redis"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="redis://127.0.0.1:$PORT/0"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

echo "== 1. a registry: bundle 'blue' is current; 'green' (the same model) waits to be promoted"
cp -r "$BUNDLE" "$RUN/blue" && cp -r "$BUNDLE" "$RUN/green"
promote() {  # the demo's second bundle is the same model: a refused gate is overridden
  "$MM" promote --registry "$RUN/registry" --bundle "$1" --on data_samples/drift ||
    "$MM" promote --registry "$RUN/registry" --bundle "$1" --on data_samples/drift --force \
      --reason "worker demo: the same model under another name"
}
promote "$RUN/blue" > "$RUN/promote_blue.log"

echo "== 2. redis-server on 127.0.0.1:$PORT (append-only file in $RUN/redis)"
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$RUN/redis" --appendonly yes \
  --save "" --logfile redis.log &
PIDS+=($!)
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.1; done

echo "== 3. two workers (group mmdetect), logs in $RUN/worker_{1,2}.log"
for i in 1 2; do
  "$MM" worker --broker "$URL" --stream listings --group mmdetect --registry "$RUN/registry" \
    --images-root data_samples/drift --consumer "worker-$i" --threads 1 --poll-s 0.5 \
    --claim-idle-ms 3000 --metrics-port 0 2> "$RUN/worker_$i.log" &
  PIDS+=($!)
done
W1=${PIDS[1]} W2=${PIDS[2]}

echo "== 4. publish the first half of October at $RATE events/s"
"$MM" publish data_samples/drift/listings.jsonl --broker "$URL" --rate "$RATE" --limit 250

echo "== 5. promote 'green' and kill worker-1 with -9 while it holds events"
promote "$RUN/green" > "$RUN/promote_green.log" &
PROMOTE=$!
"$MM" publish data_samples/drift/listings.jsonl --broker "$URL" --resume --limit 100 &  # a burst
PUB=$!
held=0
for _ in $(seq 3000); do  # up to a minute: kill worker-1 once it holds read, unacked events
  held=$(redis-cli -p "$PORT" xpending listings mmdetect - + 100 worker-1 | grep -cE '^[0-9]+-[0-9]+$' || true)
  [ "$held" -gt 0 ] && break
  sleep 0.02
done
kill -9 "$W1"
echo "worker-1 killed with -9 holding $held unacked events"
wait "$PUB"
wait "$PROMOTE"

echo "== 6. publish the rest; worker-2 claims worker-1's events after 3 s idle"
"$MM" publish data_samples/drift/listings.jsonl --broker "$URL" --rate "$RATE" --resume
"$PY" scripts/worker_demo_check.py --broker "$URL" --expect 500 --wait-s 300

echo "== 7. SIGTERM worker-2: it finishes its batch, acks and exits"
kill -TERM "$W2"
wait "$W2" && echo "worker-2 exited 0"
"$PY" scripts/worker_demo_check.py --broker "$URL" --expect 500 --wait-s 0 | tee "$RUN/check.txt"
