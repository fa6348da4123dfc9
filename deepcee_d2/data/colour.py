"""The one colour image the network sees, for training cutouts, evaluation and survey tiles alike.

A detector only works on the pixels it was trained on, so every path from g, r, i flux images to a network
image goes through `make_network_image` here with one `ColourSettings`:

1. **Resample** each float band to the network size by averaging ``f x f`` blocks (`resample_to`), for an
   integer factor ``f``. Averaging keeps the values in nanomaggies per *original* pixel (a surface
   brightness), so the stretch limits mean the same at every network size, and the total flux of a source
   is conserved (block sum = block mean x f^2). It is done on the fluxes, before the stretch, because
   averaging fluxes is physical while averaging stretched 8-bit values is not. Non-integer factors are
   refused rather than interpolated.
2. **Stretch** the bands (i, r, g -> R, G, B by default) between fixed flux limits ``lower``/``upper`` with an
   `astropy.visualization` stretch (`make_colour_image`): the same limits for every image.
3. **Orient** for display: rows are flipped so that row 0 of the returned array (the top of the PNG) is the
   highest FITS ``y``; for the north-up grids our cutouts use, north is up as in DS9. The WCS returned with
   the image describes exactly this array: pixel ``(x, y)`` of the PNG (``y`` counted from the top) is pixel
   ``(x, y)`` of the WCS.

The WCS transforms (`bin_wcs`, `flip_wcs`) work on a PC + CDELT form of the WCS, because astropy's
``WCS.slice`` with a step rescales CDELT, which WCSLIB ignores when a CD matrix is present (SDSS frames carry
CD matrices).
"""
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from astropy.visualization import (
    AsinhStretch,
    LinearStretch,
    LogStretch,
    LuptonAsinhStretch,
    ManualInterval,
    SqrtStretch,
    make_lupton_rgb,
    make_rgb,
)
from astropy.wcs import WCS

# Stretches applied by ``make_rgb`` to each band independently after clipping to [lower, upper]; LogStretch
# and AsinhStretch keep astropy's default softening (a = 1000 and a = 0.1 of the normalised range).
_STRETCHES = {
    "sqrt": SqrtStretch,
    "linear": LinearStretch,
    "log": LogStretch,
    "asinh": AsinhStretch,
}
# Lupton et al. (2004) asinh on the mean of the three bands, which keeps colours of saturated cores.
_LUPTON = "lupton"
STRETCH_NAMES = (*_STRETCHES, _LUPTON)


@dataclass(frozen=True)
class ColourSettings:
    """How flux images become the network's 8-bit colour image; recorded with every data set.

    `from_cfg` builds it from ``cfg.DEEPCEE.COLOUR``, where the defaults (and why) live.

    Parameters
    ----------
    bands : tuple of str
        Band names mapped to R, G, B, in that order (SDSS: ``("i", "r", "g")``).
    stretch : str
        One of ``"sqrt"`` (the paper), ``"linear"``, ``"log"``, ``"asinh"`` or ``"lupton"``.
    lower, upper : float
        Flux limits in nanomaggies per 0.396" pixel (per original pixel: block averaging keeps this unit).
        Values at or below ``lower`` are black, at or above ``upper`` saturated. For ``"lupton"``,
        ``lower`` is Lupton's ``minimum`` and ``upper - lower`` its linear ``stretch`` (the intensity
        range shown nearly linearly; saturation sets in far above it, at ~95 x for Q = 8).
    lupton_q : float
        Lupton's softening ``Q``; used only by ``"lupton"``.
    """

    bands: tuple
    stretch: str
    lower: float
    upper: float
    lupton_q: float

    def __post_init__(self):
        object.__setattr__(self, "bands", tuple(self.bands))
        if len(self.bands) != 3:
            raise ValueError(f"colour settings: need 3 bands for R, G, B, got {self.bands}")
        if self.stretch not in STRETCH_NAMES:
            raise ValueError(f"colour settings: unknown stretch {self.stretch!r}; choose one of {STRETCH_NAMES}")
        if not self.lower < self.upper:
            raise ValueError(f"colour settings: lower ({self.lower}) must be below upper ({self.upper})")

    @classmethod
    def from_cfg(cls, cfg):
        """The settings of ``cfg.DEEPCEE.COLOUR`` (BANDS, STRETCH, LOWER, UPPER, LUPTON_Q)."""
        colour = cfg.DEEPCEE.COLOUR
        return cls(tuple(colour.BANDS), colour.STRETCH, float(colour.LOWER), float(colour.UPPER),
                   float(colour.LUPTON_Q))

    def to_dict(self):
        """Plain-JSON form (for the COCO ``info`` block); ``ColourSettings(**d)`` rebuilds it."""
        return {**asdict(self), "bands": list(self.bands)}


