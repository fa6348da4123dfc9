"""Writing files so that nothing is ever left half-written, and reading back what identifies them."""
import glob
import hashlib
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Temporary files are named ``.<target name>.<host>-<pid>.<random>.tmp`` beside their target: a run
# killed while writing leaves one behind, which the next write of the same target recognises and removes.
TEMP_SUFFIX = ".tmp"


def _host():
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())  # no "-" or "." inside the name's fields


def _temporary_prefix(path):
    return f".{path.name}."


def _writer_alive(name, prefix):
    """Whether the process that made the temporary ``name`` may still be writing it (another host: assume so)."""
    owner = name[len(prefix):].split(".", 1)[0]
    host, _, pid = owner.rpartition("-")
    if host != _host() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def remove_stale_temporaries(path):
    """Delete the temporary files of earlier, killed writes of ``path``; returns the paths removed."""
    path = Path(path)
    prefix = _temporary_prefix(path)
    removed = []
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{TEMP_SUFFIX}"):
        if stale.name.startswith(prefix) and not _writer_alive(stale.name, prefix):
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The folder is created when missing. The temporary file exists (empty) when yielded, so writers must
    overwrite it (``Table.write(..., overwrite=True)``) and name their format, as its suffix is
    `TEMP_SUFFIX`. Temporaries left by a killed earlier write of the same ``path`` (their process gone)
    are deleted first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    prefix = f"{_temporary_prefix(path)}{_host()}-{os.getpid()}."
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=TEMP_SUFFIX)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; outputs are for everyone who can read the folder
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def file_sha256(path):
    """SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
