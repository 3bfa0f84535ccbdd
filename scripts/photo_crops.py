"""Real-photo inputs without a download: 32x32 crops of sklearn's two sample photos, 0..255.

Each crop is taken from one of the photos downscaled by 2, 4 or 8 (PIL box filter), at a seeded
random position, so the crops hold whole objects and edges rather than flat patches of a
427x640 photo. Different --seed values give disjoint-looking sets (calibration vs check).

    python scripts/photo_crops.py --n 100 --seed 0 --out calib.npz
    python scripts/photo_crops.py --n 64 --seed 1 --out inputs.npz
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np


def photo_crops(n: int, seed: int, size: int = 32) -> np.ndarray:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    rng = np.random.default_rng([seed, 2026])
    scaled = []
    for photo in photos:
        h, w = photo.shape[:2]
        for factor in (2, 4, 8):
            image = Image.fromarray(photo).resize((w // factor, h // factor), Image.Resampling.BOX)
            scaled.append(np.asarray(image))
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        image = scaled[rng.integers(len(scaled))]
        y = rng.integers(image.shape[0] - size + 1)
        x = rng.integers(image.shape[1] - size + 1)
        out[i] = image[y : y + size, x : x + size]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    buffer = io.BytesIO()
    np.savez(buffer, input=photo_crops(args.n, args.seed))
    args.out.write_bytes(buffer.getvalue())
    print(f"wrote {args.out}: {args.n} crops of 32x32x3, 0..255", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
