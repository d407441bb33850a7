#!/usr/bin/env bash
# Everything one lent-GPU session measures, in one call (benchmarks/NOTES.md, "On a GPU").
#
# The lent machine has PyTorch and transformers but not `datasets`, nor the data.
# Prepare a folder .gpu/ beside this repo's files (ignored by git) with:
#   .gpu/whl/        wheels of datasets, dill and multiprocess for its Python (pip download --no-deps ...)
#   .gpu/data/       imdb/plain_text/{train,test}-00000-of-00001.parquet and sentiment140/ (a TK_DATA_DIR)
#   .gpu/tokenizer/  the bert-base-uncased vocabulary (the minilm model folder's tokenizer files)
# then run this script there with .gpu carried. Dry run on the CPU: GPU_DRY_RUN=1 bash benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export TK_DATA_DIR=$PWD/.gpu/data TK_BENCH_TOKENIZER=$PWD/.gpu/tokenizer HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

if [ -z "${GPU_DRY_RUN:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$OUT/install.txt" 2>&1 \
        || { echo "editable install failed:"; tail -5 "$OUT/install.txt"; }
    PY=python3
    EVAL=(--eval-rows 25000)
    SMALL=()
else
    PY=${PYTHON:-.venv/bin/python}
    EVAL=(--eval-rows 64)
    SMALL=(--set train_size=48 --set validation_size=16 --set eval_size=16 --set epochs=1 --set max_length=32)
fi
$PY -c "import torch, transformers, datasets, pyarrow
print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__,
      'pyarrow', pyarrow.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null

# Most telling first: a step that runs out of time cuts only what follows it.
echo "== speed, cold: both protocols against the seed configuration, evaluation throughput"
timeout 280 $PY benchmarks/speed.py --gpu --cold "${EVAL[@]}" "${SMALL[@]}" 2>&1 | tee "$OUT/speed.txt"
echo "== speed, cold: IMDB at max_length 512, one epoch"
timeout 110 $PY benchmarks/speed.py --gpu --cold --task imdb-minilm --eval-rows 0 --set epochs=1 \
    --set max_length=512 "${SMALL[@]}" 2>&1 | tee "$OUT/speed512.txt"
echo "== speed, cold, tk only: a capture for every width of 32 tokens (before plan_widths)"
timeout 60 $PY benchmarks/speed.py --gpu --cold --only tk --every-width --eval-rows 0 "${SMALL[@]}" \
    --task sentiment140-minilm 2>&1 | tee "$OUT/every_width.txt"
echo "== speed, warm (driver cache on, the machine has run both): tk only"
timeout 60 $PY benchmarks/speed.py --gpu --only tk --eval-rows 0 "${SMALL[@]}" 2>&1 | tee "$OUT/warm.txt"
echo "== gpu_check: graphed step equals eager, dropout varies, step times"
timeout 60 $PY benchmarks/gpu_check.py 2>&1 | tee "$OUT/gpu_check.txt"
echo "== gpu_profile: the step's kernels, cost by width, evaluation breakdown"
timeout 80 $PY benchmarks/gpu_profile.py 2>&1 | tee "$OUT/gpu_profile.txt"