def check_band_images(images_by_band, bands, source="image"):
    """Return the images of ``bands`` as float arrays after checking them, or raise naming ``source``.

    Raises
    ------
    ValueError
        A band is missing, an image is not 2-D, the shapes differ, or an image has NaN/inf pixels (for a
        cutout: a position outside the survey coverage, or a corrupt file).
    """
    missing = [band for band in bands if band not in images_by_band]
    if missing:
        raise ValueError(f"{source}: missing band(s) {missing}; have {sorted(images_by_band)}")
    images = [np.asarray(images_by_band[band], dtype=float) for band in bands]
    shapes = {band: image.shape for band, image in zip(bands, images)}
    if any(len(shape) != 2 for shape in shapes.values()):
        raise ValueError(f"{source}: band images must be 2-D, got shapes {shapes}")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"{source}: band images have different shapes {shapes}")
    for band, image in zip(bands, images):
        bad = ~np.isfinite(image)
        if bad.any():
            raise ValueError(
                f"{source}: band {band} has {bad.sum()} NaN/inf pixels of {image.size} "
                f"({bad.mean():.1%}; outside the imaging coverage?)"
            )
    return images


def make_colour_image(images_by_band, settings, source="image"):
    """Stretch three flux images into one 8-bit RGB image, row for row (no resampling, no flip).

    Parameters
    ----------
    images_by_band : dict of str -> (H, W) array
        Flux images in nanomaggies per pixel, one per band, all the same shape.
    settings : ColourSettings
        Bands (R, G, B order), stretch and flux limits.
    source : str
        Names the images in error messages (e.g. the cutout file).

    Returns
    -------
    (H, W, 3) uint8 array
        R, G, B; row ``j`` is row ``j`` of the inputs.
    """
    red, green, blue = check_band_images(images_by_band, settings.bands, source)
    if settings.stretch == _LUPTON:
        lupton = LuptonAsinhStretch(stretch=settings.upper - settings.lower, Q=settings.lupton_q)
        with np.errstate(invalid="ignore", divide="ignore"):  # astropy divides f(I) by I = 0 on black pixels
            return make_lupton_rgb(red, green, blue, interval=ManualInterval(vmin=settings.lower),
                                   stretch_object=lupton)
    interval = ManualInterval(vmin=settings.lower, vmax=settings.upper)
    return make_rgb(red, green, blue, interval=interval, stretch=_STRETCHES[settings.stretch]())


def binning_factor(shape, size, source="image"):
    """The integer factor that takes an image of ``shape`` to ``size``, or raise naming ``source``.

    Parameters
    ----------
    shape : (int, int)
        ``(height, width)`` of the image in pixels.
    size : int or (int, int)
        Target ``(height, width)``, or one number for both.

    Raises
    ------
    ValueError
        When the two axes need different factors or a factor is not a whole number.
    """
    target = (size, size) if np.isscalar(size) else tuple(size)
    factors = {n / m for n, m in zip(shape, target)}
    factor = factors.pop()
    if factors or factor < 1 or factor != int(factor):
        raise ValueError(
            f"{source}: cannot block-average {tuple(shape)} px to {target} px; the size must divide the "
            f"image by the same whole number on both axes (e.g. 2000 -> 1000)"
        )
    return int(factor)


