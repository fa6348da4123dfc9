"""Shared pytest fixtures. Each area keeps its fixtures in its own section below."""
import os
from pathlib import Path

import numpy as np
import pytest

# Tests never use a GPU and must not fight over the CPU cores with oversubscribed thread pools: `make test` runs
# one pytest-xdist worker per core, and torch's OpenMP threads spin-wait on a core another process holds (the
# instant training took 246 s with 2 threads beside one busy process, 42 s with 1; BENCHMARKS "Test suite").
# Set before torch is imported; subprocesses of the tests inherit it.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# ---- foundation (modeling, config, training) ----
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_SIZE = 192
TOY_BOX = 64
TOY_PIXEL_SCALE_ARCSEC = 0.792


def _toy_image(rng, size, centre):
    """A dark noisy sky with blue field dots and a clump of red dots around ``centre`` (x, y)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    image = rng.normal(12, 4, (size, size, 3))

    def add_dots(n, x, y, colour, sigma):
        for xi, yi in zip(x, y):
            blob = np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma**2))
            image[...] += blob[..., None] * np.asarray(colour, float)[None, None, :]

    add_dots(12, rng.uniform(0, size, 12), rng.uniform(0, size, 12), (40, 80, 160), 1.5)
    n = 14
    radius = rng.uniform(0, 18, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    add_dots(n, centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle), (200, 120, 40), 1.8)
    add_dots(1, [centre[0]], [centre[1]], (255, 170, 60), 3.0)  # the "BCG"
    return np.clip(image, 0, 255).astype(np.uint8)


def make_toy_dataset(folder, n_images, seed):
    """Dataset dicts (with the WCS and cluster extras of real records) of ``n_images`` toy PNG images."""
    from PIL import Image
    from astropy.wcs import WCS
    from detectron2.structures import BoxMode

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    records = []
    for index in range(n_images):
        centre = rng.uniform(TOY_BOX / 2 + 4, TOY_SIZE - TOY_BOX / 2 - 4, 2)
        file_name = os.path.join(folder, f"toy_{seed}_{index:03d}.png")
        Image.fromarray(_toy_image(rng, TOY_SIZE, centre)).save(file_name)
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        ra0, dec0 = 180.0 + index, 10.0
        wcs.wcs.crval = [ra0, dec0]
        wcs.wcs.crpix = [(TOY_SIZE + 1) / 2, (TOY_SIZE + 1) / 2]
        wcs.wcs.cdelt = [-TOY_PIXEL_SCALE_ARCSEC / 3600, TOY_PIXEL_SCALE_ARCSEC / 3600]
        # detectron2 box coordinates put pixel i's centre at i + 0.5; astropy at i.
        sky = wcs.pixel_to_world(centre[0] - 0.5, centre[1] - 0.5)
        x0, y0 = centre - TOY_BOX / 2
        records.append({
            "file_name": file_name, "image_id": f"toy_{seed}_{index}", "height": TOY_SIZE, "width": TOY_SIZE,
            "wcs": wcs.to_header_string(), "ra": ra0, "dec": dec0, "pixel_scale": TOY_PIXEL_SCALE_ARCSEC,
            "annotations": [{
                "bbox": [float(x0), float(y0), TOY_BOX, TOY_BOX], "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": 0, "cluster_id": f"toy-{seed}-{index}", "ra": float(sky.ra.deg),
                "dec": float(sky.dec.deg), "z": 0.15, "richness": 30.0, "n_members": 25, "bcg_rmag": 16.0,
            }],
        })
    return records


@pytest.fixture(scope="session")
def toy_datasets(tmp_path_factory):
    """Register ``deepcee_toy_train`` (24 images) and ``deepcee_toy_test`` (6 images) for instant runs."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root = tmp_path_factory.mktemp("toy")
    splits = {"deepcee_toy_train": make_toy_dataset(root / "train", 24, seed=1),
              "deepcee_toy_test": make_toy_dataset(root / "test", 6, seed=2)}
    for name, records in splits.items():
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        DatasetCatalog.register(name, lambda records=records: records)
        MetadataCatalog.get(name).set(thing_classes=["cluster"], evaluator_type="deepcee")
    yield splits
    for name in splits:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

