#!/usr/bin/env python
"""Make docs/img/synthetic_field.png: a synthetic field with a rich cluster, as the network sees it.

    .venv/bin/python docs/make_synthetic_figure.py

The colour image comes from the project's one colour function (`deepcee_d2.data.colour.make_network_image`,
the config's DEEPCEE.COLOUR: i, r, g -> R, G, B, sqrt stretch between 0 and 10 nanomaggies, 2 x 2 block averaging), on
the central 1000 x 1000 px (6.6') of a 2048 x 2048 field with one cluster at z = 0.12 (target R_L* = 60) at
its centre; the PNG is palette-quantised to stay small.
"""
from pathlib import Path

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from PIL import Image

from deepcee_d2.config import load_config
from deepcee_d2.data.colour import ColourSettings, make_network_image
from deepcee_d2.synthetic import make_field

OUT = Path(__file__).resolve().parent / "img" / "synthetic_field.png"


def main():
    cluster = Table({"ra": [150.0], "dec": [2.0], "z": [0.12], "richness": [60.0]})
    field = make_field(SkyCoord(150.0 * u.deg, 2.0 * u.deg), 2048, 2048, clusters=cluster, seed=2)
    crop = slice(524, 1524)
    images = {band: image[crop, crop] for band, image in field.images.items()}
    rgb, _ = make_network_image(images, field.wcs[crop, crop], 500, ColourSettings.from_cfg(load_config()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)
    print(f"{OUT}: {OUT.stat().st_size / 1024:.0f} KB; cluster truth:")
    print(field.clusters["id", "z", "richness", "n_members", "bcg_rmag", "r200", "r200_arcsec"])


if __name__ == "__main__":
    main()
