"""Clusters injected into real SDSS frames: flux, positions through each band's WCS, shapes, noise, seeding,
resume and refusal, untouched originals, bad frames, the FWHM measured on stars."""
import bz2
import hashlib
import io
import runpy
import warnings
from pathlib import Path
from types import SimpleNamespace

import astropy.units as u
import galsim
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from deepcee_d2.data.catalogs import CLUSTER_COLUMNS, read_catalog
from deepcee_d2.dust import EXTINCTION_PER_EBV
from deepcee_d2.synthetic import ClusterSpec, make_field, write_survey
from deepcee_d2.synthetic.field import CLUSTER_EXTRAS
from deepcee_d2.synthetic.inject import (
    FRAMES_FILE,
    TRUTH_FILE,
    InjectionError,
    inject_clusters,
    measure_psf,
    output_name,
    place_clusters,
    plan_clusters,
    read_frames,
    render_clusters,
)
from deepcee_d2.synthetic import render
from deepcee_d2.synthetic.instrument import mag_to_nanomaggies

from conftest import make_sky_wcs, write_sfd_like_map

REPO = Path(__file__).resolve().parents[1]
FIELD = "002583-2-0136"  # Stripe 82, low latitude: many stars
# Each band cut at its own pixel offset, so the bands' pixel grids differ by tens of pixels as well as by the
# frames' own small offsets.
BAND_OFFSETS = {"g": (37, -21), "r": (0, 0), "i": (-26, 31)}
CUT = 800
FWHM = {"g": 1.3, "r": 1.2, "i": 1.1}


def _read_bz2(path):
    with fits.open(io.BytesIO(bz2.decompress(Path(path).read_bytes()))) as hdul:
        return hdul[0].data.astype(np.float32), hdul[0].header.copy()


