#!/usr/bin/env bash
# One lent-GPU session, prepared: the throughput benchmark, then the full-scale study under a time limit,
# with the records, tables and figures (never weights) packed into one file for the trip back; a later
# session restores that file and resumes the study.
#
# A lent machine takes at most 64 MiB of files per call and sends back at most 8 files, so the work comes
# in phases, each one call on the same machine (call `study` at once after `bench`: a machine left idle
# for half a minute is given back, with what the first call unpacked):
#
#   bash benchmarks/gpu_session.sh prepare   # here, once: split ../shared/data into .devdata/a and .devdata/b
#                                            # (each small enough to travel with the checkout; git ignores them)
#   bash benchmarks/gpu_session.sh bench     # there, carrying .devdata/a: unpack, benchmark
#   bash benchmarks/gpu_session.sh study     # there, carrying .devdata/b: unpack the rest, run (or resume,
#                                            # given RESTORE=study.tar.gz from an earlier session) the study
#
# Then, here, from the benchmark's file: the study's (remaining) device time, without spending the device's:
#   guided run configs/study-vgg16-cifar10-gpu.toml --dry-run --jobs 4 --group-seeds 5 --throughput FILE
#
#   SMOKE=1 bash benchmarks/gpu_session.sh bench|study   # the same steps on a CPU in about a minute
#                                            # (small sizes, the tiny study): checks the script, not numbers
#
# Environment: OUT (where results go; default ./gpu-session-out), STUDY_SECONDS (the study's limit;
# default 480), BENCH_SECONDS (default 240), BENCH_MODES (default bf16,seeds-8,jobs-4), GROUP (seeds
# trained together; default 5), JOBS (stages at once; default 4), RESTORE (a study.tar.gz an earlier
# session brought back, or the folder it was unpacked into and committed), WORK (the study folder's
# parent; default /tmp/guided-gpu), DEVDATA, STASH and CACHE (the data's folders, below). A study cut by
# its limit keeps its finished stages; `study` again continues it. The package need not be installed: it
# runs from this checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PHASE=${1:-}
OUT=${OUT:-./gpu-session-out}
DEVDATA=${DEVDATA:-.devdata}           # the data loads `prepare` writes and calls carry
STASH=${STASH:-/tmp/guided-data-parts} # data parts carried by earlier calls on this machine
CACHE=${CACHE:-~/.cache/guided-data}   # where the image folders are unpacked (the study files read them here)

if [ "$PHASE" = prepare ]; then
  src=${DATA:-../shared/data}
  rm -rf "$DEVDATA" && mkdir -p "$DEVDATA/a" "$DEVDATA/b"
  cp "$src/cifar10.tar.gz" "$DEVDATA/a/"
  split -b 36M -d "$src/tin100a.tar.gz" "$DEVDATA/a/tin100a.tar.gz.part-"
  mv "$DEVDATA"/a/tin100a.tar.gz.part-0[1-9] "$DEVDATA/b/"
  (cd "$src" && sha256sum cifar10.tar.gz tin100a.tar.gz) | tee "$DEVDATA/a/SHA256SUMS" > "$DEVDATA/b/SHA256SUMS"
  du -sh "$DEVDATA/a" "$DEVDATA/b"
  exit 0
fi
case "$PHASE" in bench|study) ;; *) echo "usage: gpu_session.sh prepare|bench|study" >&2; exit 2 ;; esac

mkdir -p "$OUT" "$STASH" "$CACHE"
LOG="$OUT/session-$PHASE.log"
if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; BENCH_ARGS=(--smoke --device cpu --modes fp32,seeds-2,jobs-2)
  STUDY=configs/study-tiny-digits.toml; GROUP=${GROUP:-2}; JOBS=${JOBS:-2}
else
  DEVICE=cuda; BENCH_ARGS=(--device cuda --modes "${BENCH_MODES:-bf16,seeds-8,jobs-4}")
  STUDY=configs/study-vgg16-cifar10-gpu.toml; GROUP=${GROUP:-5}; JOBS=${JOBS:-4}
