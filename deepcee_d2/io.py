"""Writing files so that nothing is ever left half-written, reading back what identifies them (and saying how a
resumed run's settings differ from those a folder was made with), and reading the tables users give
(catalogues, positions) with errors that name the file."""
import glob
import hashlib
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

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


def setting_differences(previous, current, keys=None, ignore=()):
    """How the settings ``current`` differ from the ``previous`` ones a folder was made with (two dicts of plain
    values): one phrase per differing key, ``"KEY <previous> there, <current> now"``, keys sorted, a key missing
    from one side shown as ``(absent)``, each value cut to 200 characters; a dict on both sides is compared key by
    key (``"outer.inner ..."``). Only ``keys`` when given; never those of ``ignore``. Empty when they
    agree. Every resume check words its refusal with it, so a user reads one phrase."""
    phrases = []
    for key in sorted(set(previous) | set(current) if keys is None else keys):
        if key in ignore:
            continue
        there, now = previous.get(key), current.get(key)
        if isinstance(there, dict) and isinstance(now, dict):
            phrases += [f"{key}.{phrase}" for phrase in setting_differences(there, now)]
        elif (key in previous, there) != (key in current, now):
            shown = [repr(value)[:200] if key in record else "(absent)" for value, record in
                     ((there, previous), (now, current))]
            phrases.append(f"{key} {shown[0]} there, {shown[1]} now")
    return phrases


# Formats astropy does not guess from every suffix (a .csv may be read as the first ascii reader that fits).
_TABLE_FORMATS = {".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}


def read_table(path, what="table"):
    """A user's table file (FITS, ECSV, CSV, VOTable), read by astropy: data, never unpickled code. Its
    ``meta["source"]`` is the path.

    Raises
    ------
    FileNotFoundError
        ``"<path>: <what> not found"``.
    ValueError
        The file is not a table astropy can read, naming the file and astropy's reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    read_format = _TABLE_FORMATS.get(path.suffix.lower())
    try:
        table = Table.read(path, format=read_format) if read_format else Table.read(path)
    except Exception as error:  # astropy raises many kinds for unreadable files; the file is what matters
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: {what}: not a table astropy can read (FITS, ECSV, CSV, VOTable): {reason}") from error
    table.meta["source"] = str(path)  # the checks of its rows name the file
    return table


def sky_positions(table, source):
    """The ``ra``, ``dec`` columns of ``table`` (deg, or any angle unit they carry) as a SkyCoord.

    Raises
    ------
    ValueError
        A column is missing, or rows are not on the sky (not finite, or ``|dec| > 90``), naming ``source``
        and the rows.
    """
    missing = [name for name in ("ra", "dec") if name not in table.colnames]
    if missing:
        raise ValueError(f"{source}: no {' or '.join(missing)} column (columns: {', '.join(table.colnames)}); "
                         "positions are ra and dec in degrees")
    ra, dec = (np.asarray(u.Quantity(table[name], u.deg).value, float) for name in ("ra", "dec"))
    bad = ~(np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90))
    if bad.any():
        raise ValueError(f"{source}: {bad.sum()} positions are not on the sky (rows {np.nonzero(bad)[0][:5].tolist()})")
    return SkyCoord(ra * u.deg, dec * u.deg)


def read_positions(path, what="positions table"):
    """Sky positions (ra, dec in deg) of a table file: `read_table`, then `sky_positions`."""
    return sky_positions(read_table(path, what), f"{path}: {what}")
