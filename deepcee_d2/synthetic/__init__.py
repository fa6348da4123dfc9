"""A synthetic SDSS sky with injected galaxy clusters, rendered with GalSim.

`make_field` makes one field in memory (g, r, i images in nanomaggies, WCS, truth tables); `write_survey`
writes many fields and their truth in the layout the data and survey code read (``<root>/clusters.fits``,
``<root>/fields.ecsv``, ``<root>/<field>/frame-{g,r,i}.fits``), resumably. The physics and its sources are
documented in each module: `instrument` (SDSS calibration, sky, seeing, PSF, noise), `colours` (red
sequence, templates, K-corrections, L*), `galaxies` (counts, redshifts, sizes, shapes), `stars`, `clusters`
(richness, r200, luminosity function, NFW profile, blue fraction), `groups` (the unlabelled poor systems below
the clusters' cut), `artefacts` (background structure, cosmic rays) and `render` (GalSim drawing).
"""
from .clusters import ClusterSpec
from .field import SyntheticField, make_field
from .instrument import BANDS
from .survey import write_survey

__all__ = ["BANDS", "ClusterSpec", "SyntheticField", "make_field", "write_survey"]
