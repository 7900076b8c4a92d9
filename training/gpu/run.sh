#!/usr/bin/env bash
# Runs on the lent GPU machine, in the copy of the working tree there (training/gpu/README.md).
#   run.sh receive           every call but the last: its part of .gpu/ has arrived, nothing more
#   run.sh train CONFIG...   the last call: join the parts, install the wheels, convert the base,
#                            time the SFT step, then train, eval and export each config in turn while
#                            time is left; everything worth keeping goes to $OUT (fetch.sh unpacks it)
set -uo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-}
shift || true
mapfile -t parts < <(ls .gpu/*/part-* 2>/dev/null | sort -t/ -k2,2n)
case $mode in
  receive) echo "received: ${parts[*]:-nothing}"; exit 0 ;;
  train) ;;
  *) echo "usage: run.sh receive | run.sh train CONFIG..." >&2; exit 2 ;;
esac
(( $# > 0 )) || { echo "run.sh train: name at least one training config" >&2; exit 2; }
out=${OUT:?OUT must name the folder whose files come back}
budget=${GPU_BUDGET_S:-540}  # the command's own limit: keep it under the call's timeout_s
started=$(date +%s)
left() { echo $(( budget - ($(date +%s) - started) )); }
step() { echo "== $(date +%T) [$(left) s left] $*"; }

train() {
step "joining ${#parts[@]} parts"
sums=$(ls .gpu/*/payload.sha256 2>/dev/null | head -1)
[[ -n $sums ]] || { echo "no payload.sha256: the last part did not travel" >&2; exit 3; }
cat "${parts[@]}" > /tmp/payload.tar.xz
if ! echo "$(cut -d' ' -f1 "$sums")  /tmp/payload.tar.xz" | sha256sum -c --quiet; then
  echo "the parts do not make the payload: an earlier part is missing (the machine went cold between" \
       "calls) or stale; pack again and make every call, each within 30 s of the one before" >&2
  exit 3
fi
kit=/tmp/lref-kit
rm -rf "$kit" && mkdir -p "$kit" && tar -xJf /tmp/payload.tar.xz -C "$kit" && (cd "$kit" && sha256sum -c --quiet manifest.sha256) || exit 3

step "installing $(ls "$kit"/whl | tr '\n' ' ')"
# PIP_EXTRA: e.g. "--python-version 3.12 --only-binary=:all:" for a dry run under another Python
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ${PIP_EXTRA:-} "$kit"/whl/*.whl || exit 3
export PYTHONPATH=/tmp/site:$PWD LREF_CACHE=/tmp/lref-cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p ../shared/data/homedepot && cp -n "$kit"/data/*.jsonl ../shared/data/homedepot/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"

step "converting the base model"
python3 - "$kit"/*.gguf <<'EOF' || exit 3
import sys
from pathlib import Path

from reranker.models.default_model import MODEL_DIR_NAME
from reranker.models.judge import weights_sha256
from reranker.models.loading import cache_dir, convert_gguf

target = convert_gguf(Path(sys.argv[1]), cache_dir() / "models" / MODEL_DIR_NAME)
print(target, "weights sha256", weights_sha256(target))
EOF

step "SFT speed (bench/train_speed.py, eager: compile time on this GPU was never measured)"
# GPU_ROWS_PER_S: a rate an earlier run measured for this config's batch; the probe is then skipped
speed=${GPU_ROWS_PER_S:-$out/train_speed.json}
# GPU_SPEED_VARIANTS / GPU_SPEED_ROWS: other variants to time (bench/train_speed.py's syntax), e.g. a
# larger batch or compiled layers; fit.py reads the first one's rate
[[ -n ${GPU_ROWS_PER_S:-} ]] || timeout "${GPU_SPEED_S:-100}" python3 bench/train_speed.py --rows "${GPU_SPEED_ROWS:-2048}" \
  --variants "${GPU_SPEED_VARIANTS:-bf16:compact:b32}" --out "$out/train_speed.json" || echo "train_speed did not finish (rc $?)"

reserve=${GPU_RESERVE_S:-120}  # after SFT: merge, eval on all of dev, export, pack
for config in "$@"; do
  name=$(basename "$config" .yaml)
  if (( $(left) < reserve + 60 )); then step "skipping $config: too little time left"; continue; fi
  sft_s=$(( $(left) - reserve ))
  step "training $config: ${sft_s} s for SFT"
  fitted=$(python3 training/gpu/fit.py "$config" "$speed" "$sft_s") || fitted=$config
  # a config that distils the lexical teacher finds the one pack.sh fit, where its sft stage looks
  python3 - "$fitted" "$kit/data/teacher.jsonl" <<'EOF'
import shutil
import sys
from pathlib import Path

from training.config import load_config

c, teacher = load_config(sys.argv[1]), Path(sys.argv[2])
if c.sft.teacher == "lexical" and teacher.exists():
    (c.out / "sft").mkdir(parents=True, exist_ok=True)
    shutil.copy(teacher, c.out / "sft" / "teacher.jsonl")
    print("the lexical teacher from pack.sh:", c.out / "sft" / "teacher.jsonl")
EOF
  cp "$fitted" "$out/$name.fit.yaml" 2>/dev/null || true
  # the fit comes from a short probe: the deadline keeps a slower run inside the budget all the same
  LREF_SFT_DEADLINE=$(( $(date +%s) + sft_s )) timeout $(( $(left) - 20 )) python3 - "$fitted" <<'EOF'
import sys

from training.config import load_config
from training.runner import Run

print(Run(load_config(sys.argv[1])).run())
EOF
  echo "$config: rc $?"
  # the judge dir and the run's reports, not the merged models, checkpoints or rows: a few MB
  paths=$(python3 - "$config" <<'EOF'
import sys
from pathlib import Path

from training.config import load_config

c = load_config(sys.argv[1])
judge = c.path(c.export.judge_dir) if c.export.judge_dir else c.out / "export/judge"
print(*(Path(p).resolve().relative_to(Path.cwd()) for p in (c.out, judge) if Path(p).exists()))
EOF
)
  tar -cJf "/tmp/$name.tar.xz" --exclude='*/model' --exclude='checkpoint-*' --exclude='*/final' \
    --exclude='*/data/*.jsonl' --exclude='*/select/*.jsonl' --exclude='*/cot/*.jsonl' --exclude='*/sft/teacher.jsonl' $paths
  split -b 15m -d -a 1 "/tmp/$name.tar.xz" "$out/$name.tar.xz."
done
step "done"
ls -la "$out"
}

train "$@" 2>&1 | tee -a "$out/log.txt"  # the log comes back with the results, also when a step fails
exit "${PIPESTATUS[0]}"
