#!/usr/bin/env bash
# The whole loop on a real data set that needs no download: sklearn's UCI handwritten digits
# (1,797 8x8 grayscale images, 10 classes, inside the scikit-learn wheel).
#   plan under a budget for 8x8x1 -> train (float, then QAT) -> re-quantize on the training
#   inputs -> re-export -> parity with accuracy on cpu, arm, npu and mcu.
# Usage: bash scripts/digits_demo.sh [OUT_DIR] [BUDGET]   (needs edgeconv[all], i.e. torch too)
set -euo pipefail
OUT=${1:-edgeconv-out/digits}
BUDGET=${2:-64KB}
EPOCHS=${EPOCHS:-30}
QAT=${QAT:-5}
SEED=${SEED:-0}
mkdir -p "$OUT"

# 80/20 split with a fixed permutation; pixels 0..16 scaled to [0, 1]; x is N x 8 x 8 x 1 (NHWC)
python - "$OUT" <<'PY'
import sys
import numpy as np
from sklearn.datasets import load_digits

out = sys.argv[1]
d = load_digits()
x = (d.images / 16.0).astype(np.float32)[..., None]
y = d.target.astype(np.int64)
idx = np.random.default_rng(0).permutation(len(x))
cut = int(0.8 * len(x))
np.savez(f"{out}/train.npz", x=x[idx[:cut]], y=y[idx[:cut]])
np.savez(f"{out}/val.npz", x=x[idx[cut:]], y=y[idx[cut:]])
print(f"digits: {cut} training and {len(x) - cut} validation samples in {out}/", file=sys.stderr)
PY

edgeconv build --budget "$BUDGET" --input 8x8x1 --classes 10 --top 3 --seed "$SEED" --out "$OUT/float"
cp -r "$OUT/float" "$OUT/qat"

echo "== float training ($EPOCHS epochs) =="
edgeconv train "$OUT/float" --data "$OUT/train.npz" --val "$OUT/val.npz" --epochs "$EPOCHS" \
    --augment crop --seed "$SEED"
echo "== float training + QAT ($EPOCHS + $QAT epochs) =="
edgeconv train "$OUT/qat" --data "$OUT/train.npz" --val "$OUT/val.npz" --epochs "$EPOCHS" --qat "$QAT" \
    --augment crop --seed "$SEED"

for variant in float qat; do
    echo "== parity with labels: $variant =="
    edgeconv parity "$OUT/$variant" --targets cpu,arm,npu,mcu --inputs "$OUT/val.npz" --labels \
        --md "$OUT/parity-$variant.md" --junit "$OUT/parity-$variant.xml"
done
