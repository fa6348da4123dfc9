from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from deepcee_d2.evaluation.crossmatch import KNOWN, NEW_CANDIDATE, crossmatch_false_positives, read_reference_catalog

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FP_CENTRE = SkyCoord(200 * u.deg, 10 * u.deg)
# The paper's cross-match: 250 proper kpc, 0.05 < z < 0.4.
PAPER = {"radius": 250 * u.kpc, "z_range": (0.05, 0.4)}


@pytest.fixture
def false_positives(offset_by_kpc):
    """Five false positives: near a WHL-like cluster (z 0.2), near a redMaPPer-like one (z 0.3), near one at
    z 0.45 (outside the window), 260 kpc from a z 0.1 cluster (outside the radius), and far from everything."""
    positions = [offset_by_kpc(FP_CENTRE, 120, 0.2, 30), SkyCoord(201 * u.deg, 11 * u.deg),
                 SkyCoord(202 * u.deg, 12 * u.deg), offset_by_kpc(SkyCoord(203 * u.deg, 9 * u.deg), 260, 0.1, 0),
                 SkyCoord(230 * u.deg, -20 * u.deg)]
    return Table({"image_id": [1, 2, 3, 4, 5], "ra": [p.ra.deg for p in positions] * u.deg,
                  "dec": [p.dec.deg for p in positions] * u.deg, "score": [0.9, 0.85, 0.8, 0.95, 0.99]})


@pytest.fixture
def catalogues(offset_by_kpc):
    whl = Table({"id": ["WHL J1", "WHL J2", "WHL J3"], "ra": [200.0, 202.0, 203.0], "dec": [10.0, 12.0, 9.0],
                 "z": [0.2, 0.45, 0.1]})
    near = offset_by_kpc(SkyCoord(201 * u.deg, 11 * u.deg), 40, 0.3, 250)
    redmapper = Table({"RA": [near.ra.deg, 150.0], "DEC": [near.dec.deg, 0.0], "Z": [0.3, 0.3]})
    return whl, redmapper


def test_false_positives_are_flagged_known_or_new(false_positives, catalogues):
    whl, redmapper = catalogues
    result = crossmatch_false_positives(false_positives, {"WHL": whl, "redMaPPer": redmapper}, **PAPER)
    assert result["status"].tolist() == [KNOWN, KNOWN, NEW_CANDIDATE, NEW_CANDIDATE, NEW_CANDIDATE]
    assert result["catalog"].tolist() == ["WHL", "redMaPPer", "", "", ""]
    assert result["catalog_id"].tolist()[:2] == ["WHL J1", "0"]  # no id column: the row number
    np.testing.assert_allclose(result["catalog_z"][:2], [0.2, 0.3])
    np.testing.assert_allclose(u.Quantity(result["catalog_distance"][:2]).to_value(u.kpc), [120, 40], rtol=1e-9)
    assert np.all(np.isnan(result["catalog_distance"][2:]))
    assert result["score"].tolist() == false_positives["score"].tolist()  # columns carried through
    assert result.meta["CATALOGS"] == "WHL,redMaPPer"


def test_window_and_radius_are_options(false_positives, catalogues):
    whl, _ = catalogues
    wide = crossmatch_false_positives(false_positives, {"WHL": whl}, radius=300 * u.kpc, z_range=(0.05, 0.5))
    # The z = 0.45 cluster now counts; the one 260 kpc away too.
    assert wide["status"].tolist() == [KNOWN, NEW_CANDIDATE, KNOWN, KNOWN, NEW_CANDIDATE]
    assert wide["n_catalog_matches"].tolist() == [1, 0, 1, 1, 0]


def test_nearest_match_over_all_catalogues_wins(false_positives, catalogues, offset_by_kpc):
    whl, _ = catalogues
    closer = offset_by_kpc(FP_CENTRE, 120, 0.2, 30).directional_offset_by(0 * u.deg, 1 * u.arcsec)
    other = Table({"id": ["X"], "ra": [closer.ra.deg], "dec": [closer.dec.deg], "z": [0.2]})
    result = crossmatch_false_positives(false_positives[:1], {"WHL": whl, "other": other}, **PAPER)
    assert (result["catalog"][0], result["catalog_id"][0], result["n_catalog_matches"][0]) == ("other", "X", 2)


@pytest.mark.parametrize("suffix,format", [(".fits", "fits"), (".ecsv", "ascii.ecsv"), (".csv", "ascii.csv"),
                                           (".vot", "votable")])
def test_catalogue_files_in_each_format(tmp_path, catalogues, suffix, format):
    whl, _ = catalogues
    path = tmp_path / f"whl12{suffix}"
    whl.write(path, format=format)
    catalogue = read_reference_catalog(path)
    assert catalogue.meta["name"] == "whl12"
    assert catalogue["id"].tolist() == ["WHL J1", "WHL J2", "WHL J3"]
    assert u.Quantity(catalogue["ra"]).unit == u.deg


