#!/usr/bin/env bash
# GPU check of the inference precisions and bf16 training: val with --precision fp32 / bf16 / auto on CUDA (auto
# measures once and caches), predict with bf16, and one SSD300 epoch with --amp bf16. ONNX export and ONNX Runtime
# run on the CPU and are checked by the test suite. Usage, from the repo root: bash benchmarks/gpu_precision_check.sh
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 SINGLESHOT_CACHE=/tmp/cache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'bf16', torch.cuda.is_bf16_supported())"
S="python3 -m singleshot.cli"
R=/tmp/runs
echo "== 1. demo recipe, 1 epoch x 2000 images (amp auto = fp16 on CUDA)"
$S train --config recipes/demo.yaml --synthetic-train 2000 --epochs 1 --eval-every 1 --project $R --name g --predict-images 0 2>&1 | tail -2
echo "== 2. val on CUDA at each precision"
for p in fp32 bf16 auto; do
    $S val --weights $R/g/weights/best.safetensors --precision $p --no-coco --images 0 --project $R --name v$p 2>&1 | grep -E "ssd_tiny|all |img/s"
done
cat /tmp/cache/precision.json
echo "== 3. predict with bf16 on CUDA"
python3 -c "from singleshot.data.synthetic import save_images; save_images('/tmp/imgs', 8)"
$S predict --weights $R/g/weights/best.safetensors --source /tmp/imgs --precision bf16 --project $R --name p 2>&1 | tail -2
echo "== 4. ssd300_vgg16, --amp bf16, batch 32, 640 images"
$S train --model ssd300_vgg16 --batch 32 --synthetic-train 640 --synthetic-val 32 --epochs 1 --amp bf16 --workers 4 --project $R --name vgg --predict-images 0 2>&1 | tail -2