@pytest.fixture(scope="session")
def instant_model(toy_datasets, tmp_path_factory):
    """30 iterations of configs/deepcee_instant_test.yaml on the toy data set, evaluated at the end (train
    once per session; treat as read-only): ``(output folder, total loss per iteration)``."""
    from deepcee_d2.config import load_config
    from deepcee_d2.engine import Trainer

    output = tmp_path_factory.mktemp("instant")
    trainer = Trainer(load_config(os.path.join(REPO, "configs", "deepcee_instant_test.yaml"),
                                  ["OUTPUT_DIR", str(output)]))
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [value for value, _ in trainer.storage.history("total_loss").values()]
    return output, losses

# ---- synthetic sky ----
SYNTHETIC_SEED = 7


@pytest.fixture(scope="session")
def synthetic_survey(tmp_path_factory):
    """A small synthetic survey on disk (two 500 x 400 px fields, two clusters each, placed at random at least
    20" from the edges), noiseless and with clusters only, so every BCG can be measured; treat as read-only."""
    import astropy.units as u

    from deepcee_d2.synthetic import ClusterSpec, write_survey

    root = tmp_path_factory.mktemp("synthetic_survey")
    spec = ClusterSpec(per_field=2, z_range=(0.1, 0.3), richness_range=(20, 40), placement="random",
                       min_separation=40 * u.arcsec, edge_margin=20 * u.arcsec)
    write_survey(root, 2, 500, 400, clusters=spec, seed=SYNTHETIC_SEED, field_galaxies=False, stars=False,
                 noise=False, progress=False)
    return root


# ---- data (catalogues, imaging, COCO) ----
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def make_sky_wcs(ra, dec, shape, scale_arcsec=0.396, rotation_deg=0.0, use_cd=False):
    """A TAN WCS centred on ``(ra, dec)`` deg for an image of ``shape`` (ny, nx): east left, north up, rotated.

    ``use_cd`` writes the linear part as a CD matrix (as SDSS frames do) instead of PC + CDELT.
    """
    from astropy.wcs import WCS

    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    angle = np.deg2rad(rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale = np.diag([-scale_arcsec / 3600, scale_arcsec / 3600])
    if use_cd:
        wcs.wcs.cd = scale @ rotation
    else:
        wcs.wcs.cdelt = np.diag(scale)
        wcs.wcs.pc = rotation
    wcs.pixel_shape = (shape[1], shape[0])
    wcs.wcs.set()
    return wcs


def gaussian_blobs(wcs, shape, coords, fluxes, sigma_px):
    """Image of ``shape`` with circular Gaussians of total ``fluxes`` at sky ``coords`` (through ``wcs``)."""
    x, y = wcs.world_to_pixel(coords)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    image = np.zeros(shape)
    for xi, yi, flux in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(fluxes)):
        image += flux / (2 * np.pi * sigma_px**2) * np.exp(-((xx - xi) ** 2 + (yy - yi) ** 2) / (2 * sigma_px**2))
    return image


@pytest.fixture
def sky_wcs():
    """`make_sky_wcs` as a fixture."""
    return make_sky_wcs


@pytest.fixture
def blobs():
    """`gaussian_blobs` as a fixture."""
    return gaussian_blobs


# A tiny survey in the synthetic layout: two 600 px fields at 0.396"/px, each band on a slightly different
# WCS (shifted by a few pixels and rotated, like the bands of an SDSS field), Gaussian "galaxies" for three
# clusters (a bright BCG and six members each) plus noise, and the truth table in the cluster schema.
TINY_FIELD_SIZE = 600
TINY_FIELDS = {"f000": (150.0, 2.0), "f001": (150.5, 2.0)}
TINY_CLUSTERS = [  # id, field, ra, dec, z
    ("SYN-0", "f000", 150.0, 2.0, 0.15),
    ("SYN-1", "f000", 150.0 + 40 / 3600, 2.0 + 20 / 3600, 0.12),
    ("SYN-2", "f001", 150.5, 2.0 - 20 / 3600, 0.18),
]
# Per-band WCS perturbations: shift of the reference pixel (x, y) and rotation in degrees.
TINY_BAND_WCS = {"g": ((0.0, 0.0), 0.0), "r": ((2.6, -1.3), 0.2), "i": ((-1.8, 3.1), -0.3)}
TINY_BCG_FLUX = {"g": 60.0, "r": 150.0, "i": 220.0}  # nanomaggies


