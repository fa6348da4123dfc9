from pathlib import Path

import pytest

from deepcee_d2.io import atomic_output, file_sha256, read_positions, read_table, setting_differences

REPO = Path(__file__).resolve().parents[1]


def test_atomic_output_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as temporary:
            temporary.write_text("half-writ")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["report.md"]


def test_atomic_output_replaces_the_file_whole(tmp_path):
    target = tmp_path / "deeper" / "table.ecsv"
    with atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary.exists() and not target.exists()
        temporary.write_text("new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == ["table.ecsv"]


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "tiles" / "t.ecsv"
    # A process killed inside atomic_output (os._exit skips every clean-up, as kill -9 does).
    # deepcee_d2/io.py is loaded alone, without the package (and torch), to keep the child quick.
    code = ("import importlib.util, os\n"
            f"spec = importlib.util.spec_from_file_location('io_alone', {str(REPO / 'deepcee_d2' / 'io.py')!r})\n"
            "io = importlib.util.module_from_spec(spec); spec.loader.exec_module(io)\n"
            f"with io.atomic_output({str(target)!r}) as temporary:\n"
            "    temporary.write_text('half'); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    left = list(target.parent.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".t.ecsv.") and left[0].suffix == ".tmp"
    other = target.parent / ".t.ecsv.elsewhere-1.abc.tmp"  # another host's write in progress is left alone
    other.write_text("")
    with atomic_output(target) as temporary:
        temporary.write_text("whole")
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([other.name, "t.ecsv"])
    assert target.read_text() == "whole"


def test_file_sha256(tmp_path):
    import hashlib

    path = tmp_path / "weights.pth"
    path.write_bytes(b"abc" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_user_tables_are_read_in_each_format_and_named_in_every_error(tmp_path):
    import astropy.units as u
    from astropy.table import Table

    positions = Table({"ra": [150.0, 10.5], "dec": [2.0, -30.25]})
    for name in ("positions.csv", "positions.ecsv", "positions.fits"):
        positions.write(tmp_path / name)
        table = read_table(tmp_path / name, "--positions table")
        assert table.meta["source"] == str(tmp_path / name) and list(table["dec"]) == [2.0, -30.25]
        coords = read_positions(tmp_path / name)
        assert list(coords.ra.deg) == [150.0, 10.5] and list(coords.dec.deg) == [2.0, -30.25]
    Table({"ra": [10.0] * u.hourangle, "dec": [0.5] * u.deg}).write(tmp_path / "hours.ecsv")
    assert read_positions(tmp_path / "hours.ecsv").ra.deg[0] == pytest.approx(150.0)  # the column's own unit

    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none.csv'}: --blank table not found"):
        read_table(tmp_path / "none.csv", "--blank table")
    (tmp_path / "noise.fits").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(ValueError, match=f"{tmp_path / 'noise.fits'}: catalogue file: not a table astropy can read"):
        read_table(tmp_path / "noise.fits", "catalogue file")
    Table({"RA": [1.0], "dec": [2.0]}).write(tmp_path / "upper.csv")
    with pytest.raises(ValueError, match=f"{tmp_path / 'upper.csv'}: --centres table: no ra column \\(columns: RA, dec\\)"):
        read_positions(tmp_path / "upper.csv", "--centres table")
    Table({"ra": [1.0, 2.0, 3.0], "dec": [0.0, 91.0, float("nan")]}).write(tmp_path / "off.csv")
    with pytest.raises(ValueError, match=r"off.csv: positions table: 2 positions are not on the sky \(rows \[1, 2\]\)"):
        read_positions(tmp_path / "off.csv")


def test_setting_differences_names_each_changed_key_once_with_both_values():
    previous = {"seed": 1, "colour": {"lower": 0.0, "upper": 10.0}, "bands": ["g", "r"], "old": None, "same": 2}
    current = {"seed": 2, "colour": {"lower": 0.0, "upper": 20.0}, "bands": ["g", "r"], "new": "x", "same": 2}
    assert setting_differences(previous, current) == [
        "colour.upper 10.0 there, 20.0 now", "new (absent) there, 'x' now", "old None there, (absent) now",
        "seed 1 there, 2 now"]
    assert setting_differences(previous, current, keys=["seed", "same"]) == ["seed 1 there, 2 now"]
    assert setting_differences(previous, current, ignore=("seed", "new", "old")) == ["colour.upper 10.0 there, 20.0 now"]
    assert setting_differences({"a": "y" * 500}, {"a": "z"})[0] == f"a {repr('y' * 500)[:200]} there, 'z' now"
    assert setting_differences(current, current) == []
