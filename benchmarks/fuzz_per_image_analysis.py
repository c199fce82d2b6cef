"""The per-image analysis port against DIALS on many random images (not a timed test).

Each image (``tests/test_per_image_analysis.py``'s generator: spots on ice rings, tied d
and intensities, few spots, negative intensities, zero variances) goes through DIALS's
``stats_for_reflection_table`` and, in chunks of 500 images, through ``images_analysis``.
Every field must be equal to the bit, unless the port leaves the image to DIALS's
function (``single``). Reports the counts and the time per image of each.

    .venv/bin/python benchmarks/fuzz_per_image_analysis.py --images 100000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_per_image_analysis import (  # noqa: E402
    FIELDS,
    all_rings,
    dials_stats,
    images_analysis,
    random_image,
)

CHUNK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    counts = dict.fromkeys(("equal", "left_to_dials", "different"), 0)
    seconds = {"dials": 0.0, "many_images": 0.0}
    for first in range(0, args.images, CHUNK):
        chunk = [random_image(rng) for _ in range(min(CHUNK, args.images - first))]
        analysis = bool(rng.random() < 0.9)
        start = time.perf_counter()
        theirs = [dials_stats(d_star, i, v, analysis) for d_star, i, v, _a in chunk]
        seconds["dials"] += time.perf_counter() - start
        image = np.concatenate([np.full(len(c[0]), i) for i, c in enumerate(chunk)])
        joined = [np.concatenate([c[k] for c in chunk]) for k in range(3)]
        start = time.perf_counter()
        batch = images_analysis(image, *joined, all_rings(), analysis)
        seconds["many_images"] += time.perf_counter() - start
        for i, expected in enumerate(theirs):
            if batch.single[i]:
                counts["left_to_dials"] += 1
                continue
            ours = tuple(float(batch.fields[name][i]) for name in FIELDS)
            if ours == expected:
                counts["equal"] += 1
            else:
                counts["different"] += 1
                print(f"image {first + i}: DIALS {expected}, ours {ours}")
    per_image = {k: f"{v / args.images * 1e3:.3f} ms" for k, v in seconds.items()}
    print(f"seed {args.seed}, {args.images} images: {counts}; per image {per_image}")
    sys.exit(1 if counts["different"] else 0)


if __name__ == "__main__":
    main()
