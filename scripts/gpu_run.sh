#!/usr/bin/env bash
# The measured GPU run (issue 3), on the lent NVIDIA machine, from the repo root:
#   phase1: build llama-cpp-python with CUDA, write the Mistral-7B-shaped GGUF, run the `gpu`
#           tests, doctor, record a CUDA log, then start the 50-trial study in the background.
#   phase2: wait for the study (or resume it from .devcarry/gpu.db on a fresh machine), then
#           re-measure the profiles (scripts/bench_profiles.py) and verify the exported profile.
#   phase3: record the sampler benchmark's GPU grid (scripts/record_grid.py), then verify.
#   issue9: (run 4) one command: build, write a 13B-class (Llama-2-13B-shaped) Q4_0 GGUF, run the
#           study with a 6 GB budget, confirm and export before the 10-minute limit.
#   issue11: build llama-cpp-python and llama-fit-params (scripts/gpu_build.sh), write the 7B- and
#           13B-class GGUFs, start scripts/gpu_issue11.sh (the "6 GB card" steps) in the
#           background and watch it until the call's time is up; `watch` (the next calls, within
#           30 s of the previous one so the machine stays warm) goes on watching. Each call brings
#           back r.tgz (studies, profiles, logs, timeline) and the timeline.
#   issue14: the same build and GGUFs on a 2-GPU machine (kind nvidia-h200-x2), then
#           scripts/gpu_issue14.sh (one worker per GPU against one GPU, and the GPUs' agreement).
# Results go to $OUT (gpu.db, logs, JSON) and are written up in docs/benchmarks/gpu.md.
set -uo pipefail
phase="${1:?phase1|phase2|phase3|reexport|verify|issue9|issue11|issue14|watch}"
T0=$(date +%s)
W=/tmp/gpu; mkdir -p "$W" "$OUT"
export PYTHONPATH=/tmp/site:$PWD DM_TUNE_CACHE=/tmp/dmcache PYTHONUNBUFFERED=1
export DM_TUNE_TOKENIZER_GGUF=$PWD/.devcarry/tokenizer.gguf
MODEL=$W/mistral-7b-shape.Q4_0.gguf
DB=sqlite:///$W/gpu.db
RUN=(python3 -m tuner.cli run --model "$MODEL" --trials 50 --vram-budget 6GB --storage "$DB"
     --profile-dir "$W/profiles" --seed 0)