def _cutout_frame(path, centre_px, size, out):
    data, header = _read_bz2(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        cutout = Cutout2D(data, centre_px, (size, size), wcs=WCS(header))
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del header[key]
    header.update(cutout.wcs.to_header())
    fits.PrimaryHDU(cutout.data.astype(np.float32), header).writeto(out)


@pytest.fixture(scope="session")
def real_frames(shared_data, tmp_path_factory):
    """800 x 800 px sections of the g, r, i frames of one SDSS field (all headers kept, each band's WCS)."""
    folder = tmp_path_factory.mktemp("sdss_sections")
    for band, (dx, dy) in BAND_OFFSETS.items():
        _cutout_frame(shared_data / "sdss" / f"frame-{band}-{FIELD}.fits.bz2", (1000 + dx, 700 + dy), CUT,
                      folder / f"frame-{band}-{FIELD}.fits")
    return folder


def _centre_table(frames_root, z=0.3, richness=10.0):
    """One cluster at the centre of the r section."""
    reference = read_frames(frames_root)[FIELD]["r"]
    centre = reference.wcs.pixel_to_world((CUT - 1) / 2, (CUT - 1) / 2)
    return Table({"ra": [centre.ra.deg], "dec": [centre.dec.deg], "z": [z], "richness": [richness]})


def _images(folder):
    return {band: fits.getdata(next(Path(folder).glob(f"frame-{band}-*"))).astype(np.float64) for band in "gri"}


@pytest.fixture(scope="session")
def injected(real_frames, tmp_path_factory):
    """The centre cluster injected with photon noise, and without; plus the originals."""
    table = _centre_table(real_frames)
    out = tmp_path_factory.mktemp("injected")
    noiseless = tmp_path_factory.mktemp("noiseless")
    kwargs = dict(clusters=table, seed=5, fwhm=FWHM, mag_limit=21.0, progress=False)
    truth, frames = inject_clusters(real_frames, out, **kwargs)
    inject_clusters(real_frames, noiseless, noise=False, compress=False, **kwargs)
    return {"truth": truth, "frames": frames, "out": out, "noiseless": noiseless, "table": table,
            "original": _images(real_frames), "with_noise": _images(out), "model": _images(noiseless)}


def _clear_radius(distance, extent, smallest, largest):
    """The largest aperture radius in [smallest, largest] (arcsec) that no member's light crosses: each member
    spans distance +- extent from the BCG."""
    for radius in np.linspace(largest, smallest, 400):
        if not np.any((distance - extent < radius) & (radius < distance + extent)):
            return radius
    return None


def test_injected_flux_matches_the_members_magnitudes_in_every_band(real_frames, injected):
    """Injected minus original (the frame's own noise cancels), summed in an aperture around the BCG whose edge
    no member's light crosses, equals the summed flux of the members inside it, band by band."""
    fields = read_frames(real_frames)
    _, (members,) = plan_clusters(fields, injected["table"], seed=5, mag_limit=21.0)
    bcg = SkyCoord(members["ra"][0], members["dec"][0], unit=u.deg)
    distance = bcg.separation(SkyCoord(members["ra"], members["dec"], unit=u.deg)).arcsec
    for band, frame in fields[FIELD].items():
        # Light reaches 8 (de Vaucouleurs, truncated there) or 5 (exponential) half-light radii, plus the PSF.
        extent = (np.where(members["sersic_n"] >= 2.5, 8.0, 5.0) * members["half_light_radius"]
                  + 2.0 * FWHM[band])
        radius = _clear_radius(distance[1:], extent[1:], extent[0], 0.8 * (CUT / 2) * 0.396)
        assert radius is not None, band
        inside = distance + extent < radius
        assert inside.sum() >= 3, band  # the BCG and satellites
        x, y = frame.wcs.world_to_pixel(bcg)
        rows, columns = np.indices(frame.shape)
        aperture = np.hypot(columns - x, rows - y) * frame.pixel_scale().to_value(u.arcsec) < radius
        added = (injected["with_noise"][band] - injected["original"][band])[aperture].sum()
        expected = mag_to_nanomaggies(members[f"{band}_mag"][inside]).sum()
        assert added == pytest.approx(expected, rel=0.02), (band, radius, inside.sum())


def test_members_are_dimmed_by_the_galactic_extinction_of_the_dust_map(real_frames, injected, tmp_path):
    """Through a dust map the injected light is the noiseless model times 10^(-0.4 A_band), band by band, and a
    rerun with another map is refused."""
    ebv = 0.1
    kwargs = dict(clusters=injected["table"], seed=5, fwhm=FWHM, mag_limit=21.0, progress=False, noise=False,
                  compress=False)
    out = tmp_path / "reddened"
    inject_clusters(real_frames, out, dust_map_dir=write_sfd_like_map(tmp_path / "sfd", ebv, ebv), **kwargs)
    reddened = _images(out)
    for band in "gri":
        unreddened = injected["model"][band] - injected["original"][band]
        dimmed = reddened[band] - injected["original"][band]
        lit = unreddened > 0.05 * unreddened.max()
        ratio = dimmed[lit].sum() / unreddened[lit].sum()
        assert ratio == pytest.approx(10 ** (-0.4 * EXTINCTION_PER_EBV[band] * ebv), rel=1e-3), band
    assert fits.getheader(next(out.glob("frame-r-*")))["INJDUST"]
    with pytest.raises(InjectionError, match=r"already injected with other settings \(.*\): dust_map '.*sfd' there, '.*other' now"):
        inject_clusters(real_frames, out, dust_map_dir=write_sfd_like_map(tmp_path / "other", ebv, ebv), **kwargs)


def test_bcg_lands_on_its_sky_position_in_every_band(real_frames, injected):
    truth = injected["truth"][0]
    bcg = SkyCoord(truth["ra"] * u.deg, truth["dec"] * u.deg)
    positions = {}
    for band, frame in read_frames(real_frames)[FIELD].items():
        x, y = (float(v) for v in frame.wcs.world_to_pixel(bcg))
        model = injected["model"][band] - injected["original"][band]
        x0, y0 = int(round(x)), int(round(y))
        stamp = galsim.Image(np.ascontiguousarray(model[y0 - 6:y0 + 7, x0 - 6:x0 + 7]), xmin=x0 - 6, ymin=y0 - 6)
        centroid = galsim.hsm.FindAdaptiveMom(stamp).moments_centroid
        assert np.hypot(centroid.x - x, centroid.y - y) < 0.5, (band, centroid, x, y)
        positions[band] = (x, y)
    # The bands' pixel grids really differ: the same sky position is tens of pixels apart between frames.
    assert np.hypot(*np.subtract(positions["g"], positions["r"])) > 20
    assert np.hypot(*np.subtract(positions["i"], positions["r"])) > 20
    assert injected["truth"]["x"][0] == pytest.approx(positions["r"][0])


def test_photon_noise_has_the_poisson_variance_of_the_injected_electrons(injected):
    frames = injected["frames"]
    for band in "gri":
        row = frames[frames["band"] == band][0]
        model = injected["model"][band] - injected["original"][band]
        residual = injected["with_noise"][band] - injected["model"][band]
        bright = model > 0.03  # Poisson sigma >= 0.006 nmgy: far above float32 rounding of the stored frames
        assert bright.sum() > 30, band
        normalised = residual[bright] / np.sqrt(model[bright] / row["electrons_per_nmgy"])
        assert np.std(normalised) == pytest.approx(1.0, abs=0.15), band
        assert row["k_source"].startswith("SDSS camcol 2")


def test_truth_has_the_synthetic_survey_schema_and_reads_as_a_catalogue(injected):
    truth = read_catalog(injected["out"] / TRUTH_FILE)
    expected = list(CLUSTER_COLUMNS + CLUSTER_EXTRAS) + ["bcg_gmag", "bcg_imag", "frames"]
    assert truth.colnames == expected
    row = truth[0]
    assert row["z"] == pytest.approx(0.3) and row["field"] == FIELD and row["id"] == f"{FIELD}-c0"
    assert row["bcg_gmag"] > row["bcg_rmag"] > row["bcg_imag"]
    assert sorted(row["frames"].split(";")) == sorted(output_name(f"frame-{b}-{FIELD}.fits") for b in "gri")
    for name in row["frames"].split(";"):
        assert (injected["out"] / name).is_file()


def test_output_frames_keep_every_header_card(real_frames, injected):
    original = fits.getheader(real_frames / f"frame-r-{FIELD}.fits")
    header = fits.getheader(injected["out"] / f"frame-r-{FIELD}.fits.gz")
    for key in original:
        if key not in ("COMMENT", "HISTORY", ""):
            assert header[key] == original[key], key
    assert header["INJECTED"] and header["INJFWHM"] == FWHM["r"] and header["INJNGAL"] > 0


def test_original_frames_are_unchanged(real_frames, tmp_path):
    before = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in real_frames.iterdir()}
    inject_clusters(real_frames, tmp_path / "out", clusters=_centre_table(real_frames), seed=1, fwhm=FWHM,
                    mag_limit=20.0, progress=False)
    after = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in real_frames.iterdir()}
    assert after == before


