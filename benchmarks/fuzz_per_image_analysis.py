"""The per-image analysis port against DIALS on many random images (not a timed test).

Each image (``tests/test_per_image_analysis.py``'s generator: spots on ice rings, tied d
and intensities, few spots, negative intensities, zero variances) goes through DIALS's
``stats_for_reflection_table`` and through ``image_analysis``; every field must be equal
to the bit (or the exception the same), unless the port leaves the image to DIALS.
Reports the counts and both functions' time per image.

    .venv/bin/python benchmarks/fuzz_per_image_analysis.py --images 100000 --seed 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_per_image_analysis import dials_stats, ours_stats, random_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    counts = {"equal": 0, "equal_error": 0, "left_to_dials": 0, "different": 0}
    seconds = {"dials": 0.0, "ours": 0.0}
    for index in range(args.images):
        image = random_image(rng)
        start = time.perf_counter()
        theirs = dials_stats(*image)
        middle = time.perf_counter()
        ours = ours_stats(*image)
        seconds["dials"] += middle - start
        seconds["ours"] += time.perf_counter() - middle
        if ours is None:
            counts["left_to_dials"] += 1
        elif ours == theirs:
            counts["equal_error" if isinstance(ours, str) else "equal"] += 1
        else:
            counts["different"] += 1
            print(f"image {index} ({len(image[0])} spots): DIALS {theirs}, ours {ours}")
    per_image = {k: f"{v / args.images * 1e3:.3f} ms" for k, v in seconds.items()}
    print(f"seed {args.seed}, {args.images} images: {counts}; per image {per_image}")
    sys.exit(1 if counts["different"] else 0)


if __name__ == "__main__":
    main()
