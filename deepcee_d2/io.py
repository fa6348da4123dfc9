"""Writing files so that nothing is ever left half-written."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The folder is created when missing. The temporary file exists (empty) when yielded, so writers must
    overwrite it (``Table.write(..., overwrite=True)``) and name their format, as its suffix is ``.tmp``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; outputs are for everyone who can read the folder
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
