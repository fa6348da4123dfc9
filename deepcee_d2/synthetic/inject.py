"""Simulated clusters injected into real g, r, i frames: the injection-recovery test of cluster finders.

`inject_clusters` reads a folder of frames (SDSS corrected frames ``frame-<band>-<run>-<camcol>-<field>.fits.bz2``,
the synthetic survey's ``<field>/frame-<band>.fits``, or a user's own imaging named ``frame-*.fits*``), draws
clusters from the simulator's cluster model (`clusters.realise_cluster`, the one `make_field` uses) and renders
them into every frame they touch, then writes the injected frames and the truth.

- **Frames and fields.** Each file's primary HDU must be a 2-D image in nanomaggies per pixel (``BUNIT``
  absent or ``nanomaggy``), with a celestial WCS and a ``FILTER`` keyword naming the band. Frames in one
  folder whose names differ only by the band (``frame-g-002583-2-0136`` / ``frame-r-...``) make one *field*;
  each field needs one frame per band. Each band keeps its own WCS: SDSS bands are offset by tens of pixels
  and rotated by 90 degrees against north.
- **Positions.** Clusters are placed per field, uniform on the sky within the field's *common footprint*
  (a pixel of the reference band, r, accepted when it lies inside every band's frame, ``edge_margin`` from
  each edge) and at least ``min_separation`` from every cluster already placed in any field; or the first
  at the field centre and any others as above (``placement="centre"``); or at positions the user gives.
  Each member's sky position goes through each band's own astropy WCS to that frame's pixels; a cluster is
  drawn into every frame its members touch, also those of neighbouring fields (SDSS fields overlap), so
  overlapping frames agree.
- **Shapes.** The GalSim image of a frame carries the frame's astropy WCS (`galsim.AstropyWCS`), so each
  galaxy is drawn through the local Jacobian of the WCS at its own position: a galaxy's shape and position
  angle on the sky are the same in every band whatever the frames' rotation, parity and pixel scale.
- **PSF.** Each frame's own, measured on its stars (`measure_psf`): isolated bright round point-like sources
  on the stellar locus of their Gaussian-fit widths, stacked (`deepcee_d2.psf.stacked_psf`) into an image of
  12" radius that GalSim interpolates (`EmpiricalPSF`). The injected galaxies thus get the frame's core,
  shape and wings in each band; the wings differ between SDSS bands (i holds 1-2 % more light beyond 6"
  than r), and aperture colours depend on them (BENCHMARKS.md, "PSF-matched colours"). Light beyond 12" is
  not drawn. SDSS corrected frames do not record the seeing in their header. Where the FWHM is given per
  band, a round Moffat of it is drawn instead (`instrument.PSF`, beta = `instrument.INJECTION_BETA`, 3.1,
  with the simulator's aureole): frames with too few stars.
- **Photon noise** of the injected light: the model image ``m`` (nanomaggies) becomes ``e = m k`` electrons,
  ``k`` = electrons per nanomaggy, and ``(Poisson(e) - e) / k`` is added with the model. The frame already
  holds the sky, read and source noise, and Poisson variances add, so this is exact for the extra light.
  ``k`` comes, in this order, from the user (per band), from the header keys ``GAIN`` (e-/DN) and ``NMGY``
  (nanomaggies per DN; the synthetic survey writes both), or for SDSS frames (``CAMCOL`` key, no ``GAIN``)
  from ``NMGY`` and the gain of the camera column and band in the SDSS frame data model (`SDSS_GAIN`). SDSS's
  ``NMGY`` is the frame's mean calibration: the per-column flat field (the ``CALIBVEC`` in HDU 1) varies a few
  per cent across the frame, which changes the injected noise by half that. Pixels are not re-saturated.
- **Galactic reddening.** Real frames are seen through the Milky Way's dust; the simulator's clusters are not.
  With ``dust_map_dir`` (the SFD map's folder, `deepcee_d2.dust`) every member is dimmed in each band by the
  extinction at its position, as a real cluster there would be, so a survey that dereddens
  (``DEEPCEE.REDSHIFT.DUST_MAP_DIR``) measures the injected clusters' true colours. The truth keeps the
  intrinsic magnitudes (``bcg_gmag``, ``bcg_imag``).

Output (`inject_clusters`)::

    <out>/clusters.fits       truth: the cluster schema + the simulator's extras (as make_field writes),
                              field, x, y (BCG in the field's reference-band frame, 0-based), bcg_gmag,
                              bcg_imag, frames (the injected frames holding the BCG, ';'-separated)
    <out>/injection.ecsv      one row per frame: input, output, field, band, fwhm, fwhm_source, n_stars,
                              electrons_per_nmgy, k_source, n_clusters, n_galaxies; settings in its meta
    <out>/<same relative path as the input, .fits or .fits.gz>   every HDU and header card of the input,
                              the primary image injected, INJ* cards added

Every file is written to a temporary name and renamed. ``injection.ecsv`` and ``clusters.fits`` are written
before the frames, from the settings alone, so a rerun with the same settings writes only the frames still
missing and one with other settings (or other input frames) is refused. The same seed gives byte-identical
files.
"""
import functools
import gzip
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import galsim
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs.utils import proj_plane_pixel_scales
from tqdm import tqdm

