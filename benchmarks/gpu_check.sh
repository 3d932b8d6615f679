#!/usr/bin/env bash
# GPU check: the CUDA path of training, and `fer train` vs a bare loop on the GPU.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# Needs torch with CUDA, torchvision, opencv, pandas, pyarrow, pydantic and pyyaml (no MLflow,
# Prefect or DVC: tracking is off). Runs the training/model tests (the train stage picks CUDA
# with `train.device: auto`), then bench_train.py on the GPU for each model.
set -uo pipefail
out="${1:-.}"
export PYTHONUNBUFFERED=1 FER_PROGRESS=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY' | tee "$out/gpu.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device"
print("torch", torch.__version__, "|", torch.cuda.get_device_name())
PY
python3 -m pytest -q -p no:cacheprovider tests/test_training.py tests/test_models.py \
    2>&1 | tail -15 | tee "$out/gpu_tests.txt"
for model in alexnet baseline resnet18; do
    python3 benchmarks/bench_train.py --device cuda --model "$model" --n 16384 --batch 256 \
        --epochs 6 2>&1 | tail -4 | tee -a "$out/gpu_bench_train.txt"
done
