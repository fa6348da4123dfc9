#!/usr/bin/env python
"""Install detectron2 into the running Python environment, by the first route that works.

Routes (``--route``, default ``auto`` tries them in this order):

``installed``
    A detectron2 that already imports (official git build, conda, a previous run) is kept as it is.
``git``
    The official source build from GitHub, which compiles detectron2's C++/CUDA ops. Tried only when
    github.com answers within a few seconds, so an offline machine never hangs on it.
``sdist``
    The PyPI source distribution ``pb1-detectron2==0.6`` (detectron2 v0.6's Python sources, Apache-2.0),
    which lacks the C++ sources: it is built with no extension, and a stand-in ``detectron2/_C.py``
    (``scripts/detectron2_C_stub.py``) is added whose every op raises an error naming the op and how to
    get a compiled build. One Pillow 10 incompatibility is fixed the way upstream fixed it. Works offline
    from PyPI alone.

The route taken is printed on the last line. Re-running is cheap: an importable detectron2 is kept.
"""
import argparse
import hashlib
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

GIT_URL = "git+https://github.com/facebookresearch/detectron2.git"
SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
STUB = Path(__file__).with_name("detectron2_C_stub.py")
GIT_PROBE_TIMEOUT_S = 5
GIT_BUILD_TIMEOUT_S = 3 * 3600


def log(message):
    print(f"[install_detectron2] {message}", flush=True)


def pip(*args, timeout=None):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, timeout=timeout)


def installed_description():
    """Return a one-line description of an importable detectron2, or None if there is none."""
    if importlib.util.find_spec("detectron2") is None:
        return None
    probe = (
        "import detectron2, detectron2.layers, detectron2.modeling\n"
        "try:\n"
        "    import detectron2._C as c\n"
        "    kind = 'without compiled ops (stand-in _C)' if getattr(c, 'DEEPCEE_STUB', False) "
        "else 'with compiled ops'\n"
        "except ImportError:\n"
        "    kind = 'without compiled ops'\n"
        "print(f'detectron2 {detectron2.__version__} {kind} at {detectron2.__file__}')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if result.returncode != 0:
        log("a detectron2 is installed but does not import:\n" + result.stderr.strip())
        return None
    return result.stdout.strip()


def github_reachable():
    try:
        with socket.create_connection(("github.com", 443), timeout=GIT_PROBE_TIMEOUT_S):
            return True
    except OSError as error:
        log(f"github.com is not reachable ({error}); skipping the git route")
        return False


def install_from_git():
    pip("install", "--no-build-isolation", GIT_URL, timeout=GIT_BUILD_TIMEOUT_S)


SDIST_PATCHES = {
    "setup.py": {
        # The sdist has no detectron2/layers/csrc, so there is nothing to compile.
        "ext_modules=get_extensions(),": "ext_modules=[],",
        # black only pretty-prints LazyConfig files; the 2021 pin conflicts with current click.
        '"black==21.4b2",': '"black",',
    },
    # Pillow 10 removed the alias Image.LINEAR, evaluated here at import; upstream detectron2 made this change.
    "detectron2/data/transforms/transform.py": {"interp=Image.LINEAR,": "interp=Image.BILINEAR,"},
}


def patch_sdist_tree(source_dir: Path):
    """Make the v0.6 sdist build with no C++ extension, run on current Pillow, and add the stand-in ``_C``."""
    for relative_path, replacements in SDIST_PATCHES.items():
        path = source_dir / relative_path
        text = path.read_text()
        for old, new in replacements.items():
            if old not in text:
                raise RuntimeError(f"{path}: expected to find {old!r}; the sdist is not the one we know")
            text = text.replace(old, new)
        path.write_text(text)
    shutil.copyfile(STUB, source_dir / "detectron2" / "_C.py")


def install_from_sdist(cache_dir: Path):
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
    if not archive.exists():
        # --no-build-isolation: pip runs the sdist's setup.py for metadata, and it imports torch.
        pip("download", "--no-deps", "--no-build-isolation", "--no-binary", ":all:",
            f"{SDIST_NAME}=={SDIST_VERSION}", "-d", str(cache_dir))
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise RuntimeError(f"{archive}: sha256 {digest} is not the expected {SDIST_SHA256}; delete it and retry")
    with tempfile.TemporaryDirectory(prefix="detectron2-sdist-") as tmp:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        (source_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        patch_sdist_tree(source_dir)
        pip("install", "--no-build-isolation", str(source_dir))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--route", choices=["auto", "installed", "git", "sdist"], default="auto")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "deepcee_d2")
    args = parser.parse_args()

    if args.route in ("auto", "installed"):
        description = installed_description()
        if description:
            log(f"route: installed -> {description}")
            return
        if args.route == "installed":
            sys.exit("[install_detectron2] route 'installed' asked for, but no importable detectron2 is installed")

    if args.route == "git" or (args.route == "auto" and github_reachable()):
        try:
            install_from_git()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            if args.route == "git":
                raise
            log(f"the git route failed ({error}); falling back to the PyPI sdist route")
        else:
            log(f"route: git -> {installed_description()}")
            return

    install_from_sdist(args.cache_dir)
    description = installed_description()
    if description is None:
        sys.exit("[install_detectron2] the sdist route installed detectron2 but it does not import (see above)")
    log(f"route: sdist ({SDIST_NAME}=={SDIST_VERSION}) -> {description}")


if __name__ == "__main__":
    main()
