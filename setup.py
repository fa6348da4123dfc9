#!/usr/bin/env python
"""deepcee_d2: Deep-CEE galaxy-cluster finding in colour survey images, as a detectron2 plugin.

detectron2 itself is not on PyPI as a wheel, so it is not listed in install_requires: install it first
(``scripts/setup_env.sh`` does, by the routes in ``scripts/install_detectron2.py``).
"""
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="deepcee_d2",
    version="0.1.0",
    description="Deep-CEE: find galaxy clusters in wide-field colour survey images with Faster R-CNN (detectron2)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["deepcee_d2", "deepcee_d2.*"]),
    # The red-sequence background of the synthetic sky (deepcee_d2.redsequence.DEFAULT_BACKGROUND_FILE).
    package_data={"deepcee_d2": ["synthetic/*.ecsv"]},
    install_requires=[
        # 2.6: torch.load defaults to weights_only (weights are never unpickled; engine/predictor.py asks for
        # it explicitly as well); the trainer's optimizer step hooks need >= 2.0.
        "torch>=2.6",
        "torchvision>=0.21",
        "PyYAML>=5.4",  # configs are read with yaml.safe_load (deepcee_d2.config.load_config)
        "numpy",
        "scipy",
        "astropy>=5.0",
        # Resampling frames onto tiles (deepcee_d2.data.resample); opencv 4 rounds remap's weights to 1/32 px.
        "opencv-python-headless>=5.0",
        "matplotlib",
        "Pillow",
        "pycocotools>=2.0.2",
        "fvcore",
        "tqdm",
    ],
    extras_require={
        # The synthetic SDSS sky (deepcee_d2.synthetic).
        "sim": ["galsim>=2.4", "photutils>=1.5"],
        # Real imaging and catalogues: VizieR / SkyView queries and reprojection of SDSS frames.
        "data": ["astroquery>=0.4.6", "reproject>=0.9"],
        # Survey-scale inference on Dask; DS9 region files; the red-sequence redshift and richness of each
        # candidate (deepcee_d2.redsequence: SEP photometry, GalSim's templates for L*, dustmaps to read the SFD
        # dust map real imaging is dereddened with).
        "survey": ["dask[distributed]>=2022.1", "regions>=0.7", "galsim>=2.4", "sep>=1.4", "dustmaps>=1.0.10"],
        # Converting the published TensorFlow Inception-v2 checkpoints. The converter runs on the CPU, and
        # tensorflow-cpu is a third of tensorflow's size (which matters on small CI disks); it only exists
        # for Linux and Windows on x86-64.
        "convert": [
            'tensorflow-cpu; platform_machine in "x86_64 AMD64"',
            'tensorflow; platform_machine not in "x86_64 AMD64"',
            "tf-slim",
        ],
        # pytest-xdist: `make test` runs the tests on every core (tests/conftest.py gives each one torch thread).
        "test": ["pytest", "pytest-xdist"],
    },
)
