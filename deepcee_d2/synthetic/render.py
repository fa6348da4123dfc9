"""Drawing sources into a band image with GalSim.

Every source is drawn with GalSim, convolved with the band's PSF and integrated over the pixel (GalSim's
default ``method="auto"``), straight into a bounded window of the field image (``drawImage(image=window,
add_to_image=True, center=...)``), so no per-object stamp is allocated or copied:

- galaxies: `galsim.Exponential` (n = 1), `galsim.DeVaucouleurs` (n = 4) truncated at 8 half-light radii as
  SDSS's de Vaucouleurs model is (Stoughton et al. 2002), or `galsim.Sersic` for other indices; sheared to
  their axis ratio and position angle;
- stars: the PSF itself.

The PSF's core is drawn with each source; its aureole (`~deepcee_d2.synthetic.instrument.WING_FRACTION` of the
light) is added afterwards to the whole noiseless image by `add_psf_wing`, one FFT convolution per band.

Windows are sized to the source: ``half-width = k * sqrt(r_half^2 + (FWHM / 2)^2) / pixel`` with k = 5 for
exponential and point sources and k = 10 for de Vaucouleurs profiles, grown by 30 % per magnitude brighter
than r = 21 (bright sources show their wings above the noise further out) and kept within 8-512 pixels.
GalSim picks its own FFT size from the profile, so the window only bounds where light is added.
Measured cost: ``benchmarks/bench_synthetic.py`` (BENCHMARKS.md, "Synthetic sky").

Pixel coordinates are astropy's 0-based ones (pixel centres at integers): the GalSim image is created with
its origin at (0, 0), so a source drawn at ``center=(x, y)`` lands where ``wcs.world_to_pixel`` puts it.
Position angles are degrees east of north on a north-up, east-left image.
"""
import astropy.units as u
import cv2
import galsim
import numpy as np

from .instrument import PIXEL_SCALE, mag_to_nanomaggies, wing_kernel

MIN_HALF_WIDTH = 8
MAX_HALF_WIDTH = 512
DEVAUCOULEURS_TRUNCATION = 8.0  # half-light radii


def new_image(nx, ny):
    """An empty float32 GalSim image of ``nx`` x ``ny`` pixels at the SDSS pixel scale, origin (0, 0)."""
    return galsim.ImageF(nx, ny, xmin=0, ymin=0, scale=PIXEL_SCALE.to_value(u.arcsec))


def _galaxy_profile(flux, sersic_n, half_light_radius, axis_ratio, position_angle):
    if sersic_n == 1.0:
        profile = galsim.Exponential(half_light_radius=half_light_radius, flux=flux)
    elif sersic_n == 4.0:
        profile = galsim.DeVaucouleurs(half_light_radius=half_light_radius, flux=flux,
                                       trunc=DEVAUCOULEURS_TRUNCATION * half_light_radius)
    else:
        profile = galsim.Sersic(n=sersic_n, half_light_radius=half_light_radius, flux=flux)
    # GalSim's beta is measured from +x (east is -x, north +y): beta = 90 deg + position angle.
    return profile.shear(q=axis_ratio, beta=(90.0 + position_angle) * galsim.degrees)


def half_widths(mag, half_light_radius, sersic_n, fwhm, pixel_scale=PIXEL_SCALE.to_value(u.arcsec)):
    """Window half-widths (pixels of ``pixel_scale`` arcsec) for sources of magnitude ``mag`` (module docstring)."""
    mag = np.asarray(mag, dtype=float)
    size = np.sqrt(np.asarray(half_light_radius, dtype=float) ** 2 + (0.5 * fwhm) ** 2)
    k = np.where(np.asarray(sersic_n) >= 2.5, 10.0, 5.0)
    grow = 1.3 ** np.maximum(21.0 - mag, 0.0)
    half = np.ceil(k * size / pixel_scale * grow)
    return np.clip(half, MIN_HALF_WIDTH, MAX_HALF_WIDTH).astype(int)


def _window(image, x, y, half):
    bounds = galsim.BoundsI(int(np.floor(x)) - half, int(np.floor(x)) + half + 1,
                            int(np.floor(y)) - half, int(np.floor(y)) + half + 1) & image.bounds
    return image[bounds] if bounds.isDefined() else None


def draw_galaxies(image, galaxies, band, psf):
    """Add galaxies (table rows with x, y, ``{band}_mag``, sersic_n, half_light_radius [arcsec],
    axis_ratio, position_angle [deg]) convolved with ``psf`` (`~deepcee_d2.synthetic.instrument.PSF`, or a
    measured one with its ``profile()``, ``fwhm``, ``draw_method`` and ``min_window_half_width``:
    `inject.EmpiricalPSF`) to ``image`` (nanomaggies).

    Returns the number of galaxies drawn (those whose window overlaps the image).
    """
    point_spread = psf.profile()
    mags = np.asarray(galaxies[f"{band}_mag"], dtype=float)
    flux = mag_to_nanomaggies(mags)
    radius = np.asarray(galaxies["half_light_radius"], dtype=float)
    index = np.asarray(galaxies["sersic_n"], dtype=float)
    # The image's own pixel scale: injection draws into real frames of any scale (smallest side, widest window).
    half = np.maximum(half_widths(mags, radius, index, psf.fwhm, image.wcs.minLinearScale(image_pos=image.true_center)),
                      psf.min_window_half_width)
    drawn = 0
    for k, (x, y) in enumerate(zip(np.asarray(galaxies["x"], float), np.asarray(galaxies["y"], float))):
        window = _window(image, x, y, half[k])
        if window is None:
            continue
        profile = _galaxy_profile(flux[k], index[k], radius[k], float(galaxies["axis_ratio"][k]),
                                  float(galaxies["position_angle"][k]))
        galsim.Convolve(profile, point_spread).drawImage(image=window, add_to_image=True,
                                                         center=galsim.PositionD(x, y), method=psf.draw_method)
        drawn += 1
    return drawn


def draw_stars(image, stars, band, psf):
    """Add point sources (rows with x, y, ``{band}_mag``) with ``psf`` (`~deepcee_d2.synthetic.instrument.PSF`)
    to ``image``."""
    point_spread = psf.profile()
    mags = np.asarray(stars[f"{band}_mag"], dtype=float)
    flux = mag_to_nanomaggies(mags)
    half = half_widths(mags, np.zeros(len(mags)), np.ones(len(mags)), psf.fwhm)
    drawn = 0
    for k, (x, y) in enumerate(zip(np.asarray(stars["x"], float), np.asarray(stars["y"], float))):
        window = _window(image, x, y, half[k])
        if window is None:
            continue
        point_spread.withFlux(flux[k]).drawImage(image=window, add_to_image=True, center=galsim.PositionD(x, y))
        drawn += 1
    return drawn


def add_psf_wing(pixels, psf, pixel_scale=PIXEL_SCALE.to_value(u.arcsec)):
    """Move ``psf.wing`` of the light of a noiseless image (2-D float64 array of ``pixel_scale`` arcsec pixels,
    drawn with the PSF's core) into the PSF's aureole, in place: ``(1 - w) image + w image * aureole``; returns
    it. Light the aureole would spread from outside the image is missing, as from sources never drawn there."""
    if psf.wing:
        # filter2D correlates; the round kernel makes that the convolution. It switches to a DFT for big kernels.
        spread = cv2.filter2D(pixels, cv2.CV_64F, wing_kernel(round(float(pixel_scale), 6)),
                              borderType=cv2.BORDER_CONSTANT)
        pixels *= 1.0 - psf.wing
        pixels += psf.wing * spread
    return pixels
