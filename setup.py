"""dials_refl_stats: reflection-table statistics as DIALS programs.

DIALS itself (dials, dxtbx, cctbx) is deliberately *not* in ``install_requires``: it is
not installable from PyPI (the PyPI names are ancient placeholders). It comes from the
user's DIALS distribution (conda, the DIALS installer, or Debian's ``python3-dials``).
"""

from setuptools import find_packages, setup

PROGRAMS = [
    "spot_size_histogram",
    "intensity_per_frame",
    "strong_reflection_positions",
    "per_image_statistics",
    "refl_stats",
]

setup(
    name="dials_refl_stats",
    version="0.1.0",
    description="Reflection-table statistics for DIALS users, as DIALS programs",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="BSD-3-Clause",
    python_requires=">=3.9",
    packages=find_packages(exclude=["tests", "tests.*", "benchmarks"]),
    include_package_data=True,
    package_data={
        "dials_refl_stats": [
            "data/*.npy",
            "data/*/*.refl",
            "data/*/*.expt",
            "schemas/*.json",
            "report/*.j2",
        ],
    },
    install_requires=["numpy", "matplotlib", "jinja2", "plotly", "msgpack"],
    extras_require={
        "test": ["pytest", "jsonschema"],
        "hdf5": ["h5py"],
        "dask": ["dask[bag]", "distributed"],
        "jobqueue": ["dask[bag]", "distributed", "dask-jobqueue"],
    },
    entry_points={
        "console_scripts": [
            f"dials.{name} = dials_refl_stats.command_line.{name}:run" for name in PROGRAMS
        ],
        "libtbx.dispatcher.script": [f"dials.{name} = dials.{name}" for name in PROGRAMS],
    },
    zip_safe=False,
)