from ..cosmology import DEFAULT_COSMOLOGY
from ..data.catalogs import CLUSTER_COLUMNS, check_cluster_table
from ..data.frames import ImagingError, open_fits, read_frame_header
from ..dust import EXTINCTION_PER_EBV, check_dust_map, galactic_reddening
from ..io import atomic_output, setting_differences, sky_positions
from ..psf import stacked_psf, stellar_locus
from . import render
from .clusters import ClusterSpec, check_redshifts, realise_cluster, realise_from_spec
from .field import CLUSTER_EXTRAS, DEFAULT_MAG_LIMIT, _empty_cluster_table
from .instrument import BANDS, PSF, WING_FRACTION, check_bands

logger = logging.getLogger(__name__)

TRUTH_FILE = "clusters.fits"
FRAMES_FILE = "injection.ecsv"
TRUTH_EXTRAS = ("bcg_gmag", "bcg_imag", "frames")
# Gain (electrons per DN) by camera column and band: the SDSS frame data model
# (data.sdss.org/datamodel/files/BOSS_PHOTOOBJ/frames/RERUN/RUN/CAMCOL/frame.html).
SDSS_GAIN = {1: {"g": 3.32, "r": 4.71, "i": 5.165}, 2: {"g": 3.855, "r": 4.6, "i": 6.565},
             3: {"g": 3.845, "r": 4.72, "i": 4.86}, 4: {"g": 3.995, "r": 4.76, "i": 4.885},
             5: {"g": 4.05, "r": 4.725, "i": 4.64}, 6: {"g": 4.035, "r": 4.895, "i": 4.76}}
REFERENCE_BAND = "r"
# Stars for the FWHM: peak above 50 sigma of the sky, no other source within 15 px, ellipticity below 0.2,
# at least 5 (the 150 brightest used); Gaussian fits on 25 x 25 px stamps; their stellar locus
# (`deepcee_d2.psf.stellar_locus`).
_STAR_PEAK_SNR = 50.0
_STAR_ISOLATION_PX = 15.0
_STAR_MAX_ELLIPTICITY = 0.2
_STAMP_HALF = 12
MIN_STARS = 5
_MAX_STARS = 150
# The measured PSF image (`measure_psf`): the stars' stack within this radius (arcsec), kept as stacked within
# the core radius; its ring medians beyond.
_PSF_STACK_RADIUS, _PSF_STACK_CORE = 12.0, 3.0
_PLACEMENT_ATTEMPTS = 5000
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".fz")
_GZIP_LEVEL = 6


class InjectionError(ValueError):
    """A frame or a setting that injection cannot use; the message names the file or the setting."""


@dataclass
class Frame:
    """One input frame: where it is, its band and field, its WCS and shape (rows, columns), its header."""

    path: Path
    relative: str
    field: str
    band: str
    wcs: object
    shape: tuple
    header: fits.Header

    def contains(self, x, y, margin=0.0):
        """Whether 0-based pixel positions lie inside the frame, at least ``margin`` pixels from its edges."""
        height, width = self.shape
        return ((x >= -0.5 + margin) & (x <= width - 0.5 - margin)
                & (y >= -0.5 + margin) & (y <= height - 0.5 - margin))

    def pixel_scale(self):
        """Mean pixel side, `~astropy.units.Quantity` [arcsec]."""
        return float(np.mean(proj_plane_pixel_scales(self.wcs))) * u.deg.to(u.arcsec) * u.arcsec


def _field_name(relative, band):
    """``folder/frame-g-002583-2-0136.fits.bz2`` -> ``folder/002583-2-0136``; ``f000/frame-g.fits`` -> ``f000``."""
    path = Path(relative)
    stem = path.name.split(".fits")[0]
    tokens = [token for token in stem.split("-") if token != band]
    if tokens and tokens[0] == "frame":
        tokens = tokens[1:]
    parts = [part for part in (*path.parent.parts, "-".join(tokens)) if part not in ("", ".")]
    return "/".join(parts) or "."


def output_name(relative, compress=True):
    """Output path of an input frame: compression suffix dropped, ``.gz`` added when ``compress``."""
    name = str(relative)
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name + (".gz" if compress else "")


def read_frame(path, root):
    """The `Frame` of one FITS file, or `InjectionError` naming the file and what is missing (a 2-D image in
    nanomaggies with a FILTER and a celestial WCS, read by `deepcee_d2.data.frames.read_frame_header`)."""
    path = Path(path)
    try:
        frame = read_frame_header(path)
    except ImagingError as error:
        raise InjectionError(f"{error}; injection places clusters through each frame's WCS") from error
    relative = path.relative_to(root).as_posix()
    return Frame(path, relative, _field_name(relative, frame.band), frame.band, frame.wcs, frame.shape,
                 fits.getheader(path, 0))