def test_same_seed_gives_identical_files_and_a_rerun_resumes(real_frames, tmp_path):
    spec = ClusterSpec(per_field=2, placement="random", z_range=(0.3, 0.4), richness_range=(2, 3),
                       min_separation=60 * u.arcsec, edge_margin=30 * u.arcsec)
    kwargs = dict(clusters=spec, seed=7, fwhm=FWHM, mag_limit=20.0, progress=False)
    first, second = tmp_path / "a", tmp_path / "b"
    truth, _ = inject_clusters(real_frames, first, **kwargs)
    inject_clusters(real_frames, second, **kwargs)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert len(files) == 5
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # Both clusters inside the common footprint of the three sections, 60" apart.
    bcgs = SkyCoord(truth["ra"], truth["dec"], unit=u.deg)
    assert len(truth) == 2 and bcgs[0].separation(bcgs[1]) >= 60 * u.arcsec
    for frame in read_frames(real_frames)[FIELD].values():
        assert frame.contains(*frame.wcs.world_to_pixel(bcgs)).all()
    # Another seed: other clusters.
    other, _ = inject_clusters(real_frames, tmp_path / "c", **{**kwargs, "seed": 8})
    assert not np.allclose(other["ra"], truth["ra"])
    # A rerun into a folder missing one frame writes it again, identical.
    missing = first / output_name(f"frame-g-{FIELD}.fits")
    missing.unlink()
    inject_clusters(real_frames, first, **kwargs)
    assert missing.read_bytes() == (second / missing.name).read_bytes()


def test_rerun_with_other_settings_is_refused(real_frames, tmp_path):
    kwargs = dict(clusters=_centre_table(real_frames), fwhm=FWHM, mag_limit=20.0, progress=False)
    inject_clusters(real_frames, tmp_path / "out", seed=1, **kwargs)
    with pytest.raises(InjectionError, match=r"already injected with other settings .*: seed 1 there, 2 now"):
        inject_clusters(real_frames, tmp_path / "out", seed=2, **kwargs)
    with pytest.raises(InjectionError, match=r"already injected with other settings .*: fwhm\."):
        inject_clusters(real_frames, tmp_path / "out", seed=1, **{**kwargs, "fwhm": {"r": 1.0}})


