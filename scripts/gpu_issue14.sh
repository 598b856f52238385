#!/usr/bin/env bash
# Issue 14 on a lent 2-GPU H200 machine (kind nvidia-h200-x2): one worker per GPU against one
# GPU, on the Mistral-7B-shaped model (fits whole in the 6 GB budget, so the core split does not
# decide the result). Started in the background by `scripts/gpu_run.sh issue14` once the build
# is done; writes everything under $W/r (the watch calls bring it back; docs/scaling.md):
#   two    dm-tune run --gpus 0,1: 50 trials on one study, one worker per GPU
#   one    dm-tune run on GPU 0 alone (CUDA_VISIBLE_DEVICES=0), all cores: 50 trials
#   agree  the two-GPU study's top 3 settings measured on both GPUs at once, each on its share of
#          the cores as the workers ran (scripts/gpu_agree.py plan, then scripts/anchors.py
#          measure x2, 3 fresh processes per setting, then gpu_agree.py compare)
# STEPS (env) picks and orders the steps; every step logs its start, end, exit status and wall.
# Without GPUs (issue 14's fallback: two CPU workers on separate cores), NO_GPU=1 runs step two
# through scripts/cpu_workers.py (NVML's list given), and MODEL names the GGUF:
#   NO_GPU=1 MODEL=~/.cache/dm-tune/models/SmolLM2-135M-Instruct.Q4_1.gguf TRIALS=30 \
#     W=/tmp/cpu14 bash scripts/gpu_issue14.sh
set -uo pipefail
W=${W:-/tmp/gpu}; R=$W/r; mkdir -p "$R"
TL=$R/timeline.txt
STEPS=${STEPS:-"two one agree"}
M7=${MODEL:-$W/mistral-7b-shape.Q4_0.gguf}
DMRUN=(python3 -m tuner.cli run)
T0=${T0:-$(date +%s)}
at() { echo "+$(( $(date +%s) - T0 )) s: $*" | tee -a "$TL"; }
run() {  # NAME [ARGS...]: a 50-trial study NAME, its wall time in the timeline
  local name=$1; shift
  local t=$(date +%s)
  timeout 1500 "${DMRUN[@]}" --model "$M7" --trials "${TRIALS:-50}" --vram-budget 6GB \
    --storage "sqlite:///$R/$name.db" --study "$name" --seed 0 --no-export "$@" > "$R/$name.log" 2>&1
  local rc=$?
  echo "exit $rc, wall $(( $(date +%s) - t )) s" | tee -a "$R/$name.log"
  return $rc
}
agree() {
  local n half
  n=$(nproc); half=$(( n / 2 ))
  python3 scripts/gpu_agree.py plan --storage "sqlite:///$R/two.db" --study two --top 3 \
    --model "$M7" --out "$R/agree-plan.json" > "$R/agree.log" 2>&1 || return 1
  for g in 0 1; do
    local lo=$(( g * half )) hi=$(( g * half + half - 1 ))
    CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=$g taskset -c "$lo-$hi" \
      python3 scripts/anchors.py measure --plan "$R/agree-plan.json" --model "$M7" \
      --storage "sqlite:///$R/two.db" --study two --runs 3 --out "$R/agree-gpu$g.json" \
      > "$R/agree-gpu$g.log" 2>&1 &
  done
  wait
  python3 scripts/gpu_agree.py compare --results "$R/agree-gpu0.json" \
    --results "$R/agree-gpu1.json" --out "$R/agree.md" >> "$R/agree.log" 2>&1
}

{ nvidia-smi -L; nproc; } > "$R/gpus.txt" 2>&1
for s in $STEPS; do
  at "step $s starts"
  case $s in
    two) if [ -n "${NO_GPU:-}" ]; then
           DMRUN=(python3 scripts/cpu_workers.py); run two; DMRUN=(python3 -m tuner.cli run)
         else run two --gpus 0,1; fi ;;
    one) CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0 run one ;;
    agree) agree ;;
    *) echo "unknown step $s" ;;
  esac
  at "step $s ends: exit $?"
done
at "all steps done"
touch "$R/DONE"
