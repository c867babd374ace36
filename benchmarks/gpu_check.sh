#!/usr/bin/env bash
# The GPU check: one short prepared script for a machine with a CUDA GPU.
#   bash benchmarks/gpu_check.sh [OUT_DIR]        (default OUT_DIR: benchmarks/gpu-check)
# 1. tests/test_cuda.py: finetune 1 epoch with bf16, with --compile and with fp16 plus
#    --activation-checkpointing, evaluate, predict, analyze and bench on cuda, serving mixed
#    batches and a live stream on cuda, tiny Whisper and wav2vec2 backbones trained (bf16) and
#    scored on cuda (and DDP over NCCL when there are two GPUs);
# 2. softmoa bench --device cuda at AST-base (768 wide, 12 blocks, 400 frames, batch 8), and
#    Soft-MoA with and without --activation-checkpointing at 1024 frames, batch 4;
# 3. benchmarks/predict_bench.py --device cuda: predict's clips/s (decoding threads, pinned
#    memory, non-blocking copies) against a batched forward over the same windows (AST-base);
# 4. OUT_DIR/gpu-check.md: the machine, the test summary, the bench table and the predict
#    clips/s, to paste into benchmarks/RESULTS.md. Installs the project into .venv first when it is not there.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/gpu-check}
mkdir -p "$out"
if [ ! -x .venv/bin/softmoa ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
fi
py=.venv/bin/python
$py -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'

tests_status=0
$py -m pytest -q -rs tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log" || tests_status=$?

.venv/bin/softmoa bench --device cuda --frames 400 --batch 8 --repeats 10 --warmup 3 \
  --out "$out/bench-ast-base.json" 2>&1 | tee "$out/bench.log"

.venv/bin/softmoa bench --device cuda --methods soft --reference soft --frames 1024 --batch 4 --repeats 5 --warmup 2 \
  --activation-checkpointing --out "$out/bench-checkpointing.json" 2>&1 | tee "$out/bench-checkpointing.log"

$py benchmarks/predict_bench.py --device cuda --files 400 --batch-size 32 --repeats 3 --skip-one-by-one \
  --out "$out/predict-bench.json" 2>&1 | tee "$out/predict-bench.log"

$py - "$out" <<'PY'
import json, shutil, subprocess, sys
from pathlib import Path

out = Path(sys.argv[1])
bench = json.loads((out / "bench-ast-base.json").read_text())
env, settings = bench["environment"], bench["settings"]
smi = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
gpu = subprocess.run(smi, capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else ""
summary = (out / "test_cuda.log").read_text().strip().splitlines()[-1]
lines = [f"GPU: {gpu or env['gpu']}; torch {env['torch']}",
         f"tests/test_cuda.py: {summary}",
         "",
         f"AST {settings['dim']} wide, {settings['depth']} blocks, {settings['frames']} frames, batch {settings['batch']}, median of {settings['repeats']} rounds "
         f"({bench['memory_measure']})",
         "",
         "| method | step ms | forward ms | step / adapter | peak MiB | trainable params |",
         "|---|---|---|---|---|---|"]
for row in bench["methods"]:
    ratio = f"{row['step_ratio']:.3f}" if row["step_ratio"] is not None else "-"
    lines.append(f"| {row['label']} | {row['step_ms']:.1f} | {row['forward_ms']:.1f} | {ratio} | "
                 f"{row['peak_bytes'] / 2**20:.0f} | {row['trainable_params']:,} |")
checkpointing = json.loads((out / "bench-checkpointing.json").read_text())
plain, checkpointed = checkpointing["methods"]
lines += ["", f"activation checkpointing (Soft-MoA, AST-base, {checkpointing['settings']['frames']} frames, batch "
          f"{checkpointing['settings']['batch']}): step {plain['step_ms']:.1f} -> {checkpointed['step_ms']:.1f} ms "
          f"({checkpointed['step_ratio_to_plain']:.3f}x, target <= 1.45x), peak {plain['peak_bytes'] / 2**20:.0f} -> "
          f"{checkpointed['peak_bytes'] / 2**20:.0f} MiB ({checkpointed['peak_ratio_to_plain']:.3f}x, target <= 0.6x), "
          f"the step's own memory {checkpointed['step_bytes_ratio_to_plain']:.3f}x"]
predict = json.loads((out / "predict-bench.json").read_text())
rate, ps = predict["clips_per_second"], predict["settings"]
lines += ["", f"predict_bench ({ps['files']} clips of {ps['seconds']} s, AST {ps['dim']} wide, {ps['depth']} blocks, "
          f"batch {ps['batch_size']}, {ps['workers']} decoding threads): predict {rate['predict']} clips/s, "
          f"batched forward {rate['forward']} clips/s, predict / forward time "
          f"{predict['ratio_predict_to_forward']} (target: clips/s at least 0.8x, i.e. a time ratio of at most 1.25)"]
(out / "gpu-check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
exit $tests_status
