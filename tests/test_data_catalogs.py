"""Catalogue readers and the paper's cuts.

VizieR is exercised through astroquery against responses recorded in tests/data (hand-built in VizieR's
VOTable format: real Abell positions, illustrative WHL12 and redMaPPer rows placed around them); see the
``vizier_recorded`` fixture.
"""
from pathlib import Path

import numpy as np
import pytest
import astropy.units as u
from astropy.io import fits
from astropy.table import Table

from deepcee_d2.config import load_config
from deepcee_d2.cosmology import DEFAULT_COSMOLOGY
from deepcee_d2.data.catalogs import (
    CLUSTER_COLUMNS,
    dec_mask,
    load_catalog,
    members_mask,
    paper_selection,
    query_vizier,
    read_catalog,
    redshift_mask,
    select_clusters,
    sky_match_mask,
    write_catalog,
)

# The recorded WHL12 rows, in order, and why each passes or fails the paper's cuts (see tests/data):
WHL_IDS = [
    "WHL J000735.7+163042",  # 20" from A1, z 0.126, N200 35: selected
    "WHL J001143.3+322441",  # z 0.25: too far
    "WHL J002231.9+231738",  # N200 12: too poor
    "WHL J100000.0+300000",  # no Abell cluster near
    "WHL J002044.5-254221",  # Dec < 0
    "WHL J002706.9+224136",  # 240" from A31 > 500 kpc at z 0.18 (166")
    "WHL J002854.3+173605",  # 90" from A43, z 0.11, N200 exactly 20: selected
    "WHL J004151.1+212427",  # z exactly 0.2: excluded (strict)
    "WHL J004627.3+202923",  # 10" from A98, z 0.105, N200 80, no BCG magnitude: selected
]


def test_whl12_from_vizier_maps_to_the_schema_with_units(vizier_recorded):
    whl = query_vizier("whl12")
    assert list(whl.colnames) == list(CLUSTER_COLUMNS)
    assert list(whl["id"]) == WHL_IDS
    assert whl["ra"].unit == u.deg and whl["bcg_rmag"].unit == u.mag and whl["r200"].unit == u.Mpc
    assert whl["z"][0] == pytest.approx(0.126) and whl["richness"][0] == pytest.approx(38.52)
    assert whl["n_members"][0] == 35 and whl["bcg_rmag"][0] == pytest.approx(16.21)
    np.testing.assert_array_equal(whl["bcg_ra"], whl["ra"])  # WHL12 centres on the BCG
    assert np.isnan(whl["bcg_rmag"][-1])  # VizieR's empty cell
    # One request, for the right table and only the needed columns, with no row limit.
    (payload,) = vizier_recorded
    assert "-source=J/ApJS/199/34/table1" in payload and "-out.max=unlimited" in payload
    assert "-out=WHL,zph,RL*,N200,rmag,r200" in payload and "-out.add=_RAJ2000,_DEJ2000" in payload


def test_abell_from_vizier_stacks_the_supplement_with_s_ids(vizier_recorded):
    abell = query_vizier("abell")
    assert list(abell["id"]) == ["A1", "A7", "A24", "A31", "A43", "A84", "A98", "A15", "A22", "S1"]
    assert np.isnan(abell["bcg_ra"]).all() and np.isnan(abell["n_members"]).all()
    assert np.isnan(abell["z"][-1]) and abell["richness"][2] == 127
    assert "-source=VII/110A/table3,VII/110A/table4" in vizier_recorded[0]


def test_redmapper_from_vizier(vizier_recorded):
    redmapper = query_vizier("redmapper")
    assert len(redmapper) == 3 and redmapper["id"][1] == "RMJ134853.0+263539.5"
    assert redmapper["richness"][1] == pytest.approx(118.412) and redmapper["z"][1] == pytest.approx(0.1698)
    assert np.isnan(redmapper["n_members"]).all()
    assert "-source=J/ApJS/224/1/cat_dr8" in vizier_recorded[0]


def test_empty_vizier_answer_is_an_error_naming_the_table(monkeypatch):
    from types import SimpleNamespace

    from astroquery.query import BaseQuery

    text = (Path(__file__).parent / "data" / "vizier_whl12_table1.vot").read_text()
    empty = text[:text.index("<TR>")] + text[text.index("</TABLEDATA>"):]
    monkeypatch.setattr(BaseQuery, "_request", lambda self, *a, **k: SimpleNamespace(content=empty.encode()))
    with pytest.raises(ValueError, match=r"VizieR J/ApJS/199/34/table1: no rows returned"):
        query_vizier("whl12")


def test_each_cut_reproduces_the_hand_count(vizier_recorded):
    whl, abell = query_vizier("whl12"), query_vizier("abell")
    assert redshift_mask(whl, 0.1, 0.2).sum() == 7  # all but z = 0.25 and z = 0.2
    assert members_mask(whl, 20).sum() == 8  # all but N200 = 12
    assert dec_mask(whl, 0 * u.deg).sum() == 8  # all but the southern one
    matched, nearest, _ = sky_match_mask(whl, abell)  # 500 kpc: the far one and the 240" one fail
    assert matched.sum() == 7 and abell["id"][nearest[0]] == "A1"
    matched, _, _ = sky_match_mask(whl, abell, max_separation=30 * u.arcsec)
    assert matched.sum() == 6  # the 90" match of A43 fails as well


