#!/usr/bin/env bash
# GPU check for a lent CUDA machine (< 8 minutes on an H100/H200): CUDA code paths, the CLI on
# CUDA, the CUDA-relevant tests, then benchmarks/model_speed.py (3 recipes eager, Tab II compiled). JSON lines go to stdout and, when
# $OUT is set, to $OUT/gpu_check.jsonl (test log to $OUT/gpu_tests.log).
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT_DIR="${OUT:-}"
log() { if [ -n "$OUT_DIR" ]; then tee -a "$OUT_DIR/$1"; else cat; fi; }
python -c 'import torch; print({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})' | log gpu_check.jsonl
timeout 150 python - <<'PY' 2>&1 | log gpu_tests.log
# CUDA paths the CPU suite cannot run: graphs, bf16 autocast, folded copy, compile on CUDA.
import json, torch
from posenfs_cli.config import ModelConfig
from posenfs_cli.data.layouts import MPII
from posenfs_cli.device import GraphedForward, autocast, maybe_compile, to_device, tune_backend
from posenfs_cli.models.build import build_model
from posenfs_cli.models.fold import inference_model
dev = torch.device("cuda"); tune_backend(dev)
torch.manual_seed(0)
m = build_model(ModelConfig(channels=4, parts=3), MPII, load_pretrained=False).to(dev).eval()
x = to_device(torch.randn(2, 3, 128, 128), dev, channels_last=True)
res = {}
with torch.no_grad():
    ref = m(x)
    fold = inference_model(m, dev, True, "off")
    res["fold_max_diff"] = float((fold(x) - ref).abs().max())
    g = GraphedForward(fold)
    g(x); res["graph_max_diff"] = float((g(x) - ref).abs().max())
    with autocast(dev):
        res["bf16_max_diff"] = float((m(x).float() - ref).abs().max())
    comp = inference_model(m, dev, True, "on")
    res["compiled_max_diff"] = float((comp(x) - ref).abs().max())
res["ok"] = res["fold_max_diff"] < 1e-4 and res["graph_max_diff"] < 1e-4 and res["compiled_max_diff"] < 1e-3
print(json.dumps(res))
PY
# The CLI end to end on CUDA: a tiny search (AMP, channels_last, pinned loader), then eval and
# predict on its best checkpoint (folded copy, CUDA graphs off by default).
W=$(mktemp -d)
( cd "$W" && timeout 120 python -m posenfs_cli search --recipe synthetic/tiny --epochs 2 \
    --no-progress --device cuda && \
  timeout 60 python -m posenfs_cli eval --device cuda && \
  timeout 60 python -m posenfs_cli data synth --format coco --out synth --images 2 --val-images 1 \
    >/dev/null && \
  timeout 60 python -m posenfs_cli predict synth/images/val --device cuda --overlay && \
  echo '{"cli_cuda": "ok"}' ) 2>&1 | tail -25 | log gpu_tests.log
timeout 120 python -m pytest -q -x tests/unit/test_speed_paths.py tests/unit/test_compile_device.py 2>&1 | tail -3 | log gpu_tests.log
timeout 100 python benchmarks/model_speed.py --device cuda --compile off --runs 20 \
  --recipes recipes/mpii/mbv2_p3_h1_c10_256.yaml recipes/mpii/mbv2_p8_h1_c10_256.yaml \
  recipes/coco/hrnet_p5_h1_c16_384x288.yaml | log gpu_check.jsonl
timeout 200 python benchmarks/model_speed.py --device cuda --compile on --runs 20 \
  --recipes recipes/mpii/mbv2_p3_h1_c10_256.yaml | log gpu_check.jsonl