ready() { python3 -c 'import llama_cpp,sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)' 2>/dev/null; }
prepare() {
  bash .devcarry/build_cuda.sh 2>&1 | tail -3
  [ -f "$MODEL" ] || python3 scripts/make_gguf.py "$MODEL" --shape mistral-7b --tokenizer-from "$DM_TUNE_TOKENIZER_GGUF"
  cat /proc/meminfo | head -1; sync; cat "$MODEL" > /dev/null  # into the page cache
}
collect() { cp "$W/gpu.db" "$OUT/" 2>/dev/null; cp "$W/run.log" "$OUT/" 2>/dev/null; cp "$W"/profiles/*.yaml "$OUT/" 2>/dev/null; true; }
watch() {  # until the chain is done or the call's time is nearly up; then bring results back
  local limit=${WATCH_END_S:-570}
  while [ ! -f "$W/r/DONE" ] && [ $(( $(date +%s) - T0 )) -lt "$limit" ]; do sleep 3; done
  tar czf "$OUT/r.tgz" -C "$W" r 2>/dev/null
  cp "$W/r/timeline.txt" "$OUT/" 2>/dev/null
  tail -n 4 "$W"/r/*.log 2>/dev/null | tail -n 40
}
if [ "$phase" = issue11 ] || [ "$phase" = issue14 ]; then
  M7=$W/mistral-7b-shape.Q4_0.gguf M13=$W/llama2-13b-shape.Q4_0.gguf
  { nvidia-smi; nproc; free -g; python3 --version; lscpu; } > "$OUT/machine.txt" 2>&1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .devcarry/wheels/*.whl
  # the GGUFs are written and hashed (as dm-tune will) while CUDA compiles
  ( [ -f "$M7" ] || python3 scripts/make_gguf.py "$M7" --shape mistral-7b --tokenizer-from "$DM_TUNE_TOKENIZER_GGUF"
    [ -f "$M13" ] || python3 scripts/make_gguf.py "$M13" --shape mistral-7b --blocks 40 --hidden 5120 \
      --ffn 13824 --heads 40 --kv-heads 40 --context-length 4096 --quant Q4_0 --tokenizer-from "$DM_TUNE_TOKENIZER_GGUF"
    python3 -c "import sys; from pathlib import Path; from tuner.model_file import sha256_cached as h; [print(p, h(Path(p))) for p in sys.argv[1:]]" "$M7" "$M13"
  ) > "$W/gguf.log" 2>&1 &
  gpid=$!
  bash scripts/gpu_build.sh 2>&1 | tail -4
  wait "$gpid"; tail -3 "$W/gguf.log"; ls -l "$W"/*.gguf
  # studies of an earlier go (docs/benchmarks/data/gpu/run5-pressure): a cut study resumes
  # (`dm-tune run` again), the anchors measure against the exported tiers
  prev=docs/benchmarks/data/gpu/run5-pressure; mkdir -p "$W/r"
  for s in 7b-free 7b-over 13b-free 13b-over; do
    [ -f "$prev/$s.db" ] && [ ! -f "$W/r/$s.db" ] || continue
    cp "$prev/$s.db" "$W/r/"
    [ -f "$prev/profile-$s.yaml" ] || continue
    mkdir -p "$W/r/profiles-$s"; cp "$prev/profile-$s.yaml" "$W/r/profiles-$s/$s.yaml"
  done
  # the chain runs from a copy: a later call's fresh working tree must not change it under bash
  rm -rf "$W/repo"; mkdir -p "$W/repo"; cp -r scripts tuner objectives configs pyproject.toml "$W/repo/"  # pyproject.toml: a checkout (tuner.paths)
  cp .devcarry/tokenizer.gguf "$W/"; export DM_TUNE_TOKENIZER_GGUF=$W/tokenizer.gguf
  ( cd "$W/repo" && PYTHONPATH=/tmp/site:$W/repo T0=$T0 W=$W STEPS="${STEPS:-}" setsid nohup bash "scripts/gpu_$phase.sh" \
      > "$W/chain.out" 2>&1 & )
  watch
elif [ "$phase" = watch ]; then
  watch
elif [ "$phase" = issue9 ]; then
  # Issue 9's case: a 13B-class Q4_0 (7.4 GB, larger than the budget) with --vram-budget 6GB.
  # Layout of the 600 s a device command may run: the GGUF is written (and hashed, as dm-tune
  # would) while llama-cpp-python builds; the study is stopped cleanly (SIGINT: trials kept) at
  # STUDY_END_S unless it is already confirming; then `dm-tune export --confirm` finishes the
  # job; at END_S whatever runs is stopped and a profile is exported from the study's numbers.
  MODEL=$W/llama2-13b-shape.Q4_0.gguf
  DB=sqlite:///$W/issue9.db
  LOG=$W/run.log; TL=$OUT/timeline.txt
  STUDY_END_S=${STUDY_END_S:-400}; END_S=${END_S:-565}
  at() { echo "+$(( $(date +%s) - T0 )) s: $*" | tee -a "$TL"; }
  { nvidia-smi; nproc; free -g; python3 --version; } > "$OUT/machine.txt" 2>&1
  if [ ! -f "$MODEL" ]; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/pre-site .devcarry/wheels/*.whl 2>/dev/null
    (export PYTHONPATH=/tmp/pre-site:$PWD
     python3 scripts/make_gguf.py "$MODEL" --shape mistral-7b --blocks 40 --hidden 5120 --ffn 13824 \
       --heads 40 --kv-heads 40 --context-length 4096 --quant Q4_0 --tokenizer-from "$DM_TUNE_TOKENIZER_GGUF"
     python3 -c "from pathlib import Path; from tuner.model_file import sha256_cached as h; print('sha256', h(Path('$MODEL')))"
    ) > "$W/gguf.log" 2>&1 &
    gpid=$!
  fi
  [ -n "${SKIP_BUILD:-}" ] || bash .devcarry/build_cuda.sh 2>&1 | tail -3 | tee -a "$TL"
  [ -n "${gpid:-}" ] && wait "$gpid"; cat "$W/gguf.log" >> "$TL" 2>/dev/null
  at "built, GGUF written: $(ls -l "$MODEL" | awk '{print $5}') bytes"
  RUN9=(python3 -m tuner.cli run --model "$MODEL" --trials "${TRIALS:-40}" --vram-budget 6GB
        --storage "$DB" --profile-dir "$W/profiles" --seed 0 --confirm 2 --confirm-runs 1)
  EXPORT9=(python3 -m tuner.cli export --storage "$DB" --profile-dir "$W/profiles")
  echo "\$ ${RUN9[*]}" > "$LOG"
  # a background job of a script ignores SIGINT; let Python turn it into KeyboardInterrupt again
  python3 -c 'import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
    "${RUN9[@]}" >> "$LOG" 2>&1 &
  pid=$!; at "study started (pid $pid)"
  alive() { [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; }
  stop() {  # SIGINT, then wait up to 20 s for a clean exit
    kill -INT "$pid" 2>/dev/null; local i=0
    while alive && [ $i -lt 20 ]; do sleep 1; i=$((i + 1)); done
    alive && kill -KILL "$pid" 2>/dev/null
  }
  now() { echo $(( $(date +%s) - T0 )); }
  while alive && [ "$(now)" -lt "$STUDY_END_S" ]; do sleep 2; done
  if alive && ! grep -q '^Confirming\|^Profile written' "$LOG"; then
    at "study stopped at its deadline (SIGINT)"; stop
    if ! grep -q '^Profile written' "$LOG"; then
      echo "\$ ${EXPORT9[*]} --confirm 2 --confirm-runs 1" >> "$LOG"
      python3 -c 'import os,signal,sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
        "${EXPORT9[@]}" --confirm 2 --confirm-runs 1 >> "$LOG" 2>&1 &
      pid=$!; at "export with confirmation started (pid $pid)"
    fi
  fi
  while alive && [ "$(now)" -lt "$END_S" ]; do sleep 2; done
  if alive; then at "stopped at the end of the time (SIGINT)"; stop; fi
  wait "$pid"; at "exit status $? (pid $pid)"
  cp "$W/issue9.db" "$LOG" "$OUT/" 2>/dev/null
  if ! ls "$W"/profiles/*.yaml > /dev/null 2>&1; then
    at "no profile yet: export from the study's numbers (no confirmation)"
    echo "\$ ${EXPORT9[*]}" >> "$LOG"; timeout 20 "${EXPORT9[@]}" >> "$LOG" 2>&1
  fi
  cp "$W/issue9.db" "$LOG" "$OUT/" 2>/dev/null; cp "$W"/profiles/*.yaml "$OUT/" 2>/dev/null
  at "collected"
elif [ "$phase" = phase1 ]; then
  { nvidia-smi; nproc; free -g; } > "$OUT/machine.txt" 2>&1
  prepare
  echo "prepared at +$(( $(date +%s) - T0 )) s"
  if [ -z "${SKIP_CHECKS:-}" ]; then  # SKIP_CHECKS=1: straight to the study (device time is short)
  python3 -m pytest -p no:cacheprovider -m gpu -q tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT/gpu_tests.log"
  python3 -m tuner.cli doctor --model "$MODEL" --json > "$OUT/doctor.json" 2>&1
  python3 -c "
import sys; sys.path.insert(0, '.')
from scripts.measure_buffers import measure_log
open('$OUT/llama_log_cuda_h100.txt', 'w').write(measure_log('$MODEL', {'n_ctx': 4096, 'n_gpu_layers': -1, 'n_batch': 512, 'flash_attn': True}))
" 2>&1 | tail -3
  fi
  echo "study starts at +$(( $(date +%s) - T0 )) s"
  setsid nohup bash -c "cd '$PWD' && ${RUN[*]} > $W/run.log 2>&1; echo EXIT \$? >> $W/run.log" > /dev/null 2>&1 &
  while [ $(( $(date +%s) - T0 )) -lt 575 ] && ! grep -q '^EXIT' "$W/run.log" 2>/dev/null; do sleep 5; done
  tail -5 "$W/run.log"; collect
elif [ "$phase" = reexport ]; then
  # a fresh machine: rebuild, regenerate the (deterministic) GGUF, re-export from the carried study
  prepare; [ -f "$W/gpu.db" ] || cp .devcarry/gpu.db "$W/gpu.db"
  python3 -m tuner.cli export --storage "$DB" --profile-dir "$W/profiles" --confirm 3 --confirm-runs 2 2>&1 | tail -20
  collect
elif [ "$phase" = phase3 ]; then
  ready && [ -f "$MODEL" ] || prepare
  timeout 330 python3 scripts/record_grid.py --gpu --model "$MODEL" --space docs/benchmarks/data/gpu_grid_space.yaml \
    --max-wait 0 --max-minutes 5 --out-dir "$OUT/gpu_grid" 2>&1 | tail -8
  prof=$(ls "$W"/profiles/*.yaml 2>/dev/null | head -1)
  left=$(( 585 - ($(date +%s) - T0) ))
  [ -n "$prof" ] && timeout $(( left > 30 ? left - 15 : 10 )) python3 -m tuner.cli verify "$prof" --model "$MODEL" --runs 2 2>&1 | tail -20 | tee "$OUT/verify.log"
  collect
elif [ "$phase" = verify ]; then
  prof=$(ls "$W"/profiles/*.yaml | head -1)
  timeout 560 python3 -m tuner.cli verify "$prof" --model "$MODEL" --runs 2 2>&1 | tail -20 | tee "$OUT/verify.log"
  collect
else
  if ! ready || [ ! -f "$MODEL" ]; then
    echo "fresh machine: rebuilding and resuming from the carried study"
    prepare; cp .devcarry/gpu.db "$W/gpu.db"
    "${RUN[@]}" > "$W/run.log" 2>&1; echo "EXIT $?" >> "$W/run.log"
  fi
  while ! grep -q '^EXIT' "$W/run.log" 2>/dev/null && [ $(( $(date +%s) - T0 )) -lt 480 ]; do sleep 5; done
  tail -30 "$W/run.log"; collect
  prof=$(ls "$W"/profiles/*.yaml 2>/dev/null | head -1)
  left=$(( 585 - ($(date +%s) - T0) ))
  [ -n "$prof" ] && timeout $(( left > 30 ? left - 20 : 10 )) python3 scripts/bench_profiles.py --storage "$DB" --runs "${RUNS:-3}" --profile "$prof" --out "$OUT/bench.json" 2>&1 | tail -12
  collect
fi
echo "phase $phase done at +$(( $(date +%s) - T0 )) s"
