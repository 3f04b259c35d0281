#!/usr/bin/env bash
# The one prepared GPU run of issue 8 (≤ 4.5 minutes on an H200, every part time-boxed).
#
#     bash bench/gpu_run.sh            # from the repository root; output also in $OUT/gpu_run.log
#
# Needs torch with CUDA, transformers, peft, accelerate (bitsandbytes for QLoRA: put its install folder on
# PYTHONPATH, /tmp/site is picked up by itself). tunebench is not installed there: it runs from src/.
# No network and no packaged weights: the training benchmark runs on a random-initialised model of
# SmolLM2-135M's exact shape, built from gpu_kit/smollm2-shape/ (config + tokenizer, no weights), so it
# measures throughput only. Parts:
#   1. nvidia-smi and versions
#   2. GEMM peak (fp32, TF32, bf16) and the training benchmark: Trainer + PEFT against tunebench, lora and
#      full, bf16 on CUDA, 30 steps x 32 (the CPU benchmark's batch), tokens/s, ratio, MFU vs the bf16 peak
#   3. bench/cuda_smoke.py: every method on tiny models on CUDA (device placement, bf16, QLoRA)
#   4. the training benchmark again at batch 256, where a GPU is less bound by kernel launches
# STEPS=2 BATCH=4 bash bench/gpu_run.sh runs a short version (the CPU dry run; part 4 is skipped without a GPU).

set -x
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
[ -d /tmp/site ] && export PYTHONPATH="$PYTHONPATH:/tmp/site"
export TUNEBENCH_NO_PROGRESS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
STEPS=${STEPS:-30}
BATCH=${BATCH:-32}
KIT=gpu_kit/smollm2-shape
# The kit is made from the prepared packaged model (config and tokenizer, no weights) where it is at hand;
# on a machine without it, carry a kit made elsewhere (gpu_kit/ is git-ignored: 3.4 MB).
if [ ! -f "$KIT/config.json" ]; then
    $PY - "$KIT" <<'PYEOF'
import shutil, sys
from pathlib import Path
from tunebench.models import resolve_model
src, dst = Path(resolve_model("smollm2-135m").path), Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.is_file() and f.suffix != ".safetensors":
        shutil.copy(f, dst / f.name)
print("made", dst, "from", src)
PYEOF
fi
RESULTS=${OUT:-$(mktemp -d)}
mkdir -p "$RESULTS"
exec > >(tee -a "$RESULTS/gpu_run.log") 2>&1

date
nvidia-smi || echo "no nvidia-smi: CPU dry run"
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', 'transformers', transformers.__version__,
'peft', peft.__version__)"
$PY -c "import bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)" || echo "no bitsandbytes"
HAS_CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")

timeout -k 5 100 $PY bench/train_vs_reference.py --random-init "$KIT" --no-metric --steps "$STEPS" --peak \
    --batch-size "$BATCH" --json "$RESULTS/train_vs_reference_b$BATCH.json"
echo "train_vs_reference batch $BATCH exit $?"

timeout -k 5 90 $PY bench/cuda_smoke.py "$(mktemp -d)"
echo "cuda_smoke exit $?"

if [ "$HAS_CUDA" = 1 ]; then
    timeout -k 5 70 $PY bench/train_vs_reference.py --random-init "$KIT" --no-metric --steps "$STEPS" --peak \
        --batch-size 256 --json "$RESULTS/train_vs_reference_b256.json"
    echo "train_vs_reference batch 256 exit $?"
else
    echo "no GPU: the batch-256 benchmark is skipped"
fi
date
