"""A survey's own red-sequence background (deepcee_d2.survey.background, tools/measure_background.py) on real
SDSS frames: the crowded field beside M2 and one high-latitude field."""
import runpy
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest

from deepcee_d2.config import load_config
from deepcee_d2.redsequence import RedSequenceEstimator, read_background
from deepcee_d2.survey.background import measure_folder_background

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("002583-2-0136", "005390-2-0117")  # beside M2 (crowded), high latitude


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