def test_paper_selection_keeps_exactly_the_hand_picked_clusters(vizier_recorded):
    paper = load_config().DEEPCEE.DATA.PAPER_SELECTION  # the paper's cuts, as tools/prepare_dataset.py reads them
    selected = paper_selection(query_vizier("whl12"), query_vizier("abell"), z_range=paper.Z_RANGE,
                               min_members=paper.MIN_MEMBERS, dec_min=paper.DEC_MIN_DEG * u.deg,
                               max_separation=paper.ABELL_RADIUS_KPC * u.kpc, cosmology=DEFAULT_COSMOLOGY)
    assert list(selected["id"]) == [WHL_IDS[0], WHL_IDS[6], WHL_IDS[8]]
    assert list(selected["abell_id"]) == ["A1", "A43", "A98"]
    np.testing.assert_allclose(selected["abell_separation"].quantity.to_value(u.arcsec), [20, 90, 10], atol=0.1)


@pytest.mark.parametrize("suffix", [".fits", ".csv", ".ecsv", ".vot"])
def test_local_file_in_vizier_columns_reads_like_the_query(vizier_recorded, tmp_path, suffix):
    from astroquery.vizier import Vizier

    raw = Vizier(columns=["**"], row_limit=-1).get_catalogs("J/ApJS/199/34/table1")[0]
    path = tmp_path / f"whl12{suffix}"
    raw.write(path, format={".vot": "votable", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(suffix))
    from_file = read_catalog(path, "whl12")
    from_vizier = query_vizier("whl12")
    assert list(from_file["id"]) == list(from_vizier["id"])
    for name in CLUSTER_COLUMNS[1:]:
        np.testing.assert_allclose(from_file[name], from_vizier[name], rtol=1e-6, equal_nan=True)


def test_schema_file_round_trips_and_keeps_extra_columns(vizier_recorded, tmp_path):
    whl = query_vizier("whl12")
    whl["field"] = "f000"
    for suffix in (".fits", ".ecsv"):
        path = write_catalog(whl, tmp_path / f"clusters{suffix}")
        back = read_catalog(path)
        assert list(back["id"]) == list(whl["id"]) and list(back["field"]) == ["f000"] * len(whl)
        assert back["r200"].unit == u.Mpc
        np.testing.assert_allclose(back["z"], whl["z"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clusters.ecsv", "clusters.fits"]  # no temporaries


def test_load_catalog_takes_a_file_or_a_vizier_name(vizier_recorded, tmp_path):
    assert len(load_catalog("redmapper")) == 3
    path = write_catalog(load_catalog("abell"), tmp_path / "abell.ecsv")
    assert list(load_catalog(path)["id"])[-1] == "S1"
    with pytest.raises(FileNotFoundError, match="nowhere.fits: neither a catalogue file nor"):
        load_catalog(tmp_path / "nowhere.fits")


def test_real_abell_file_matches_a_direct_count(shared_data):
    path = shared_data / "catalogs" / "abell_aco_vii110a.fits"
    abell = read_catalog(path, "abell")
    raw = fits.getdata(path, 1)
    assert len(abell) == len(raw) == 5250
    assert sum(i.startswith("A") for i in abell["id"]) == 4076  # Abell + ACO rich clusters
    assert sum(i.startswith("S") for i in abell["id"]) == 1174  # the southern supplement
    assert dec_mask(abell, 0 * u.deg).sum() == np.sum(raw["dec"] > 0)
    z = np.asarray(raw["z"], dtype=float)
    assert np.isnan(abell["z"]).sum() == np.sum(~np.isfinite(z))
    assert redshift_mask(abell, 0.1, 0.2).sum() == np.sum((z > 0.1) & (z < 0.2))


def test_bad_catalogue_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.fits: catalogue file not found"):
        read_catalog(tmp_path / "missing.fits", "whl12")
    corrupt = tmp_path / "corrupt.fits"
    corrupt.write_bytes(b"SIMPLE  =                    T" + b"\0" * 50)
    with pytest.raises(ValueError, match="corrupt.fits: catalogue file: not a table astropy can read"):
        read_catalog(corrupt, "whl12")
    empty = tmp_path / "empty.ecsv"
    Table({"WHL": np.array([], dtype=str), "RAJ2000": [], "DEJ2000": []}).write(empty)
    with pytest.raises(ValueError, match="empty.ecsv: the catalogue is empty"):
        read_catalog(empty, "whl12")
    partial = tmp_path / "partial.csv"
    Table({"WHL": ["J1"], "RAJ2000": [1.0], "DEJ2000": [2.0], "zph": [0.1]}).write(partial)
    with pytest.raises(ValueError, match=r"partial.csv: no column RL\* / RL_ for 'richness'.*columns are"):
        read_catalog(partial, "whl12")
    with pytest.raises(ValueError, match="partial.csv: missing cluster columns"):
        read_catalog(partial)
    with pytest.raises(ValueError, match="unknown catalogue 'maxbcg'"):
        read_catalog(partial, "maxbcg")


def test_duplicate_ids_are_refused_and_nothing_is_written(vizier_recorded, tmp_path):
    whl = query_vizier("whl12")
    whl["id"][1] = whl["id"][0]
    path = tmp_path / "clusters.fits"
    with pytest.raises(ValueError, match="duplicate cluster ids"):
        write_catalog(whl, path)
    assert list(tmp_path.iterdir()) == []


def test_select_clusters_applies_only_the_cuts_given(vizier_recorded):
    whl = query_vizier("whl12")
    assert len(select_clusters(whl)) == 9
    assert len(select_clusters(whl, z_range=(0.1, 0.2), min_members=20)) == 6
    assert len(select_clusters(whl, dec_min=0 * u.deg, region=(5.0, 8.0, 0.0, 30.0))) == 3  # A24, A31, A43 rows
    wrapped = select_clusters(whl, region=(350.0, 3.0, -90.0, 90.0))  # RA range through 0
    assert list(wrapped["id"]) == WHL_IDS[:2]
