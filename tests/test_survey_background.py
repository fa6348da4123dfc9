"""A survey's own red-sequence background (deepcee_d2.survey.background, tools/measure_background.py) on real
SDSS frames: the crowded field beside M2 and one high-latitude field."""
import runpy
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy.wcs import WCS

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import angular_size
from deepcee_d2.redsequence import Photometry, RedSequenceEstimator, read_background
from deepcee_d2.survey.background import excluded_sky, measure_folder_background, without_sky

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("002583-2-0136", "005390-2-0117")  # beside M2 (crowded), high latitude
# The X-ray cluster source on 005390-2-0117 (position from its name; redshift not known here).
XCS = Table({"id": ["XMMXCS J124425.9+164758.0"], "ra": [191.10792], "dec": [16.79944], "z": [np.nan]},
            meta={"name": "xcs"})


def linked_fields(shared_data, root, fields):
    """A folder of links to the fields' frames (read from ../shared, not copied)."""
    for field in fields:
        for band in "gri":
            name = f"frame-{band}-{field}.fits.bz2"
            (root / name).symlink_to(shared_data / "sdss" / name)
    return root


@pytest.fixture(scope="module")
def two_fields(shared_data, tmp_path_factory):
    return linked_fields(shared_data, tmp_path_factory.mktemp("two_fields"), FIELDS)


@pytest.fixture(scope="module")
def high_latitude_field(shared_data, tmp_path_factory):
    return linked_fields(shared_data, tmp_path_factory.mktemp("one_field"), FIELDS[1:])


@pytest.fixture(scope="module")
def measured(two_fields):
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml")  # the survey's 2000 px tiles: 4 per field
    return measure_folder_background(cfg, two_fields, progress=False)


def test_background_of_real_frames_leaves_crowded_sky_out(measured):
    background, tiles = measured
    assert tiles.used and tiles.crowded and not tiles.failed
    assert all(FIELDS[0] in tile for tile in tiles.crowded)  # M2's field is crowded sky, the other not
    assert all(FIELDS[1] in tile for tile in tiles.used)
    # Each used tile is 2000 px of 0.396", imaged in part (a frame is 2048 x 1489 px): the imaged area only.
    tile_area = (2000 * 0.396 * u.arcsec) ** 2
    assert 0.3 * len(tiles.used) * tile_area < background.meta["area"] <= len(tiles.used) * tile_area
    assert background.meta["tiles_used"] == len(tiles.used) and background.meta["dust_map"] == "none"
    # Red-sequence galaxies exist at every trial z of the real sky; members are a subset of the scan's window.
    assert np.all(np.asarray(background["scan"]) > 0) and np.all(np.asarray(background["members"]) >= 0)


def test_the_tool_writes_a_background_the_estimator_reads_and_keeps_an_existing_file(high_latitude_field, measured,
                                                                                     tmp_path, capsys):
    """Measured on the high-latitude field alone, the background is the two fields' one: the crowded field
    adds nothing."""
    main = runpy.run_path(str(REPO / "tools" / "measure_background.py"))["main"]
    output = tmp_path / "background.ecsv"
    output.write_text("kept")
    with pytest.raises(SystemExit, match="background.ecsv: exists; give --overwrite"):
        main(["--config-file", str(REPO / "configs" / "Base-DeepCEE.yaml"), str(high_latitude_field), str(output)])
    assert output.read_text() == "kept"
    # The config may already name the file being written (here not yet a background): measuring reads none.
    main(["--overwrite", "--config-file", str(REPO / "configs" / "Base-DeepCEE.yaml"), str(high_latitude_field),
          str(output), "DEEPCEE.REDSHIFT.BACKGROUND_FILE", str(output)])
    assert "0 crowded tiles left out" in capsys.readouterr().out
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml", ["DEEPCEE.REDSHIFT.BACKGROUND_FILE", str(output)])
    estimator = RedSequenceEstimator.from_cfg(cfg)
    np.testing.assert_allclose(estimator.background["scan"], measured[0]["scan"])
    assert read_background(output, estimator.settings).meta["imaging"] == str(high_latitude_field)


