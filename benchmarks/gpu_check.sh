#!/usr/bin/env bash
# GPU check of the training and evaluation paths: CUDA device, fp16 autocast + GradScaler, pinned memory, checkpoint
# and resume, evaluation on the GPU, and the fast tests with CUDA visible. A check that they run (figures in
# benchmarks/RESULTS.md), not a ratio against a reference. Usage, from the repo root: bash benchmarks/gpu_check.sh
# On the device machine, wheels of packages its image lacks (pycocotools) can travel in .whl/.
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
S="python3 -m singleshot.cli"
R=/tmp/runs
echo "== 1. demo recipe on CUDA (amp auto), 2 epochs x 2000 images, eval each epoch"
/usr/bin/time -f "%e s wall" $S train --config recipes/demo.yaml --synthetic-train 2000 --epochs 2 --eval-every 1 --project $R --name cuda 2>&1 | grep -v "^epoch [0-9]*:"
echo "== 2. stop at max-steps 30, then resume on CUDA"
$S train --config recipes/demo.yaml --synthetic-train 400 --epochs 2 --max-steps 30 --project $R --name res 2>&1 | tail -2
$S train --resume $R/res 2>&1 | tail -3
echo "== 3. ssdlite320 at batch 32, fp16, 1 epoch of 2000 synthetic images (no eval)"
$S train --model ssdlite320_mobilenet_v3 --batch 32 --synthetic-train 2000 --synthetic-val 64 --epochs 1 --workers 4 --project $R --name lite --predict-images 0 2>&1 | tail -3
echo "== 4. ssd300_vgg16, fp16, batch 32, 640 images"
$S train --model ssd300_vgg16 --batch 32 --synthetic-train 640 --synthetic-val 32 --epochs 1 --workers 4 --project $R --name vgg --predict-images 0 2>&1 | tail -3
echo "== 5. val on CUDA"
$S val --weights $R/cuda/weights/best.safetensors --project $R --name val 2>&1 | tail -4
echo "== 6. predict on CUDA: 8 images and a 48-frame 640x480 video"
python3 -c "
from singleshot.data.synthetic import SyntheticShapes, save_images
from singleshot.predict.video import VideoWriter
save_images('/tmp/imgs', 8)
frames = SyntheticShapes(48, (480, 640), seed=5)
with VideoWriter('/tmp/imgs/clip.mp4', 24) as w:
    [w.write(frames[i][0].permute(1, 2, 0).numpy()) for i in range(48)]
"
$S predict --weights $R/cuda/weights/best.safetensors --source /tmp/imgs --project $R --name pred --save-txt 2>&1 | tail -3
python3 -c "
from pathlib import Path
from singleshot.predict.sources import video_frames
print('written video frames:', len(list(video_frames(Path('$R/pred/clip.mp4')))), 'labels:', len(list(Path('$R/pred/labels').iterdir())))
"
echo "== 7. fast test suite with CUDA visible"
python3 -m pytest -q -m "not slow" -p no:cacheprovider 2>&1 | tail -6

