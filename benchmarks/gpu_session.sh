#!/usr/bin/env bash
# One lent-GPU session, prepared: the throughput benchmark, then the full-scale study, each under a time
# limit, with the records, tables and figures (never weights) copied to $OUT for the trip back.
#
#   bash benchmarks/gpu_session.sh            # on the GPU machine, from the repository root
#   SMOKE=1 bash benchmarks/gpu_session.sh    # the same steps on a CPU in about a minute (small sizes,
#                                             # the tiny study): checks the script, not the numbers
#
# Environment: OUT (where results go; default ./gpu-session-out), STUDY_SECONDS (the study's limit;
# default 480), BENCH_MODES (default bf16,seeds-8,jobs-4), GROUP (seeds trained together; default 5),
# JOBS (stages at once; default 4), DATA (the folder holding cifar10.tar.gz and tin100a.tar.gz; default
# ../shared/data), WORK (the study folder's parent; default /tmp/guided-gpu). A study cut by its limit
# keeps its finished stages: rerun this script on the same machine with RESUME=1 to continue. The
# package need not be installed: it runs from this checkout.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-./gpu-session-out}
mkdir -p "$OUT"
if [ -n "${SMOKE:-}" ]; then
  DEVICE=cpu; BENCH_ARGS=(--smoke --device cpu --modes fp32,seeds-2,jobs-2)
  STUDY=configs/study-tiny-digits.toml; GROUP=${GROUP:-2}; JOBS=${JOBS:-2}
else
  DEVICE=cuda; BENCH_ARGS=(--device cuda --modes "${BENCH_MODES:-bf16,seeds-8,jobs-4}")
  STUDY=configs/study-vgg16-cifar10-gpu.toml; GROUP=${GROUP:-5}; JOBS=${JOBS:-4}
  for set in cifar10 tin100a; do
    [ -d ~/.cache/guided-data/$set ] || { mkdir -p ~/.cache/guided-data && tar -xzf "${DATA:-../shared/data}/$set.tar.gz" -C ~/.cache/guided-data; }
  done
fi
echo "== $(date -u +%FT%TZ) device $DEVICE, revision $(git rev-parse --short HEAD)" | tee "$OUT/session.log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$OUT/session.log"

echo "== benchmark" | tee -a "$OUT/session.log"
timeout "${BENCH_SECONDS:-240}" python3 benchmarks/gpu_throughput.py "${BENCH_ARGS[@]}" \
  --out "$OUT/gpu_throughput.json" 2>&1 | tee -a "$OUT/session.log"
echo "benchmark rc=${PIPESTATUS[0]}" | tee -a "$OUT/session.log"

echo "== study $STUDY (limit ${STUDY_SECONDS:-480} s)" | tee -a "$OUT/session.log"
STUDY_DIR=${WORK:-/tmp/guided-gpu}/$(basename "$STUDY" .toml)  # outside $OUT: weights stay on the machine
timeout "${STUDY_SECONDS:-480}" python3 -m guided run "$STUDY" --out "$STUDY_DIR" --jobs "$JOBS" --group-seeds "$GROUP" \
  ${RESUME:+--resume} 2>&1 | tee -a "$OUT/session.log"
echo "study rc=${PIPESTATUS[0]}" | tee -a "$OUT/session.log"

# records, tables, figures and reports; no weights or checkpoints
mkdir -p "$OUT/study"
(cd "$STUDY_DIR" && find . -type f ! -name '*.pt' ! -name '*.npz' ! -name '*.lock' -size -2M -print0 \
  | tar --null -cf - -T -) | (cd "$OUT/study" && tar -xf -)
echo "== copied $(find "$OUT/study" -type f | wc -l) files to $OUT/study" | tee -a "$OUT/session.log"