def write_tiny_survey(root, noise=0.03, seed=0):
    """Write the tiny survey under ``root``; returns the truth table (cluster schema + ``field``)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.table import Table

    from deepcee_d2.data.frames import SYNTHETIC_ORIGIN

    rng = np.random.default_rng(seed)
    root = Path(root)
    shape = (TINY_FIELD_SIZE, TINY_FIELD_SIZE)
    for field, (ra, dec) in TINY_FIELDS.items():
        members = [c for c in TINY_CLUSTERS if c[1] == field]
        for band, ((dx, dy), rotation) in TINY_BAND_WCS.items():
            wcs = make_sky_wcs(ra, dec, shape, rotation_deg=rotation)
            wcs.wcs.crpix = wcs.wcs.crpix + np.array([dx, dy])
            image = rng.normal(0.0, noise, shape)
            for _, _, cra, cdec, _ in members:
                centre = SkyCoord(cra * u.deg, cdec * u.deg)
                offsets = np.random.default_rng(int(cra * 1e4) % 1000).uniform(-40, 40, (6, 2)) * u.arcsec
                image += gaussian_blobs(wcs, shape, centre, TINY_BCG_FLUX[band], 3.0)
                image += gaussian_blobs(wcs, shape, centre.spherical_offsets_by(offsets[:, 0], offsets[:, 1]),
                                        [TINY_BCG_FLUX[band] / 8] * 6, 2.0)
            header = wcs.to_header()
            # Not real sky: the survey warns of the synthetic calibration on real frames only.
            header.update(FILTER=band, PIXSCALE=0.396, SEEING=1.4, SKYLEVEL=0.0, BUNIT="nanomaggy",
                          ORIGIN=SYNTHETIC_ORIGIN)
            (root / field).mkdir(parents=True, exist_ok=True)
            fits.PrimaryHDU(image.astype(np.float32), header).writeto(root / field / f"frame-{band}.fits")
    truth = Table(rows=[(cid, cra, cdec, z, 40.0, 25.0, 16.0, cra, cdec, 1.2, field)
                        for cid, field, cra, cdec, z in TINY_CLUSTERS],
                  names=["id", "ra", "dec", "z", "richness", "n_members", "bcg_rmag", "bcg_ra", "bcg_dec",
                         "r200", "field"])
    for name, unit in {"ra": u.deg, "dec": u.deg, "bcg_ra": u.deg, "bcg_dec": u.deg, "bcg_rmag": u.mag,
                       "r200": u.Mpc}.items():
        truth[name].unit = unit
    truth.write(root / "clusters.fits")
    return truth


@pytest.fixture(scope="session")
def tiny_survey(tmp_path_factory):
    """Path of a tiny survey in the synthetic layout (written once per session; treat as read-only)."""
    root = tmp_path_factory.mktemp("tiny_survey")
    write_tiny_survey(root)
    return root


@pytest.fixture(scope="session")
def tiny_settings():
    """`DatasetSettings` of the tiny data set: the config's, shrunk to 200 px cutouts shown at 100 px."""
    import astropy.units as u

    from deepcee_d2.config import load_config
    from deepcee_d2.data.coco import DatasetSettings

    return DatasetSettings.from_cfg(load_config(), cutout_size=200, network_size=100, max_offset=30 * u.arcsec,
                                    box_size=50 * u.kpc, test_fraction=0.34, seed=3)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_survey, tiny_settings, tmp_path_factory):
    """The tiny survey's three clusters as a COCO data set, 4 images each, split by cluster (built once per
    session; treat as read-only): ``root`` (a DEEPCEE_DATASETS-style root), ``folder`` (``root/synthetic``),
    ``paths`` (split -> json), ``settings``. SYN-2 has no BCG magnitude (null in the json)."""
    import math
    from types import SimpleNamespace

    from deepcee_d2.data.catalogs import read_catalog
    from deepcee_d2.data.coco import build_dataset
    from deepcee_d2.data.frames import LocalFITSSource

    root = tmp_path_factory.mktemp("datasets")
    truth = read_catalog(tiny_survey / "clusters.fits")
    truth["bcg_rmag"][2] = math.nan
    paths = build_dataset(truth, LocalFITSSource(tiny_survey), root / "synthetic", tiny_settings, progress=False)
    return SimpleNamespace(root=root, folder=root / "synthetic", paths=paths, settings=tiny_settings)