def test_frame_without_wcs_is_an_error_naming_the_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for band in "gri":
        header = fits.Header({"FILTER": band, "BUNIT": "nanomaggy"})
        fits.PrimaryHDU(np.zeros((50, 50), np.float32), header).writeto(folder / f"frame-{band}-x.fits")
    with pytest.raises(InjectionError, match=r"frame-g-x\.fits.*no celestial WCS"):
        inject_clusters(folder, tmp_path / "out", fwhm=FWHM, progress=False)


def test_output_inside_the_input_folder_is_refused(real_frames):
    with pytest.raises(InjectionError, match="outside the input folder"):
        inject_clusters(real_frames, real_frames / "injected", fwhm=FWHM, progress=False)


def test_centre_placement_puts_the_first_cluster_at_the_field_centre_and_its_neighbours_apart(real_frames):
    fields = read_frames(real_frames, ("g", "r", "i"))
    spec = ClusterSpec(per_field=3, placement="centre", min_separation=60 * u.arcsec, edge_margin=20 * u.arcsec)
    placed = place_clusters(np.random.default_rng(3), fields, spec)
    (name, reference), = ((name, field["r"]) for name, field in fields.items())
    positions = SkyCoord([position for _, position in placed])
    assert [field for field, _ in placed] == [name] * 3
    x, y = reference.wcs.world_to_pixel(positions)
    assert (float(x[0]), float(y[0])) == pytest.approx(((CUT - 1) / 2, (CUT - 1) / 2), abs=1e-6)
    separations = [positions[i].separation(positions[j]).arcsec for i in range(3) for j in range(i + 1, 3)]
    assert min(separations) >= 60
    for frame in fields[name].values():  # the neighbours lie 20" inside every band's frame
        fx, fy = frame.wcs.world_to_pixel(positions[1:])
        assert np.all(frame.contains(fx, fy, (20 * u.arcsec / frame.pixel_scale()).to_value(u.one)))
    alone = place_clusters(np.random.default_rng(3), fields, ClusterSpec(per_field=1, placement="centre"))
    assert len(alone) == 1 and alone[0][1].separation(positions[0]).arcsec < 1e-6