fi
echo "== $(date -u +%FT%TZ) phase $PHASE, device $DEVICE, revision $(git rev-parse --short HEAD 2>/dev/null)" | tee "$LOG"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$LOG"

# Data: keep every part carried so far, and unpack each set once all of its parts are here (checked).
for dir in "$DEVDATA"/*/; do [ -d "$dir" ] && cp -n "$dir"* "$STASH"/ 2>/dev/null; done
for set in cifar10 tin100a; do
  [ -d "$CACHE/$set" ] && continue
  if [ -f "$STASH/$set.tar.gz.part-00" ] && [ ! -f "$STASH/$set.tar.gz" ]; then
    cat "$STASH/$set.tar.gz.part-"* > "$STASH/$set.tar.gz.tmp" && mv "$STASH/$set.tar.gz.tmp" "$STASH/$set.tar.gz"
  fi
  [ -f "$STASH/$set.tar.gz" ] || continue
  if (cd "$STASH" && grep " $set.tar.gz\$" SHA256SUMS | sha256sum -c --quiet -); then
    tar -xzf "$STASH/$set.tar.gz" -C "$CACHE" && echo "unpacked $set" | tee -a "$LOG"
  else
    echo "$set: parts incomplete or damaged; carry the rest" | tee -a "$LOG"; rm -f "$STASH/$set.tar.gz"
  fi
done

if [ "$PHASE" = bench ]; then
  echo "== benchmark" | tee -a "$LOG"
  timeout "${BENCH_SECONDS:-240}" python3 benchmarks/gpu_throughput.py "${BENCH_ARGS[@]}" \
    --out "$OUT/gpu_throughput.json" 2>&1 | tee -a "$LOG"
  echo "benchmark rc=${PIPESTATUS[0]}" | tee -a "$LOG"
  exit 0
fi

STUDY_DIR=${WORK:-/tmp/guided-gpu}/$(basename "$STUDY" .toml)  # outside $OUT: weights stay on the machine
if [ -n "${RESTORE:-}" ] && [ ! -d "$STUDY_DIR" ]; then
  mkdir -p "$STUDY_DIR"
  if [ -d "$RESTORE" ]; then cp -r "$RESTORE"/. "$STUDY_DIR"/; else tar -xzf "$RESTORE" -C "$STUDY_DIR"; fi
  echo "restored $RESTORE" | tee -a "$LOG"
fi
RESUME_ARG=()
[ -f "$STUDY_DIR/study.json" ] && RESUME_ARG=(--resume)
echo "== study $STUDY (limit ${STUDY_SECONDS:-480} s) ${RESUME_ARG[*]}" | tee -a "$LOG"
timeout "${STUDY_SECONDS:-480}" python3 -m guided run "$STUDY" --out "$STUDY_DIR" --jobs "$JOBS" \
  --group-seeds "$GROUP" "${RESUME_ARG[@]}" 2>&1 | tee -a "$LOG"
echo "study rc=${PIPESTATUS[0]}" | tee -a "$LOG"

# Records, tables, figures and reports in one file; no weights, and no unfinished stage (it starts over
# where the file is restored: its checkpoint stays behind).
python3 - "$STUDY_DIR" "$OUT/study.tar.gz" <<'EOF' | tee -a "$LOG"
import sys, tarfile
from pathlib import Path

root, dest = Path(sys.argv[1]), sys.argv[2]
unfinished = {p.parent for p in root.glob("stages/**/stage.json") if not (p.parent / "done.json").is_file()}
files = [
    p for p in sorted(root.rglob("*"))
    if p.is_file() and p.suffix not in (".pt", ".npz", ".lock") and p.stat().st_size < 2**21
    and not any(u == p or u in p.parents for u in unfinished)
]
with tarfile.open(dest, "w:gz") as tar:
    for p in files:
        tar.add(p, arcname=str(p.relative_to(root)))
print(f"packed {len(files)} files into {dest} ({Path(dest).stat().st_size / 1e6:.1f} MB); "
      f"left out {len(unfinished)} unfinished stage(s)")
EOF