RECORDED = Path(__file__).resolve().parent / "data"
# VizieR responses recorded for tests (hand-built in VizieR's VOTable format): requested table -> file.
VIZIER_RECORDINGS = {
    "J/ApJS/199/34/table1": RECORDED / "vizier_whl12_table1.vot",
    "VII/110A/table3": RECORDED / "vizier_abell_vii110a.vot",
    "J/ApJS/224/1/cat_dr8": RECORDED / "vizier_redmapper_cat_dr8.vot",
}


@pytest.fixture
def vizier_recorded(monkeypatch):
    """Serve astroquery's HTTP requests from ``tests/data`` recordings; returns the list of request payloads.

    A request for a table without a recording fails the test: tests never reach the network.
    """
    from types import SimpleNamespace

    from astroquery.query import BaseQuery

    payloads = []

    def recorded_request(self, method, url, data=None, **kwargs):
        payloads.append(data)
        source = next(line for line in str(data).splitlines() if line.startswith("-source="))
        first_table = source.split("=", 1)[1].split(",")[0]
        if first_table not in VIZIER_RECORDINGS:
            raise AssertionError(f"no recorded VizieR response for {first_table}")
        return SimpleNamespace(content=VIZIER_RECORDINGS[first_table].read_bytes())

    monkeypatch.setattr(BaseQuery, "_request", recorded_request)
    return payloads


@pytest.fixture(scope="session")
def shared_data():
    """The shared real-data folder (SDSS frames, Abell catalogue); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not found (real SDSS frames and catalogues)")
    return SHARED_DATA

# ---- evaluation ----


def _offset_by_proper_distance(centre, distance, z, position_angle=0.0, cosmology=None):
    """The sky position ``distance`` (proper length, e.g. kpc) from ``centre`` at redshift ``z``, along
    ``position_angle`` (deg, east of north); the separation is built from the cosmology, so the distance
    ``sky_pairs`` measures back equals ``distance`` up to rounding."""
    import astropy.units as u

    from deepcee_d2.cosmology import DEFAULT_COSMOLOGY, angular_size

    separation = angular_size(u.Quantity(distance, u.kpc), z, cosmology or DEFAULT_COSMOLOGY)
    return centre.directional_offset_by(position_angle * u.deg, separation)


@pytest.fixture
def offset_by_kpc():
    """``offset_by_kpc(centre, distance, z, position_angle=0, cosmology=None) -> SkyCoord``."""
    return _offset_by_proper_distance


# ---- scheduling ----
# The slowest test files first (measured with --durations, BENCHMARKS "Test suite"): `make test` hands whole files
# to its pytest-xdist workers in collection order, and a slow file handed out last leaves the other cores idle.
SLOW_FILES_FIRST = ("test_demo.py", "test_survey.py", "test_convert_tf_checkpoint.py", "test_synthetic.py",
                    "test_convert_tf_imagenet.py", "test_synthetic_inject.py", "test_training.py",
                    "test_data_sources.py", "test_data_frames.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


# ---- Galactic dust ----


def write_sfd_like_map(folder, north, south, size=64):
    """A coarse map in the SFD files' format (zenithal equal-area around each Galactic pole), constant
    E(B-V) ``north`` and ``south``: the real files (2 x 64 MB) cannot be downloaded here."""
    from astropy.io import fits
    from astropy.wcs import WCS

    folder.mkdir(parents=True, exist_ok=True)
    for name, pole, value in (("SFD_dust_4096_ngp.fits", 90.0, north), ("SFD_dust_4096_sgp.fits", -90.0, south)):
        wcs = WCS(naxis=2)
        wcs.wcs.ctype = ["GLON-ZEA", "GLAT-ZEA"]
        wcs.wcs.crval = [0.0, pole]
        wcs.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
        wcs.wcs.cdelt = [-2 * 82.0 / size, 2 * 82.0 / size]  # the ZEA radius of the Galactic plane is 81 deg
        fits.PrimaryHDU(np.full((size, size), value, dtype=np.float32), header=wcs.to_header()).writeto(folder / name)
    return folder