def read_frames(root, bands=BANDS, pattern="frame-*.fits*"):
    """Frames under ``root`` grouped by field: ``{field: {band: Frame}}``, fields sorted by name.

    Raises
    ------
    InjectionError
        A frame without WCS, band or nanomaggy image (naming the file), a field lacking one of ``bands`` or
        holding two frames of one band, or no frame at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder not found")
    bands = check_bands(bands)
    fields = {}
    for path in sorted(root.rglob(pattern)):
        if path.name.endswith(".tmp"):
            continue
        frame = read_frame(path, root)
        if frame.band not in bands:
            continue
        field = fields.setdefault(frame.field, {})
        if frame.band in field:
            raise InjectionError(f"{path}: field {frame.field} already has a {frame.band} frame "
                                 f"({field[frame.band].path})")
        field[frame.band] = frame
    if not fields:
        raise InjectionError(f"{root}: no {pattern} frames in bands {''.join(bands)}")
    for name, field in fields.items():
        missing = [band for band in bands if band not in field]
        if missing:
            raise InjectionError(f"{root}: field {name} has no frame in band(s) {missing} "
                                 f"(has {sorted(field)}); injection needs every band of {''.join(bands)}")
    return dict(sorted(fields.items()))


def _gaussian_fit(stamp):
    """``(sigma, ellipticity)`` of a 2-D Gaussian least-squares fit to a stamp centred on a source (pixels;
    sigma the geometric mean of the axes, ellipticity 1 - minor / major), or None when the fit fails."""
    from astropy.modeling import fitting, models

    half_y, half_x = (n // 2 for n in stamp.shape)
    guess = models.Gaussian2D(amplitude=float(stamp[half_y, half_x]), x_mean=half_x, y_mean=half_y,
                              x_stddev=1.5, y_stddev=1.5)
    rows, columns = np.indices(stamp.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # non-convergence is checked below
        fit = fitting.TRFLSQFitter()(guess, columns, rows, stamp)
    axes = np.abs([fit.x_stddev.value, fit.y_stddev.value])
    if not (np.all(np.isfinite(axes)) and axes.min() > 0.1 and np.hypot(fit.x_mean - half_x, fit.y_mean - half_y) < 2):
        return None
    return float(np.sqrt(axes.prod())), float(1.0 - axes.min() / axes.max())


@functools.lru_cache(maxsize=16)
def _psf_sigma_table(pixel_scale_arcsec):
    """Gaussian-fit sigma (pixels) of the injection's Moffat PSFs of FWHM 1-20 pixels drawn at ``pixel_scale_arcsec``,
    averaged over sub-pixel centres, as stars fall anywhere in a pixel."""
    fwhm = np.geomspace(1.0, 20.0, 20) * pixel_scale_arcsec
    size = 2 * _STAMP_HALF + 1
    phases = [(0.0, 0.0), (0.5, 0.5), (0.25, -0.25), (-0.25, 0.5)]
    psfs = [PSF(float(value)) for value in fwhm]  # with the aureole, as the frame's stars have it
    sigma = [np.mean([_gaussian_fit(render.add_psf_wing(
        psf.profile().drawImage(nx=size, ny=size, scale=pixel_scale_arcsec, offset=phase).array.astype(np.float64),
        psf, pixel_scale_arcsec))[0] for phase in phases]) for psf in psfs]
    return np.array(sigma), fwhm


@dataclass(frozen=True, eq=False)
class EmpiricalPSF:
    """A frame's PSF as its stars show it (`measure_psf`): galaxies injected into the frame are convolved with
    it, so they get the frame's own core, wings and ellipticity in each band, as its real galaxies do.

    Attributes
    ----------
    image : (n, n) float64 array
        Unit-sum PSF in the frame's pixels on the middle pixel, the pixel response included
        (`deepcee_d2.psf.stacked_psf`).
    jacobian : `galsim.JacobianWCS`
        The frame's WCS linearised at its centre: puts the image on the sky.
    fwhm : float
        FWHM (arcsec) of the injection's Moffat whose image gives the stars' Gaussian-fit sigma (the drawing
        windows' size; the records).
    n_stars : int
        Stars stacked: those of the stellar locus with the stack's room to the frame's edges.
    """

    image: np.ndarray
    jacobian: object
    fwhm: float
    n_stars: int
    wing = 0.0  # the wings are in the image: `render.add_psf_wing` adds none
    draw_method = "no_pixel"  # and so are the pixels

    @property
    def min_window_half_width(self):
        """Pixels: the image's wings reach its edge, so a smaller drawing window would cut part of each galaxy's
        light (up to ~5 % for faint ones, whose windows are smallest)."""
        return self.image.shape[0] // 2

    def profile(self):
        """The unit-flux GalSim profile of the image, on the sky."""
        return galsim.InterpolatedImage(galsim.Image(self.image, wcs=self.jacobian), normalization="flux", flux=1.0)


def measure_psf(image, wcs, source="image"):
    """The PSF of a sky-subtracted frame, measured on its stars.

    Sources peaking above 50 sigma of the sky (`photutils.detection.DAOStarFinder`, whose sharpness and
    roundness limits drop cosmic rays and extended sources), with no other such source within 15 px and an
    ellipticity below 0.2, give the sigma of a 2-D Gaussian fitted to their 25 x 25 px stamp. Stars share the
    smallest sigma (galaxies are wider, saturated cores flat-topped and wider): their stellar locus
    (`deepcee_d2.psf.stellar_locus`). The stars on it are stacked into the PSF image (`stacked_psf`, 12" from
    the centre, kept as stacked within 3"; those closer to an edge are left out). The locus' median sigma
    gives the FWHM of the Moffat profile (the one the injection draws for a given FWHM) whose image
    at the frame's pixel scale gives the same fitted sigma, averaged over sub-pixel centres: the fit's
    pixelisation and the profile's non-Gaussian shape cancel, down to undersampled 1-pixel FWHMs.

    Parameters
    ----------
    image : (ny, nx) array
        Sky-subtracted frame (any flux unit).
    wcs : `~astropy.wcs.WCS`
        Its celestial WCS (for the pixel scale).
    source : str
        Names the frame in errors.

    Returns
    -------
    EmpiricalPSF

    Raises
    ------
    InjectionError
        Fewer than `MIN_STARS` stars (give the FWHM instead).
    """
    from photutils.detection import DAOStarFinder

    data = np.asarray(image, dtype=np.float64)
    _, median, std = sigma_clipped_stats(data, sigma=3.0, maxiters=5)
    data = data - median
    scale = float(np.mean(proj_plane_pixel_scales(wcs))) * 3600.0
    # A 1.4" guess: DAOStarFinder's kernel only has to pick up point-like peaks.
    found = DAOStarFinder(threshold=_STAR_PEAK_SNR * std, fwhm=1.4 / scale, exclude_border=True)(data)
    sigma, positions = [], []
    if found is not None and len(found):
        columns = ("x_centroid", "y_centroid") if "x_centroid" in found.colnames else ("xcentroid", "ycentroid")
        x, y = np.asarray(found[columns[0]], float), np.asarray(found[columns[1]], float)
        distance = np.hypot(x[:, None] - x[None], y[:, None] - y[None])
        np.fill_diagonal(distance, np.inf)
        height, width = data.shape
        inside = ((x >= _STAMP_HALF) & (x < width - _STAMP_HALF - 1) & (y >= _STAMP_HALF)
                  & (y < height - _STAMP_HALF - 1))
        candidates = np.nonzero(inside & (distance.min(axis=1) > _STAR_ISOLATION_PX))[0]
        # The brightest first: enough for a median, and a crowded low-latitude frame stays quick.
        for k in candidates[np.argsort(-np.asarray(found["peak"])[candidates])][:_MAX_STARS]:
            x0, y0 = int(round(x[k])), int(round(y[k]))
            fit = _gaussian_fit(data[y0 - _STAMP_HALF:y0 + _STAMP_HALF + 1, x0 - _STAMP_HALF:x0 + _STAMP_HALF + 1])
            if fit is not None and fit[1] < _STAR_MAX_ELLIPTICITY:
                sigma.append(fit[0])
                positions.append((x[k], y[k]))
    if len(sigma) < MIN_STARS:
        raise InjectionError(f"{source}: only {len(sigma)} isolated unsaturated stars to measure the PSF "
                             f"(need {MIN_STARS}); give the FWHM of this band")
    locus, members = stellar_locus(sigma, MIN_STARS)
    if members.sum() < MIN_STARS:
        raise InjectionError(f"{source}: only {members.sum()} stars on the stellar locus (need {MIN_STARS}); "
                             "give the FWHM of this band")
    table_sigma, table_fwhm = _psf_sigma_table(round(scale, 6))
    if not table_sigma[0] <= locus <= table_sigma[-1]:
        raise InjectionError(f"{source}: measured PSF sigma {locus:.2f} px is outside 1-20 px FWHM; "
                             "give the FWHM of this band")
    half = int(np.ceil(_PSF_STACK_RADIUS / scale))
    x, y = np.asarray(positions)[members].T
    height, width = data.shape
    room = (x >= half + 2) & (x < width - half - 3) & (y >= half + 2) & (y < height - half - 3)
    if not room.any():
        raise InjectionError(f"{source}: no star of the stellar locus lies {half + 2} px from the edges; "
                             "give the FWHM of this band")
    stacked = stacked_psf(data, x[room], y[room], half, _PSF_STACK_CORE / scale)
    jacobian = galsim.AstropyWCS(wcs=wcs, origin=galsim.PositionD(-1.0, -1.0)).local(
        image_pos=galsim.PositionD((width - 1) / 2.0, (height - 1) / 2.0))
    return EmpiricalPSF(stacked, jacobian, float(np.interp(locus, table_sigma, table_fwhm)), int(room.sum()))


def electrons_per_nanomaggy(frame, given=None):
    """Electrons per nanomaggy ``k`` of a frame and where it came from (module docstring).

    Raises
    ------
    InjectionError
        When neither ``given`` nor the header (GAIN and NMGY, or SDSS CAMCOL and NMGY) tells it.
    """
    if given is not None:
        return float(given), "given"
    header = frame.header
    if "NMGY" in header and "GAIN" in header:
        return float(header["GAIN"]) / float(header["NMGY"]), "header GAIN/NMGY"
    if "NMGY" in header and "CAMCOL" in header and int(header["CAMCOL"]) in SDSS_GAIN:
        gain = SDSS_GAIN[int(header["CAMCOL"])][frame.band]
        return gain / float(header["NMGY"]), f"SDSS camcol {int(header['CAMCOL'])} gain/NMGY"
    raise InjectionError(f"{frame.path}: no GAIN and NMGY (or SDSS CAMCOL and NMGY) header keys to turn "
                         f"nanomaggies into electrons; give electrons per nanomaggy for band {frame.band}")


def _reference(field):
    return field[REFERENCE_BAND] if REFERENCE_BAND in field else next(iter(field.values()))


def _in_footprint(field, coords, margin):
    """Whether sky positions lie inside every band's frame of ``field``, ``margin`` (angle) from the edges."""
    inside = np.ones(len(coords), dtype=bool)
    for frame in field.values():
        x, y = frame.wcs.world_to_pixel(coords)
        inside &= frame.contains(x, y, (margin / frame.pixel_scale()).to_value(u.dimensionless_unscaled))
    return inside


def place_clusters(rng, fields, spec):
    """BCG positions for ``spec`` in every field: ``[(field, SkyCoord), ...]`` (module docstring).

    Raises
    ------
    InjectionError
        When a field cannot hold ``spec.per_field`` clusters with the separation and margin asked for.
    """
    placed = []
    for name, field in fields.items():
        reference = _reference(field)
        height, width = reference.shape
        n_random = spec.per_field
        if spec.placement == "centre" and spec.per_field:
            placed.append((name, reference.wcs.pixel_to_world((width - 1) / 2, (height - 1) / 2)))
            n_random -= 1
        if not n_random:  # one centred cluster draws nothing, as in synthetic fields
            continue
        # Candidates uniform over the reference frame, kept inside every band's frame; each cluster placed
        # removes the candidates too close to it (also those of later fields).
        candidates = reference.wcs.pixel_to_world(rng.uniform(-0.5, width - 0.5, _PLACEMENT_ATTEMPTS),
                                                  rng.uniform(-0.5, height - 0.5, _PLACEMENT_ATTEMPTS))
        free = _in_footprint(field, candidates, spec.edge_margin)
        for _, position in placed:
            free &= candidates.separation(position) >= spec.min_separation
        for _ in range(n_random):
            if not free.any():
                raise InjectionError(f"field {name}: cannot place {spec.per_field} clusters at least "
                                     f"{spec.min_separation} apart and {spec.edge_margin} from the edges of its "
                                     "common footprint; lower min_separation, edge_margin or clusters per field")
            position = candidates[np.argmax(free)]
            placed.append((name, position))
            free &= candidates.separation(position) >= spec.min_separation
    return placed


def _given_positions(fields, table):
    """Check a table of clusters to inject (ra, dec [deg], z, richness); ``[(field, SkyCoord), ...]``."""
    source = f"clusters table {table.meta['source']}" if table.meta.get("source") else "clusters table"
    missing = [name for name in ("ra", "dec", "z", "richness") if name not in table.colnames]
    if missing:
        raise InjectionError(f"{source}: missing column(s) {missing}; need ra, dec (deg), z, richness")
    check_redshifts(table["z"], f"{source} z")
    if not np.all(np.asarray(table["richness"], dtype=float) > 0):
        raise InjectionError(f"{source} richness: must be positive")
    coords = sky_positions(table, source)
    inside = {name: _in_footprint(field, coords, 0 * u.arcsec) for name, field in fields.items()}
    placed = []
    for k, coord in enumerate(coords):
        holders = [name for name, flags in inside.items() if flags[k]]
        if not holders:
            raise InjectionError(f"{source} row {k}: {coord.to_string('decimal', precision=5)} lies in no "
                                 "field's common footprint")
        placed.append((holders[0], coord))
    return placed


def _streams(seed):
    """Independent seed sequences of the placement, the members and the noise."""
    return np.random.SeedSequence(int(seed)).spawn(3)


def plan_clusters(fields, clusters, seed, mag_limit=DEFAULT_MAG_LIMIT, cosmology=DEFAULT_COSMOLOGY):
    """Place and realise the clusters: their truth rows and member tables (ra, dec and galaxy columns).

    Placement and members use their own children of ``seed``, so the same seed and frames give the same
    clusters. Ids are ``<field>-c<k>``, k counting within the field.
    """
    placement_rng, cluster_rng = (np.random.default_rng(child) for child in _streams(seed)[:2])
    if isinstance(clusters, Table):
        placed = _given_positions(fields, clusters)
        parameters = [(float(z), float(r)) for z, r in zip(clusters["z"], clusters["richness"])]
    elif isinstance(clusters, ClusterSpec):
        placed = place_clusters(placement_rng, fields, clusters)
        parameters = [None] * len(placed)
    else:
        raise InjectionError(f"clusters: need a ClusterSpec or an astropy Table, got {type(clusters).__name__}")
    rows, members, counters = [], [], {}
    for (field, position), given in zip(placed, parameters):
        cluster_id = f"{field}-c{counters.setdefault(field, 0)}"
        counters[field] += 1
        if given is None:
            truth, galaxies = realise_from_spec(cluster_rng, clusters, position, cluster_id, mag_limit, cosmology)
        else:
            truth, galaxies = realise_cluster(cluster_rng, position, *given, cluster_id, mag_limit, cosmology)
        reference = _reference(fields[field])
        x, y = reference.wcs.world_to_pixel(position)
        truth.update(field=field, x=float(x), y=float(y), bcg_gmag=float(galaxies["g_mag"][0]),
                     bcg_imag=float(galaxies["i_mag"][0]))
        rows.append(truth)
        members.append(galaxies)
    return rows, members


def _truth_table(rows, fields, compress):
    columns = CLUSTER_COLUMNS + CLUSTER_EXTRAS + TRUTH_EXTRAS
    if not rows:
        table = _empty_cluster_table()
        for name in TRUTH_EXTRAS:
            table[name] = np.array([], dtype=str if name == "frames" else float)
        return table
    frames = [frame for field in fields.values() for frame in field.values()]
    for row in rows:
        bcg = SkyCoord([row["ra"]] * u.deg, [row["dec"]] * u.deg)
        row["frames"] = ";".join(output_name(frame.relative, compress) for frame in frames
                                 if frame.contains(*frame.wcs.world_to_pixel(bcg))[0])
    table = Table(rows=[[row[name] for name in columns] for row in rows], names=columns)
    return check_cluster_table(table, "injection truth")


def _frame_members(frame, members):
    """Members near the frame (their window can reach it), with their pixel positions ``x``, ``y`` in it."""
    pad = render.MAX_HALF_WIDTH
    chosen = []
    for table in members:
        x, y = frame.wcs.world_to_pixel(SkyCoord(table["ra"], table["dec"], unit=u.deg))
        near = frame.contains(x, y, margin=-pad)
        if near.any():
            table = table[near]
            table["x"], table["y"] = x[near], y[near]
            chosen.append(table)
    return chosen


def render_clusters(frame, members, psf):
    """Noiseless image (nanomaggies per pixel, float64, the frame's shape) of the members drawn into ``frame``
    through its WCS with ``psf``: the frame's own (`EmpiricalPSF`), or for a given FWHM the round Moffat
    `instrument.PSF` with the simulator's aureole; and the number of galaxies drawn."""
    height, width = frame.shape
    model = np.zeros((height, width), dtype=np.float64)
    # GalSim's FITS-based WCSs count pixels from 1; origin (-1, -1) makes them astropy's 0-based pixels.
    image = galsim.Image(model, xmin=0, ymin=0,
                         wcs=galsim.AstropyWCS(wcs=frame.wcs, origin=galsim.PositionD(-1.0, -1.0)))
    drawn = 0
    for table in members:
        drawn += render.draw_galaxies(image, table, frame.band, psf)
    render.add_psf_wing(model, psf, frame.pixel_scale().to_value(u.arcsec))
    return model, drawn


def add_photon_noise(model, electrons_per_nmgy, rng):
    """``model`` plus the Poisson noise of its light: ``(Poisson(m k) - m k) / k`` (nanomaggies per pixel)."""
    electrons = np.clip(model, 0.0, None) * electrons_per_nmgy
    lit = electrons > 0
    noisy = model.copy()
    noisy[lit] += (rng.poisson(electrons[lit]) - electrons[lit]) / electrons_per_nmgy
    return noisy


def _redden(members, bands, dust_map_dir):
    """The members dimmed in each band by the Galactic extinction of the SFD map at their positions."""
    reddened = []
    for table in members:
        table = table.copy()
        ebv = galactic_reddening(SkyCoord(table["ra"], table["dec"], unit=u.deg), dust_map_dir)
        for band in bands:
            table[f"{band}_mag"] = table[f"{band}_mag"] + EXTINCTION_PER_EBV[band] * ebv
        reddened.append(table)
    return reddened


def _settings(input_root, fields, clusters, seed, bands, fwhm, electrons, noise, mag_limit, compress, cosmology,
              dust_map_dir=""):
    if isinstance(clusters, ClusterSpec):
        described = {"per_field": clusters.per_field, "z_range": list(clusters.z_range),
                     "richness_range": list(clusters.richness_range), "min_members": clusters.min_members,
                     "placement": clusters.placement,
                     "min_separation_arcsec": float(clusters.min_separation.to_value(u.arcsec)),
                     "edge_margin_arcsec": float(clusters.edge_margin.to_value(u.arcsec))}
    else:
        described = {"table": [[float(row[name]) for name in ("ra", "dec", "z", "richness")] for row in clusters]}
    settings = {"input": str(Path(input_root).resolve()), "seed": int(seed), "bands": "".join(bands),
                "clusters": described, "fwhm": dict(fwhm or {}), "psf_wing": WING_FRACTION,
                "measured_psf": "stacked stars",
                "electrons_per_nmgy": dict(electrons or {}),
                "noise": bool(noise), "mag_limit": float(mag_limit), "compress": bool(compress),
                "cosmology": repr(cosmology),
                "frames": [frame.relative for field in fields.values() for frame in field.values()]}
    if dust_map_dir:  # only then: folders injected before the option existed still resume
        settings["dust_map"] = str(dust_map_dir)
    return json.loads(json.dumps(settings))  # as an ECSV round trip gives it back: lists, plain numbers


def _check_same_settings(path, settings):
    done = json.loads(json.dumps(dict(Table.read(path, format="ascii.ecsv").meta.get("injection", {}))))
    differences = setting_differences(done, settings)
    if differences:
        raise InjectionError(f"{path.parent}: already injected with other settings ({path.name}): "
                             + "; ".join(differences) + f"; write to a new folder or delete {path.parent}")


def _check_folders(input_root, output_root):
    source, target = Path(input_root).resolve(), Path(output_root).resolve()
    if target == source or source in target.parents or target in source.parents:
        raise InjectionError(f"{output_root}: the output folder must lie outside the input folder {input_root} "
                             "and not contain it (the originals are never overwritten)")


def _read_image(frame):
    with open_fits(frame.path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


def _write_injected(frame, model, cards, path, compress):
    """Write the input file's HDUs with ``model`` added to the primary image and ``cards`` added to its header."""
    with open_fits(frame.path) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    hdul[0].data = (np.asarray(hdul[0].data, dtype=np.float64) + model).astype(np.float32)
    for key, value in cards.items():
        hdul[0].header[key] = value
    with atomic_output(path) as temporary:
        if compress:
            # No file name or time in the gzip header: the same seed gives byte-identical files.
            with open(temporary, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                              compresslevel=_GZIP_LEVEL, mtime=0) as stream:
                hdul.writeto(stream)
        else:
            hdul.writeto(temporary, overwrite=True)


def _frame_psf(frame, fwhm):
    """The PSF injected into ``frame``: a Moffat (`instrument.PSF`) of the FWHM given for its band, else its
    own (`measure_psf`)."""
    if fwhm and frame.band in fwhm:
        return PSF(float(fwhm[frame.band]))
    return measure_psf(_read_image(frame), frame.wcs, str(frame.path))


def _frame_rows(fields, members, fwhm, electrons, compress, progress):
    """One row per frame: FWHM (given or measured), electrons per nanomaggy, what lands in it; and the PSF of
    each frame (`_frame_psf`) by its ``relative`` name."""
    rows, psfs = [], {}
    frames = [frame for field in fields.values() for frame in field.values()]
    for frame in tqdm(frames, desc="frames (PSF, gain)", unit="frame", disable=not progress):
        psf = psfs[frame.relative] = _frame_psf(frame, fwhm)
        value, how = psf.fwhm, "measured" if isinstance(psf, EmpiricalPSF) else "given"
        n_stars = psf.n_stars if how == "measured" else 0
        k, k_source = electrons_per_nanomaggy(frame, (electrons or {}).get(frame.band))
        near = _frame_members(frame, members)
        rows.append({"input": frame.relative, "output": output_name(frame.relative, compress),
                     "field": frame.field, "band": frame.band, "fwhm": round(value, 4), "fwhm_source": how,
                     "n_stars": n_stars, "electrons_per_nmgy": k, "k_source": k_source,
                     "n_clusters": len(near), "n_galaxies": int(sum(len(t) for t in near))})
    return Table(rows=rows, names=list(rows[0])), psfs


def _check_per_band(values, name, bands):
    if values is None:
        return {}
    unknown = [band for band in values if band not in bands]
    if unknown:
        raise InjectionError(f"{name}: band(s) {unknown} not among {''.join(bands)}")
    bad = [band for band, value in values.items() if not float(value) > 0]
    if bad:
        raise InjectionError(f"{name}: must be positive, got {values}")
    return {band: float(value) for band, value in values.items()}


def inject_clusters(input_root, output_root, clusters=ClusterSpec(placement="random"), seed=0, bands=BANDS,
                    fwhm=None, electrons_per_nmgy=None, noise=True, mag_limit=DEFAULT_MAG_LIMIT, compress=True,
                    cosmology=DEFAULT_COSMOLOGY, progress=True, dust_map_dir=None):
    """Inject simulated clusters into the frames under ``input_root``; write frames and truth to ``output_root``.

    Parameters
    ----------
    input_root : str or Path
        Folder searched recursively for ``frame-*.fits*`` (module docstring). Never written to.
    output_root : str or Path
        Output folder (module docstring), outside ``input_root``.
    clusters : `~deepcee_d2.synthetic.ClusterSpec` or `~astropy.table.Table`
        Clusters per field and how they are drawn and placed (``placement`` ``"random"``: anywhere in the
        common footprint; ``"centre"``: its reference-band frame's centre), or one row per cluster to inject
        exactly there: ``ra``, ``dec`` (deg, the BCG), ``z``, ``richness`` (target R_L*).
    seed : int
        Placement, members and noise follow from it.
    bands : sequence of str
        Bands to inject; every field needs a frame in each.
    fwhm : dict of str -> float, optional
        PSF FWHM (arcsec) per band for every frame, drawn as the round Moffat `instrument.PSF` with the
        simulator's aureole; the PSF of bands left out is measured per frame on its stars (`measure_psf`).
    electrons_per_nmgy : dict of str -> float, optional
        Electrons per nanomaggy per band; bands left out come from each frame's header.
    noise : bool
        Add the photon noise of the injected light.
    mag_limit : float
        Faintest r magnitude of the members drawn.
    compress : bool
        Write ``.fits.gz`` (else ``.fits``).
    cosmology : `~astropy.cosmology.FLRW`
    progress : bool
        Show tqdm progress bars.
    dust_map_dir : str or Path, optional
        Folder of the SFD dust map: members are dimmed by the Galactic extinction at their positions (module
        docstring); None: not (right for the synthetic sky).

    Returns
    -------
    truth : `~astropy.table.Table`
        As written to ``clusters.fits``.
    frames : `~astropy.table.Table`
        As written to ``injection.ecsv``.

    Raises
    ------
    InjectionError
        Unusable frames (naming the file), a field missing a band, impossible placement, a FWHM that cannot
        be measured, unknown gain, an output folder already made with other settings.
    """
    bands = check_bands(bands)
    fwhm = _check_per_band(fwhm, "fwhm", bands)
    electrons_per_nmgy = _check_per_band(electrons_per_nmgy, "electrons_per_nmgy", bands)
    if not 15.0 <= mag_limit <= 27.0:
        raise InjectionError(f"mag_limit: {mag_limit} is outside 15-27")
    _check_folders(input_root, output_root)
    if dust_map_dir:
        dust_map_dir = check_dust_map(dust_map_dir).resolve()
        unknown = [band for band in bands if band not in EXTINCTION_PER_EBV]
        if unknown:
            raise InjectionError(f"dust_map_dir: no extinction coefficient for band(s) {unknown} "
                                 f"(known: {''.join(EXTINCTION_PER_EBV)})")
    output_root = Path(output_root)
    fields = read_frames(input_root, bands)
    rows, members = plan_clusters(fields, clusters, seed, mag_limit, cosmology)  # checks a table of clusters
    if dust_map_dir:
        members = _redden(members, bands, dust_map_dir)
    settings = _settings(input_root, fields, clusters, seed, bands, fwhm, electrons_per_nmgy, noise, mag_limit,
                         compress, cosmology, dust_map_dir)
    frames_path, truth_path = output_root / FRAMES_FILE, output_root / TRUTH_FILE
    if frames_path.is_file():
        _check_same_settings(frames_path, settings)
        table = Table.read(frames_path, format="ascii.ecsv")
        truth = Table.read(truth_path) if truth_path.is_file() else _truth_table(rows, fields, compress)
        psfs = {}  # measured again for the frames still to write
    else:
        table, psfs = _frame_rows(fields, members, fwhm, electrons_per_nmgy, compress, progress)
        table.meta["injection"] = settings
        truth = _truth_table(rows, fields, compress)
    if not truth_path.is_file():
        with atomic_output(truth_path) as temporary:
            truth.write(temporary, format="fits", overwrite=True)
    if not frames_path.is_file():
        with atomic_output(frames_path) as temporary:
            table.write(temporary, format="ascii.ecsv", overwrite=True)

    noise_seeds = _streams(seed)[2].spawn(len(table))
    by_relative = {frame.relative: frame for field in fields.values() for frame in field.values()}
    for row, noise_seed in tqdm(list(zip(table, noise_seeds)), desc="injecting", unit="frame",
                                disable=not progress):
        path = output_root / row["output"]
        if path.is_file():
            continue
        frame = by_relative[row["input"]]
        psf = psfs.get(row["input"]) or _frame_psf(frame, fwhm)
        model, drawn = render_clusters(frame, _frame_members(frame, members), psf)
        if noise:
            model = add_photon_noise(model, float(row["electrons_per_nmgy"]), np.random.default_rng(noise_seed))
        cards = {"INJECTED": (True, "clusters added by deepcee_d2.synthetic.inject"),
                 "INJSEED": (int(seed), "seed of the injection"),
                 "INJNCLUS": (int(row["n_clusters"]), "clusters with members near the frame"),
                 "INJNGAL": (int(drawn), "galaxies drawn into this frame"),
                 "INJFWHM": (float(row["fwhm"]), f"injected PSF FWHM, arcsec, {row['fwhm_source']}"),
                 "INJPSF": ("stars" if isinstance(psf, EmpiricalPSF) else "Moffat",
                            "PSF: the frame's stacked stars or Moffat"),
                 "INJNOISE": (bool(noise), "photon noise of the injected light"),
                 "INJEPN": (float(row["electrons_per_nmgy"]), "electrons per nanomaggy for it"),
                 "INJDUST": (bool(dust_map_dir), "members dimmed by Galactic dust (SFD map)")}
        _write_injected(frame, model, cards, path, compress)
    return truth, table

