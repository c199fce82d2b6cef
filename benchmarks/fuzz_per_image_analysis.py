"""The per-image analysis port against DIALS on many random images (not a timed test).

Each image (``tests/test_per_image_analysis.py``'s generator: spots on ice rings, tied d
and intensities, few spots, negative intensities, zero variances) goes through DIALS's
``stats_for_reflection_table``, through ``image_analysis`` (one image) and, in chunks of
500 images, through ``images_analysis`` (many at once). Every field must be equal to the
bit (or the exception the same), unless the port leaves the image to the one-image path
(``None`` from ``image_analysis``: DIALS's function; ``single`` from ``images_analysis``).
Reports the counts and the time per image of each.

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
    ours_stats,
    random_image,
)

CHUNK = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    counts = dict.fromkeys(
        ("equal", "equal_error", "left_to_dials", "different", "batch_equal", "batch_single"),
        0,
    )
    seconds = {"dials": 0.0, "one_image": 0.0, "many_images": 0.0}
    for first in range(0, args.images, CHUNK):
        chunk = [random_image(rng) for _ in range(min(CHUNK, args.images - first))]
        analysis = bool(rng.random() < 0.9)
        theirs = []
        for index, (d_star, intensity, variance, _a) in enumerate(chunk, first):
            start = time.perf_counter()
            expected = dials_stats(d_star, intensity, variance, analysis)
            middle = time.perf_counter()
            ours = ours_stats(d_star, intensity, variance, analysis)
            seconds["dials"] += middle - start
            seconds["one_image"] += time.perf_counter() - middle
            theirs.append(expected)
            if ours is None:
                counts["left_to_dials"] += 1
            elif ours == expected:
                counts["equal_error" if isinstance(ours, str) else "equal"] += 1
            else:
                counts["different"] += 1
                print(f"image {index} ({len(d_star)} spots): DIALS {expected}, ours {ours}")
        image = np.concatenate([np.full(len(c[0]), i) for i, c in enumerate(chunk)])
        joined = [np.concatenate([c[k] for c in chunk]) for k in range(3)]
        start = time.perf_counter()
        batch = images_analysis(image, *joined, all_rings(), analysis)
        seconds["many_images"] += time.perf_counter() - start
        for i, expected in enumerate(theirs):
            if batch.single[i]:
                counts["batch_single"] += 1
                continue
            ours = tuple(float(batch.fields[name][i]) for name in FIELDS)
            if ours == expected:
                counts["batch_equal"] += 1
            else:
                counts["different"] += 1
                print(f"image {first + i} (many at once): DIALS {expected}, ours {ours}")
    per_image = {k: f"{v / args.images * 1e3:.3f} ms" for k, v in seconds.items()}
    print(f"seed {args.seed}, {args.images} images: {counts}; per image {per_image}")
    sys.exit(1 if counts["different"] else 0)


if __name__ == "__main__":
    main()