def resample_to(image, size, source="image"):
    """Block-average a float image to ``size`` by an integer factor (flux per original pixel preserved).

    Parameters
    ----------
    image : (H, W) array
        Flux image, e.g. nanomaggies per 0.396" pixel.
    size : int or (int, int)
        Target size; ``H`` and ``W`` must be the same whole multiple of it.
    source : str
        Names the image in error messages.

    Returns
    -------
    (H/f, W/f) float array
        Mean of each ``f x f`` block; a factor of 1 returns the image as floats.
    """
    image = np.asarray(image, dtype=float)
    factor = binning_factor(image.shape, size, source)
    if factor == 1:
        return image
    # opencv's area interpolation by a whole factor is the block mean, ~4x faster than astropy's block_reduce.
    return cv2.resize(image, (image.shape[1] // factor, image.shape[0] // factor), interpolation=cv2.INTER_AREA)


def _pc_form(wcs, source):
    """A deep copy of a celestial ``wcs`` in PC + CDELT form, refusing distortions we cannot transform."""
    if wcs.sip is not None or wcs.cpdis1 is not None or wcs.cpdis2 is not None or wcs.det2im1 is not None:
        raise ValueError(f"{source}: WCS has SIP or lookup-table distortions; reproject onto a TAN grid first")
    pc_wcs = WCS(wcs.to_header())
    pc_wcs.pixel_shape = wcs.pixel_shape
    return pc_wcs


def bin_wcs(wcs, factor, source="image"):
    """WCS of the image made by averaging ``factor x factor`` pixel blocks of the image of ``wcs``.

    Network pixel ``j`` (0-based) covers original pixels ``f*j ... f*j + f - 1``, so its centre is at
    original pixel ``f*j + (f - 1)/2``.
    """
    pc_wcs = _pc_form(wcs, source)
    return pc_wcs.slice((slice(None, None, factor), slice(None, None, factor)))


def flip_wcs(wcs, shape, axis, source="image"):
    """WCS of the image of ``wcs`` flipped along one pixel axis.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        Celestial WCS of the unflipped image.
    shape : (int, int)
        ``(height, width)`` of the image in pixels.
    axis : {"x", "y"}
        ``"x"`` for a horizontal flip (left-right, ``image[:, ::-1]``), ``"y"`` for a vertical one
        (``image[::-1]``).

    Returns
    -------
    `~astropy.wcs.WCS`
        Pixel ``n - 1 - p`` of the new WCS is pixel ``p`` of the old one along the flipped axis.
    """
    if axis not in ("x", "y"):
        raise ValueError(f"{source}: flip axis must be 'x' or 'y', got {axis!r}")
    index = 0 if axis == "x" else 1  # FITS axis order: x first
    n_pixels = shape[1] if axis == "x" else shape[0]
    flipped = _pc_form(wcs, source)
    # FITS pixel p (1-based) becomes n + 1 - p: the reference pixel moves, and the matrix column of that
    # pixel axis changes sign.
    flipped.wcs.crpix[index] = n_pixels + 1 - flipped.wcs.crpix[index]
    flipped.wcs.pc[:, index] *= -1
    flipped.pixel_shape = (shape[1], shape[0])
    flipped.wcs.set()
    return flipped


def survey_tile_sizes(cfg):
    """Side in pixels of a survey tile (at ``DEEPCEE.COLOUR.PIXEL_SCALE``) and of its network image.

    The tile is ``DEEPCEE.SURVEY.TILE_SIZE`` pixels (0: ``COLOUR.CUTOUT_SIZE``, the training cutouts'), binned
    by the training cutouts' own factor ``CUTOUT_SIZE / NETWORK_SIZE``, so clusters reach the network at the
    scale it learnt whatever the tile size. Its network image must also differ from the training images'
    ``NETWORK_SIZE`` by a multiple of the backbone's output stride (16): the backbone pads its stride-2 layers
    as TF's "SAME" does, asymmetrically on inputs of even size, so the feature grid's offset from the image
    depends on the size modulo that stride, and the box deltas the network learnt hold for its training size
    only (a 1000 px tile image of the 500 px demo model put every box 3-5" off; BENCHMARKS.md).

    Raises
    ------
    ValueError
        A tile size that is not positive, not a whole multiple of that factor, or off the stride.
    """
    from ..modeling.inception_v2 import FEATURE_STRIDES

    colour = cfg.DEEPCEE.COLOUR
    factor = binning_factor((colour.CUTOUT_SIZE, colour.CUTOUT_SIZE), colour.NETWORK_SIZE, "DEEPCEE.COLOUR")
    tile = cfg.DEEPCEE.SURVEY.TILE_SIZE or colour.CUTOUT_SIZE
    stride = max(FEATURE_STRIDES.get(name, 1) for name in cfg.MODEL.RPN.IN_FEATURES)
    if tile <= 0 or tile % factor or (tile // factor - colour.NETWORK_SIZE) % stride:
        step = factor * stride
        example = colour.CUTOUT_SIZE + step * round(colour.CUTOUT_SIZE / step)
        raise ValueError(f"DEEPCEE.SURVEY.TILE_SIZE = {cfg.DEEPCEE.SURVEY.TILE_SIZE}: give COLOUR.CUTOUT_SIZE "
                         f"({colour.CUTOUT_SIZE}) plus a multiple of {step} (the training binning factor {factor} x "
                         f"the backbone's stride {stride}, e.g. {example}), "
                         f"or 0 for COLOUR.CUTOUT_SIZE")
    return tile, tile // factor


def network_wcs(wcs, shape, network_size, source="image"):
    """WCS of the network image made by `make_network_image` from an image of ``shape`` with ``wcs``.

    Needs no pixels, so the WCS of an image already written can be rebuilt from its cutout grid.
    """
    factor = binning_factor(shape, network_size, source)
    binned_shape = (shape[0] // factor, shape[1] // factor)
    return flip_wcs(bin_wcs(wcs, factor, source), binned_shape, "y", source)


def make_network_image(images_by_band, wcs, network_size, settings, source="image"):
    """Flux images of g, r, i on one grid + their WCS -> the network's RGB image and its WCS.

    Parameters
    ----------
    images_by_band : dict of str -> (H, W) array
        Flux images in nanomaggies per pixel on the pixel grid of ``wcs`` (e.g. a cutout).
    wcs : `~astropy.wcs.WCS`
        Celestial WCS of those images.
    network_size : int or (int, int)
        Size of the network image; ``H`` and ``W`` must be the same whole multiple of it.
    settings : ColourSettings
        Bands, stretch and flux limits.
    source : str
        Names the images in error messages.

    Returns
    -------
    rgb : (h, w, 3) uint8 array
        The image the network sees; row 0 is the top of the PNG (the highest FITS ``y``).
    network_wcs : `~astropy.wcs.WCS`
        Celestial WCS of ``rgb``: array element ``rgb[y, x]`` is WCS pixel ``(x, y)``.
    """
    images = check_band_images(images_by_band, settings.bands, source)
    if wcs is None or not wcs.has_celestial:
        raise ValueError(f"{source}: has no celestial WCS")
    binned = {band: resample_to(image, network_size, source) for band, image in zip(settings.bands, images)}
    rgb = make_colour_image(binned, settings, source)
    return np.ascontiguousarray(rgb[::-1]), network_wcs(wcs, images[0].shape, network_size, source)
