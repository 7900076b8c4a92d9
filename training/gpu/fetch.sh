#!/usr/bin/env bash
# Back on this machine: unpack what run.sh left in $OUT (the device tool's files_at folder) into
# runs/gpu/NAME/ and check that each judge loads here, through the code users run, on this base.
#   bash training/gpu/fetch.sh FILES_AT
set -euo pipefail
cd "$(dirname "$0")/../.."
from=${1:?usage: fetch.sh FILES_AT (the folder the device tool put the files in)}
[[ -d $from ]] || { echo "fetch: $from is not a folder" >&2; exit 2; }
lref=${LREF:-.venv/bin/lref}
[[ -f $from/log.txt ]] && cp "$from/log.txt" "$from/train_speed.json" runs/ 2>/dev/null || true
for first in "$from"/*.tar.xz.0; do
  [[ -e $first ]] || { echo "fetch: no results in $from (see its log.txt)" >&2; exit 1; }
  name=$(basename "$first" .tar.xz.0)
  rm -rf "runs/gpu/$name" && mkdir -p "runs/gpu/$name"
  cat "$from/$name".tar.xz.? | tar -xJf - -C "runs/gpu/$name"
  echo "== $name: runs/gpu/$name"
  find "runs/gpu/$name" -path '*/eval/metrics.json' -exec python3 -c \
    "import json, sys; m = json.load(open(sys.argv[1])); print({k: m[k] for k in ('rows', 'spearman', 'macro_f1', 'chosen_beta', 'label_weights') if k in m})" {} \;
  for card in $(find "runs/gpu/$name" -name judge.json); do
    "$lref" score --judge "$(dirname "$card")" "cordless drill" "DEWALT 20-Volt MAX Cordless Drill/Driver Kit" "Drill Bit Set (20-Piece)"
  done
done