def test_bad_catalogues_are_named_in_the_error(tmp_path, catalogues, false_positives):
    whl, _ = catalogues
    path = tmp_path / "no_position.ecsv"
    whl["id", "ra", "z"].write(path)
    with pytest.raises(ValueError, match=r"no_position.*lacks column\(s\) \['dec'\]"):
        crossmatch_false_positives(false_positives, [path], **PAPER)
    with pytest.raises(FileNotFoundError, match="missing.fits: catalogue file not found"):
        read_reference_catalog(tmp_path / "missing.fits")
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"not a table" * 50)
    with pytest.raises(ValueError, match="corrupt.fits: catalogue file: not a table astropy can read"):
        read_reference_catalog(corrupt)
    with pytest.raises(ValueError, match="empty.*catalogue is empty"):
        read_reference_catalog(whl[:0], name="empty")
    with pytest.raises(ValueError, match="needs a name"):
        read_reference_catalog(whl)
    whl["ra"][1] = np.nan
    with pytest.raises(ValueError, match=r"WHL: 1 row\(s\) without a finite ra/dec, e.g. row 1"):
        read_reference_catalog(whl, name="WHL")


def test_real_abell_catalogue_recovers_a_cluster_as_known(false_positives):
    abell_path = SHARED_DATA / "catalogs" / "abell_aco_vii110a.fits"
    if not abell_path.is_file():
        pytest.skip(f"{abell_path} not available")
    abell = read_reference_catalog(abell_path)
    assert np.isnan(abell["z"][1])  # Abell 2 has no redshift: masked in the file, NaN here
    with_z = abell[(abell["z"] > 0.06) & (abell["z"] < 0.2)][0]
    spot = SkyCoord(with_z["ra"] * u.deg, with_z["dec"] * u.deg).directional_offset_by(0 * u.deg, 20 * u.arcsec)
    fps = Table({"ra": [spot.ra.deg, 0.5], "dec": [spot.dec.deg, -89.5]})
    result = crossmatch_false_positives(fps, abell_path, **PAPER)
    assert result["status"].tolist() == [KNOWN, NEW_CANDIDATE]
    assert result["catalog"][0] == "abell_aco_vii110a" and result["catalog_id"][0] == with_z["id"]


def test_a_cluster_without_redshift_is_matched_at_the_candidates_own(offset_by_kpc):
    """Abell 2 has no redshift in the real Abell/ACO file: a candidate 200 kpc from it at its red-sequence z_est
    is known; at a z_est putting it 300 kpc away, outside the window, or without one, it is new."""
    abell_path = SHARED_DATA / "catalogs" / "abell_aco_vii110a.fits"
    if not abell_path.is_file():
        pytest.skip(f"{abell_path} not available")
    abell = read_reference_catalog(abell_path)
    abell2 = SkyCoord(abell["ra"][1] * u.deg, abell["dec"][1] * u.deg)
    spots = [offset_by_kpc(abell2, 200, 0.15, 60), offset_by_kpc(abell2, 300, 0.15, 60)]
    fps = Table({"ra": [spots[0].ra.deg, spots[1].ra.deg, spots[0].ra.deg, spots[0].ra.deg],
                 "dec": [spots[0].dec.deg, spots[1].dec.deg, spots[0].dec.deg, spots[0].dec.deg],
                 "z_est": [0.15, 0.15, 0.45, np.nan]})
    result = crossmatch_false_positives(fps, abell_path, **PAPER)
    assert result["status"].tolist() == [KNOWN, NEW_CANDIDATE, NEW_CANDIDATE, NEW_CANDIDATE]
    assert result["catalog_id"][0] == abell["id"][1] and np.isnan(result["catalog_z"][0])
    np.testing.assert_allclose(u.Quantity(result["catalog_distance"][:1]).to_value(u.kpc), [200], rtol=1e-6)
    assert result["n_catalog_matches"].tolist() == [1, 0, 0, 0]
    without_estimates = crossmatch_false_positives(fps["ra", "dec"], abell_path, **PAPER)
    assert not without_estimates["known"].any()


def test_a_catalogue_without_a_redshift_column_is_matched_at_the_candidates_z_est(false_positives, catalogues,
                                                                                   tmp_path, caplog):
    """An X-ray or SZ source list often has no z column: read with z NaN (and said), matched at z_est."""
    whl, _ = catalogues
    path = tmp_path / "xray.csv"
    whl["id", "ra", "dec"].write(path)
    with caplog.at_level("WARNING", logger="deepcee_d2.evaluation.crossmatch"):
        catalogue = read_reference_catalog(path)
    assert np.isnan(catalogue["z"]).all() and "xray: catalogue has no z column" in caplog.text
    false_positives["z_est"] = [0.2, 0.2, 0.2, 0.1, 0.2]
    result = crossmatch_false_positives(false_positives, [path], **PAPER)
    # The first lies 120 kpc from WHL J1 at z_est 0.2; the fourth 260 kpc from WHL J3 at z_est 0.1 (outside);
    # the third lies on WHL J2, whose own z (0.45, outside the window) the list no longer holds.
    assert result["status"].tolist() == [KNOWN, NEW_CANDIDATE, KNOWN, NEW_CANDIDATE, NEW_CANDIDATE]