def test_a_random_sample_of_tiles_is_measured_when_asked(high_latitude_field, measured):
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml")
    background, tiles = measure_folder_background(cfg, high_latitude_field, progress=False, sample=2, seed=1)
    assert len(tiles.used) == 2 and set(tiles.used) < set(measured[1].used)
    assert background.meta["tiles_planned"] == 4 and background.meta["area"] < measured[0].meta["area"]
    again, _ = measure_folder_background(cfg, high_latitude_field, progress=False, sample=2, seed=1)
    np.testing.assert_array_equal(again["scan"], background["scan"])


def test_a_folder_of_crowded_sky_only_is_refused_naming_why(high_latitude_field):
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml", ["DEEPCEE.SURVEY.MAX_SOURCE_DENSITY", "0.5"])
    with pytest.raises(ValueError, match=r"no tile to measure a background on \(\d+ tiles: \d+ crowded sky "
                                         r"\(> 0.5 sources per arcmin\^2\), 0 failed"):
        measure_folder_background(cfg, high_latitude_field, progress=False)


def test_known_clusters_sky_is_left_out_of_the_background(high_latitude_field, measured):
    """The X-ray cluster of 005390-2-0117 left out (500 kpc at z 0.1: 4.5'): less area, and at the redshifts of
    its red galaxies fewer red-sequence galaxies per arcmin^2 than the field with it."""
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml")
    background, tiles = measure_folder_background(cfg, high_latitude_field, progress=False, known=XCS)
    assert tiles.used == measured[1].used and background.meta["excluded"] == ["XMMXCS J124425.9+164758.0"]
    circle = np.pi * angular_size(500 * u.kpc, 0.1) ** 2
    removed = measured[0].meta["area"] - background.meta["area"]
    assert 0.9 * circle < removed <= len(tiles.used) * circle  # whole in one tile at least, in each at most
    z = np.asarray(background["z"])
    window = (z >= 0.1) & (z <= 0.25)
    assert np.mean(background["scan"][window] / measured[0]["scan"][window]) < 0.9


def test_only_the_sky_within_the_circles_is_left_out():
    """A 100 x 100 px cutout of 1"/px with sources on a diagonal: a circle of 20" about its centre takes the
    sources and pixels within 20 px; a circle elsewhere on the sky takes nothing."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype, wcs.wcs.crval = ["RA---TAN", "DEC--TAN"], [150.0, 2.0]
    wcs.wcs.crpix, wcs.wcs.cdelt = [50.5, 50.5], [-1 / 3600, 1 / 3600]  # pixel 49.5 (0-based) at the centre
    x = y = np.arange(0.0, 100.0, 5.0)
    ra, dec = wcs.pixel_to_world_values(x, y)
    photometry = Photometry(Table({"x": x, "y": y, "ra": ra, "dec": dec}), wcs, (100, 100))
    centre = SkyCoord([150.0], [2.0], unit=u.deg)
    left = without_sky(photometry, centre, [20.0] * u.arcsec)
    kept = np.hypot(x - 49.5, y - 49.5) > 20
    np.testing.assert_array_equal(left.sources["x"], x[kept])
    assert np.count_nonzero(~left.covered) == pytest.approx(np.pi * 20**2, rel=0.02)
    assert without_sky(photometry, SkyCoord([10.0], [-40.0], unit=u.deg), [20.0] * u.arcsec) is photometry
    cfg = load_config(REPO / "configs" / "Base-DeepCEE.yaml")
    centres, radii = excluded_sky(Table({"ra": [150.0, 150.0], "dec": [2.0, 2.0], "z": [0.3, np.nan]}), cfg)
    np.testing.assert_allclose(radii.to_value(u.arcsec), [angular_size(500 * u.kpc, z).to_value(u.arcsec)
                                                          for z in (0.3, 0.1)])  # no z: the survey's lowest
