#!/usr/bin/env bash
# Issue 11 on the lent H200: dm-tune on a real "6 GB card" (docs/benchmarks/fit.md).
# Started in the background by `scripts/gpu_run.sh issue11` once the build is done; runs its
# steps in order and writes everything under $W/r (the watch calls bring it back):
#   pressure  hold all but 6144 MiB (scripts/gpu_hold.py) and 600 MiB more for the "desktop"
#   fit       llama-fit-params' answer for each model at the context floor, under that pressure
#   <model>-free  dm-tune run, --vram-budget = what the LLM really has free; export, then
#                 `profile select` (NVML, as the app) and `verify --runs 3` under the same pressure
#   <model>-over  the same with --vram-budget 6GB while only ~5.5 GB is free: real OOMs
#   anchors-<model>  scripts/anchors.py: fit's choice, Ollama's rule, the app's profiles and a sweep
#                    measured side by side with dm-tune's default tier (medians of 3 processes)
#   cpu-tier-<model> the <model>-free profile's CPU tier as exported, with op offload off, and
#                    with no GPU device (scripts/cpu_tier.py): what a GPU-free last tier costs;
#                    then all three with the GPU hidden (CUDA_VISIBLE_DEVICES empty)
# STEPS (env) picks and orders the steps; every step logs its start, end and exit status.
set -uo pipefail
W=${W:-/tmp/gpu}; R=$W/r; mkdir -p "$R"
TL=$R/timeline.txt
HOLD_LEAVE_MIB=${HOLD_LEAVE_MIB:-6144} DESKTOP_MIB=${DESKTOP_MIB:-600}
# first go (2026-11-30): pressure fit 7b-free 7b-over 13b-free (cut at trial 16: device time);
# second go: STEPS="pressure fit 13b-free 13b-over" (13b-over cut at trial 20);
# third go: STEPS="pressure fit anchors-13b 13b-over" (13b-over to trial 50, cut in confirmation);
# next: STEPS="pressure 13b-over cpu-tier-7b anchors-7b"
STEPS=${STEPS:-"pressure fit 7b-free 7b-over 13b-free 13b-over anchors-13b anchors-7b"}
declare -A MODELS=([7b]=$W/mistral-7b-shape.Q4_0.gguf [13b]=$W/llama2-13b-shape.Q4_0.gguf)
T0=${T0:-$(date +%s)}
at() { echo "+$(( $(date +%s) - T0 )) s: $*" | tee -a "$TL"; }
free_mib() { nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits -i 0 | tr -d ' '; }
dmtune() { python3 -m tuner.cli "$@"; }

step_pressure() {
  python3 scripts/gpu_hold.py --leave "$HOLD_LEAVE_MIB" --name card --ready-file "$W/card.ready" \
    > "$R/hold_card.log" 2>&1 &
  echo $! > "$W/card.pid"
  for _ in $(seq 60); do [ -f "$W/card.ready" ] && break; sleep 1; done
  python3 scripts/gpu_hold.py --take "$DESKTOP_MIB" --name desktop --ready-file "$W/desktop.ready" \
    > "$R/hold_desktop.log" 2>&1 &
  echo $! > "$W/desktop.pid"
  for _ in $(seq 60); do [ -f "$W/desktop.ready" ] && break; sleep 1; done
  cat "$W/card.ready" "$W/desktop.ready" > "$R/pressure.jsonl"
  nvidia-smi > "$R/nvidia-smi-pressure.txt" 2>&1
  echo "free_mib_after_holders $(free_mib)" >> "$R/pressure.jsonl"
  [ -f "$W/card.ready" ] && [ -f "$W/desktop.ready" ]
}

step_fit() {
  local fp=/tmp/lcp-build/bin/llama-fit-params m
  for m in 7b 13b; do
    { echo "free MiB before: $(free_mib)"
      "$fp" --model "${MODELS[$m]}" -c 4096 2> "$R/fit-$m.stderr"; echo "exit $?"
    } > "$R/fit-$m.txt"
  done
  grep -h -- "-ngl" "$R"/fit-*.txt
}

