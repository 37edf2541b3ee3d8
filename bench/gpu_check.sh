#!/usr/bin/env bash
# The GPU check (issue 18): DPO LoRA+bf16 vs full fp32 on the Qwen2-0.5B shape, generate
# through in-process vLLM if installed, 2 ZeRO-3 steps if DeepSpeed is installed; one JSON.
# Run on a machine with a CUDA GPU, from anywhere:
#   bash bench/gpu_check.sh [OUT.json]        # default bench/out/gpu_check.json
# It stops itself after 8 minutes (what finished is not lost: each section is guarded,
# but a killed run writes nothing, so the limit is on the whole script).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-bench/out/gpu_check.json}"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu_check.sh: no CUDA GPU here; for a dry run of the path on CPU use" >&2
    echo "  python bench/gpu_check.py --shape qwen2-tiny --steps 4" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 python bench/gpu_check.py --json-out "$out"
echo "wrote $out" >&2