def test_galaxy_shapes_on_the_sky_agree_between_rotated_frames(tmp_path):
    """Two fields over the same sky, one north-up and one rotated by 90 degrees: the injected cluster in the
    rotated frame is the north-up one turned by 90 degrees, pixel for pixel (shapes and orientations follow
    each frame's WCS)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    size = 301
    for name, rotation in (("up", 0.0), ("turned", 90.0)):
        wcs = make_sky_wcs(30.0, 10.0, (size, size), rotation_deg=rotation, use_cd=True)
        for band in "gri":
            header = wcs.to_header()
            header.update({"FILTER": band, "BUNIT": "nanomaggy", "GAIN": 4.7, "NMGY": 0.005})
            fits.PrimaryHDU(np.zeros((size, size), np.float32), header).writeto(folder / f"frame-{band}-{name}.fits")
    table = Table({"ra": [30.0], "dec": [10.0], "z": [0.3], "richness": [20.0]})
    truth, _ = inject_clusters(folder, tmp_path / "out", clusters=table, fwhm=FWHM, noise=False, compress=False,
                               mag_limit=20.0, progress=False)
    up = fits.getdata(tmp_path / "out" / "frame-r-up.fits").astype(float)
    turned = fits.getdata(tmp_path / "out" / "frame-r-turned.fits").astype(float)
    assert up.max() > 0.1
    matches = [np.abs(np.rot90(up, k) - turned).max() / up.max() for k in (1, 3)]
    assert min(matches) < 1e-3, matches
    assert np.abs(up - turned).max() / up.max() > 0.1  # the cluster is not round: rotation matters
    assert truth["frames"][0].split(";") == [f"frame-{b}-{n}.fits" for n in ("turned", "up") for b in "gir"]


def test_psf_measured_on_stars_recovers_the_seeing_and_profile_of_a_synthetic_frame():
    field = make_field(SkyCoord(150 * u.deg, 2 * u.deg), 800, 800, clusters=None, bands=("r",), seed=1,
                       seeing={"r": 1.3}, mag_limit=22.0)
    psf = measure_psf(field.images["r"], field.wcs, "synthetic r")
    assert psf.n_stars >= 5
    assert psf.fwhm == pytest.approx(1.3, rel=0.05)
    # The stacked image is the frame's PSF: its share of the light within 2" and within 1" is the drawn one's.
    half = psf.image.shape[0] // 2
    truth = render.add_psf_wing(field.psf["r"].profile().drawImage(nx=2 * half + 1, ny=2 * half + 1, scale=0.396)
                                .array.astype(np.float64), field.psf["r"])
    truth /= truth.sum()
    radius = np.hypot(*(np.indices(truth.shape) - half)) * 0.396
    assert psf.image.sum() == pytest.approx(1.0) and psf.image.argmax() == psf.image.size // 2
    for arcsec in (1.0, 2.0):
        assert psf.image[radius <= arcsec].sum() == pytest.approx(truth[radius <= arcsec].sum(), abs=0.02)
    # Galaxies drawn with it into the frame's grid get that PSF: a point-like one keeps all its flux (its drawing
    # window holds the stack's wings) and holds the stars' share of it within 2".
    frame = SimpleNamespace(shape=(101, 101), band="r", wcs=field.wcs, pixel_scale=lambda: 0.396 * u.arcsec)
    members = Table({"x": [50.0], "y": [50.0], "r_mag": [18.0], "sersic_n": [1.0], "half_light_radius": [0.01],
                     "axis_ratio": [1.0], "position_angle": [0.0]})
    model, drawn = render_clusters(frame, [members], psf)
    rows, columns = np.indices(model.shape)
    within = np.hypot(rows - 50, columns - 50) * 0.396
    assert drawn == 1
    flux = mag_to_nanomaggies(members["r_mag"][0])
    assert model.sum() == pytest.approx(flux, rel=1e-3)
    assert model[within <= 2.0].sum() / flux == pytest.approx(psf.image[radius <= 2.0].sum(), abs=0.005)


def test_fwhm_measured_on_a_real_section_is_sdss_like(real_frames):
    frames = read_frames(real_frames)[FIELD]
    measured = {band: measure_psf(fits.getdata(frame.path), frame.wcs, str(frame.path))
                for band, frame in frames.items()}
    for band, psf in measured.items():
        assert 0.6 < psf.fwhm < 2.0 and psf.n_stars >= 10, (band, psf.fwhm, psf.n_stars)
    assert measured["g"].fwhm > measured["i"].fwhm  # seeing improves with wavelength


def test_fwhm_without_enough_stars_is_an_error_naming_the_frame():
    wcs = make_sky_wcs(30.0, 10.0, (100, 100))
    noise = np.random.default_rng(0).normal(0.0, 0.01, (100, 100))
    with pytest.raises(InjectionError, match="blank.fits: only 0 isolated"):
        measure_psf(noise, wcs, "blank.fits")


def test_command_injects_into_a_synthetic_survey_folder(tmp_path, capsys):
    """The synthetic survey's layout (<field>/frame-<band>.fits, GAIN and NMGY in the headers) is an input too."""
    write_survey(tmp_path / "blank", 2, 300, 300, clusters=None, field_galaxies=False, stars=False, seed=2,
                 progress=False)
    tool = runpy.run_path(str(REPO / "tools" / "inject_clusters.py"), run_name="tool")
    arguments = [str(tmp_path / "blank"), str(tmp_path / "out"), "--z-range", "0.3", "0.4", "--richness-range",
                 "5", "10", "--min-separation", "30", "--mag-limit", "20", "--fwhm", "g=1.4", "r=1.3", "i=1.2", "--no-progress", "--seed", "4"]
    assert tool["main"](arguments) == 0
    assert "2 clusters in 6 frames" in capsys.readouterr().out
    truth = read_catalog(tmp_path / "out" / TRUTH_FILE)
    assert list(truth["field"]) == ["f000", "f001"] and list(truth["id"]) == ["f000-c0", "f001-c0"]
    assert (tmp_path / "out" / "f001" / "frame-i.fits.gz").is_file()
    frames = Table.read(tmp_path / "out" / FRAMES_FILE)
    assert set(frames["k_source"]) == {"header GAIN/NMGY"} and set(frames["fwhm_source"]) == {"given"}
    with pytest.raises(SystemExit, match="--fwhm: need BAND=VALUE"):
        tool["main"](arguments[:2] + ["--fwhm", "r:1.3"])
    positions = tmp_path / "positions.csv"
    Table({"ra": [150.0], "dec": [2.0], "z": [0.15]}).write(positions)
    with pytest.raises(ValueError, match=f"clusters table {positions}: missing column\\(s\\) \\['richness'\\]"):
        tool["main"](arguments[:2] + ["--positions", str(positions), "--no-progress"])
