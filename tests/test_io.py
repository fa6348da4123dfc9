import pytest

from deepcee_d2.io import atomic_output


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