# study NAME MODEL BUDGET_MIB: the 50-trial run, then what the app would do with its profile
study() {
  local name=$1 model=$2 budget=$3 db="sqlite:///$R/$1.db" pdir="$R/profiles-$1" prof
  echo "free MiB at start: $(free_mib); budget ${budget} MiB" > "$R/$name.log"
  timeout 1500 python3 -m tuner.cli run --model "$model" --trials "${TRIALS:-50}" \
    --vram-budget "${budget}MiB" --storage "$db" --study "$name" --profile-dir "$pdir" --seed 0 \
    >> "$R/$name.log" 2>&1
  echo "run exit $?" | tee -a "$R/$name.log"
  if grep -q "made with other settings" "$R/$name.log"; then  # a cut study that can't resume
    mv "$R/$name.db" "$R/$name.refused.db"; rm -rf "$pdir"
    echo "resume refused: starting study $name afresh" | tee -a "$R/$name.log"
    timeout 1500 python3 -m tuner.cli run --model "$model" --trials "${TRIALS:-50}" \
      --vram-budget "${budget}MiB" --storage "$db" --study "$name" --profile-dir "$pdir" --seed 0 \
      >> "$R/$name.log" 2>&1
    echo "run exit $?" | tee -a "$R/$name.log"
  fi
  prof=$(ls "$pdir"/*.yaml 2>/dev/null | head -1)
  [ -n "$prof" ] || { echo "no profile exported" | tee -a "$R/$name.log"; return 1; }
  { echo "free MiB: $(free_mib)"; dmtune profile select "$prof" --model "$model"; echo "exit $?"; } \
    > "$R/$name-select.txt" 2>&1
  timeout 900 python3 -m tuner.cli verify "$prof" --model "$model" --runs 3 ${VERIFY_TIERS:---tier default} \
    > "$R/$name-verify.txt" 2>&1
  echo "verify exit $?" | tee -a "$R/$name-verify.txt"
}

anchors() {
  local m=$1 free prof plan
  prof=$(ls "$R/profiles-$m-free"/*.yaml 2>/dev/null | head -1)
  [ -n "$prof" ] || { echo "anchors-$m: no profile from $m-free"; return 1; }
  free=$(free_mib); plan=$R/anchors-$m-plan.json
  python3 scripts/anchors.py plan --model "${MODELS[$m]}" --profile "$prof" \
    --fit-answer "@$R/fit-$m.txt" --free-mib "$free" --total-mib "$HOLD_LEAVE_MIB" --floor 4096 \
    --sweep --sweep-shape "${SWEEP_SHAPE:-cross}" --out "$plan" > "$R/anchors-$m.log" 2>&1 || return 1
  python3 scripts/anchors.py measure --plan "$plan" --model "${MODELS[$m]}" \
    --storage "sqlite:///$R/$m-free.db" --study "$m-free" --spec-attr "${ANCHOR_SPEC:-confirm_spec}" --runs 3 \
    --out "$R/anchors-$m-results.json" --deadline-s "${ANCHOR_DEADLINE_S:-1500}" >> "$R/anchors-$m.log" 2>&1
}

cpu_tier() {
  local m=$1 prof plan
  prof=$(ls "$R/profiles-$m-free"/*.yaml 2>/dev/null | head -1)
  [ -n "$prof" ] || { echo "cpu-tier-$m: no profile from $m-free"; return 1; }
  plan=$R/cpu-tier-$m-plan.json
  python3 scripts/cpu_tier.py plan --profile "$prof" --model "${MODELS[$m]}" --out "$plan" \
    > "$R/cpu-tier-$m.log" 2>&1 || return 1
  python3 scripts/anchors.py measure --plan "$plan" --model "${MODELS[$m]}" \
    --storage "sqlite:///$R/$m-free.db" --study "$m-free" --spec-attr confirm_spec --runs 3 \
    --out "$R/cpu-tier-$m-results.json" >> "$R/cpu-tier-$m.log" 2>&1 || return 1
  # the same with the GPU hidden from the process: no CUDA context at all (docs/benchmarks/fit.md)
  CUDA_VISIBLE_DEVICES= python3 scripts/anchors.py measure --plan "$plan" --model "${MODELS[$m]}" \
    --storage "sqlite:///$R/$m-free.db" --study "$m-free" --spec-attr confirm_spec --runs 3 \
    --out "$R/cpu-tier-$m-hidden-results.json" >> "$R/cpu-tier-$m.log" 2>&1
}

for s in $STEPS; do
  at "step $s starts (free $(free_mib) MiB)"
  case $s in
    pressure) step_pressure || { at "no memory pressure: the holders failed, stopping"; touch "$R/DONE"; exit 1; } ;;
    fit) step_fit ;;
    *-free) study "$s" "${MODELS[${s%-free}]}" "$(( HOLD_LEAVE_MIB - DESKTOP_MIB ))" ;;
    *-over) study "$s" "${MODELS[${s%-over}]}" "$HOLD_LEAVE_MIB" ;;
    anchors-*) anchors "${s#anchors-}" ;;
    cpu-tier-*) cpu_tier "${s#cpu-tier-}" ;;
    *) echo "unknown step $s" ;;
  esac
  at "step $s ends: exit $?"
done
at "all steps done"
touch "$R/DONE"
