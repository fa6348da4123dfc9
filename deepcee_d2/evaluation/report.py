"""The evaluation report: the paper's Table 2 in Markdown, KS tests, completeness, plots and files.

Everything here reads an `~deepcee_d2.evaluation.matching.Evaluation` and writes into one output folder:
``evaluation.json`` (every number; NaN written as null), ``report.md`` (the tables, linking the plots),
``precision_recall.png``, ``centre_distances.png``, ``recovered_vs_all_{z,bcg_rmag,richness}.png``,
``completeness_z.png``, ``completeness_richness.png``, with red-sequence estimates ``redshifts.png`` (estimated
against true z, residuals against z, richness; `deepcee_d2.evaluation.redshifts`), the per-object tables ``predictions.ecsv`` and
``true_clusters.ecsv``, and, when false positives were cross-matched, ``false_positives_crossmatch.fits`` and
``.ecsv``. Each file is written to a temporary name in the folder and renamed into place, so a crash never
leaves a half-written file; ``evaluation.json`` is written last.

Plots use matplotlib's ``Figure`` with the Agg canvas directly, never pyplot, so no global backend is set.
"""
import json
import math
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.stats import binom_conf_interval
from astropy.table import Table
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import ks_2samp

from ..io import atomic_output
from .redshifts import RICH_MEMBERS, plot_redshifts, redshift_accuracy


# Properties of the true clusters compared between all and recovered clusters, with their axis labels.
KS_PROPERTIES = {"z": "redshift", "bcg_rmag": "BCG r magnitude (mag)", "richness": "richness"}
COMPLETENESS_PROPERTIES = ("z", "richness")
# Completeness error bars: the Wilson binomial interval at one Gaussian sigma.
COMPLETENESS_CONFIDENCE = 0.6827

JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "report.md"
PR_CURVE_NAME = "precision_recall.png"
DISTANCES_NAME = "centre_distances.png"
PREDICTIONS_NAME = "predictions.ecsv"
TRUTHS_NAME = "true_clusters.ecsv"
CROSSMATCH_STEM = "false_positives_crossmatch"
REDSHIFTS_NAME = "redshifts.png"


def recovered_vs_all_name(name):
    """File name of the recovered-vs-all histogram of property ``name``."""
    return f"recovered_vs_all_{name}.png"


def completeness_name(name):
    """File name of the completeness plot against property ``name``."""
    return f"completeness_{name}.png"


def _write_text(path, text):
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def _write_table(table, path, format):
    with atomic_output(path) as temporary:
        table.write(temporary, format=format, overwrite=True)


def _write_figure(figure, path):
    FigureCanvasAgg(figure)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)


# ---- numbers ----

def ks_tests(truths, alpha, properties=tuple(KS_PROPERTIES)):
    """Two-sample KS tests of each property between all true clusters and those recovered.

    Parameters
    ----------
    truths : `~astropy.table.Table`
        ``Evaluation.truths``: the properties and ``recovered`` (at the best threshold). NaN values (a
        missing magnitude, say) are left out of that property's test.
    alpha : float
        Significance level of the verdict (``DEEPCEE.EVAL.KS_ALPHA``): one parent distribution is rejected
        when the p-value of `scipy.stats.ks_2samp` (exact for small samples) is below it.
    properties : sequence of str
        Columns to test (default z, bcg_rmag, richness).

    Returns
    -------
    `~astropy.table.Table`
        One row per property: ``property``, ``n_all``, ``n_recovered``, ``statistic`` (D), ``pvalue``,
        ``alpha`` and ``verdict``; NaN statistics with a verdict saying so when either sample is empty.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    rows = []
    recovered = np.asarray(truths["recovered"], dtype=bool)
    for name in properties:
        if name not in truths.colnames:
            raise ValueError(f"true-cluster table has no column {name!r} to test; it has {truths.colnames}")
        values = np.asarray(truths[name], dtype=float)
        everything = values[np.isfinite(values)]
        found = values[np.isfinite(values) & recovered]
        if len(everything) == 0 or len(found) == 0:
            rows.append((name, len(everything), len(found), np.nan, np.nan, alpha,
                         "not tested: no recovered cluster with this property"))
            continue
        result = ks_2samp(everything, found)
        verdict = (f"different: p < {alpha:g}, one parent distribution rejected"
                   if result.pvalue < alpha else
                   f"consistent: p >= {alpha:g}, one parent distribution not rejected")
        rows.append((name, len(everything), len(found), float(result.statistic), float(result.pvalue), alpha,
                     verdict))
    return Table(rows=rows, names=("property", "n_all", "n_recovered", "statistic", "pvalue", "alpha", "verdict"),
                 dtype=(str, int, int, float, float, float, str))


def completeness_table(values, recovered, bins="auto"):
    """Fraction of true clusters recovered in bins of a property, with binomial (Wilson, 1 sigma) errors.

    Parameters
    ----------
    values : array_like
        The property of every true cluster (NaN values are left out).
    recovered : array_like of bool
        Whether each was recovered.
    bins : int, sequence or str
        Bin edges, or a rule, as `numpy.histogram_bin_edges` takes them.

    Returns
    -------
    `~astropy.table.Table`
        ``lower``, ``upper`` (bin edges), ``n_true``, ``n_recovered``, ``completeness``, ``completeness_low``,
        ``completeness_high`` (NaN for empty bins).
    """
    values = np.asarray(values, dtype=float)
    recovered = np.asarray(recovered, dtype=bool)
    finite = np.isfinite(values)
    names = ("lower", "upper", "n_true", "n_recovered", "completeness", "completeness_low", "completeness_high")
    if not finite.any():
        return Table(names=names, dtype=(float, float, int, int, float, float, float))
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    n_true, _ = np.histogram(values[finite], edges)
    n_found, _ = np.histogram(values[finite & recovered], edges)
    fraction = np.full(len(n_true), np.nan)
    low, high = fraction.copy(), fraction.copy()
    filled = n_true > 0
    fraction[filled] = n_found[filled] / n_true[filled]
    if filled.any():
        low[filled], high[filled] = binom_conf_interval(n_found[filled], n_true[filled],
                                                        confidence_level=COMPLETENESS_CONFIDENCE,
                                                        interval="wilson")
        # astropy's Wilson bounds can miss 0 or 1 by ~1e-17 (0 of 12 gives a lower bound of 7e-18).
        low[filled] = np.minimum(low[filled], fraction[filled])
        high[filled] = np.maximum(high[filled], fraction[filled])
    return Table([edges[:-1], edges[1:], n_true, n_found, fraction, low, high], names=names)


# ---- text ----

def markdown_table(table, best_index):
    """The threshold table as Markdown, laid out like the paper's Table 2; the best-F1 row in bold."""
    lines = ["| Threshold (%) | TP | FP | FN | Precision | Recall | F1 |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for index, row in enumerate(table):
        cells = [f"{100 * row['threshold']:g}", str(row["tp"]), str(row["fp"]), str(row["fn"]),
                 f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}"]
        if index == best_index:
            cells = [f"**{cell}**" for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nBold: the threshold with the highest F1.\n"


def _ks_markdown(ks):
    lines = ["| Property | N all | N recovered | D | p-value | Verdict |",
             "|---|---:|---:|---:|---:|---|"]
    for row in ks:
        lines.append(f"| {row['property']} | {row['n_all']} | {row['n_recovered']} | {row['statistic']:.3f} | "
                     f"{row['pvalue']:.3g} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


def _cosmology_text(cosmology):
    return (f"{type(cosmology).__name__}(H0 = {cosmology.H0.to_value(u.km / u.s / u.Mpc):g} km/s/Mpc, "
            f"Om0 = {cosmology.Om0:g})")


def table_rows(table):
    """A table as a list of dicts, one per row (JSON-ready after `_json_ready`)."""
    return [{name: row[name] for name in table.colnames} for row in table]


def _json_ready(value):
    """Plain JSON types: numpy scalars and arrays unwrapped, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, np.str_)):
        return str(value)
    if value is None:
        return None
    raise TypeError(f"cannot write {type(value).__name__} {value!r} to JSON")


def _statistics(evaluation, ks_alpha):
    """The KS tests and the completeness tables of an evaluation."""
    completeness = {name: completeness_table(evaluation.truths[name], evaluation.truths["recovered"])
                    for name in COMPLETENESS_PROPERTIES}
    return ks_tests(evaluation.truths, ks_alpha), completeness


def summarise(evaluation, ks_alpha, crossmatch=None, metadata=None, redshifts=None):
    """Every number of the evaluation as a dict of plain JSON types (NaN as None): what ``evaluation.json``
    holds, without writing anything.

    Parameters
    ----------
    evaluation : `~deepcee_d2.evaluation.matching.Evaluation`
    ks_alpha : float
        Significance level of the KS tests.
    crossmatch : `~astropy.table.Table`, optional
        From `deepcee_d2.evaluation.crossmatch.crossmatch_false_positives`.
    metadata : dict, optional
        Extra entries (data set name, number of images, ...), written first.
    redshifts : dict, optional
        When the predictions carry red-sequence estimates: ``outlier``, the |dz| / (1 + z) of an outlier
        (``DEEPCEE.EVAL.REDSHIFT_OUTLIER``), and ``problems``, the images without estimates and why; adds
        ``redshifts`` (`~deepcee_d2.evaluation.redshifts.redshift_accuracy` and the problems).
    """
    return _summary(evaluation, *_statistics(evaluation, ks_alpha), crossmatch, metadata, redshifts)


def _summary(evaluation, ks, completeness, crossmatch, metadata, redshifts=None):
    best = evaluation.table[evaluation.best_index]
    summary = dict(metadata or {})
    summary.update({
        "match_radius_kpc": evaluation.match_radius.to_value(u.kpc),
        "histogram_radius_kpc": evaluation.histogram_radius.to_value(u.kpc),
        "cosmology": {"name": evaluation.cosmology.name, "class": type(evaluation.cosmology).__name__,
                      "H0_km_s_Mpc": evaluation.cosmology.H0.to_value(u.km / u.s / u.Mpc),
                      "Om0": evaluation.cosmology.Om0},
        "n_true": len(evaluation.truths),
        "n_predictions": len(evaluation.predictions),
        "thresholds": table_rows(evaluation.table),
        "best": {name: best[name] for name in evaluation.table.colnames},
        "centring_error_kpc": evaluation.centring_error.to_value(u.kpc),
        "n_true_positives_at_best": int(np.count_nonzero(evaluation.truths["recovered"])),
        "centre_distances_kpc": evaluation.histogram_distances.to_value(u.kpc),
        "ks_tests": table_rows(ks),
        "completeness": {name: table_rows(table) for name, table in completeness.items()},
    })
    if crossmatch is not None:
        known = np.asarray(crossmatch["known"], dtype=bool)
        catalogues = np.asarray(crossmatch["catalog"])[known]
        summary["crossmatch"] = {
            "n_false_positives": len(crossmatch), "n_known": int(known.sum()), "n_new": int((~known).sum()),
            "n_known_per_catalog": {name: int(np.count_nonzero(catalogues == name)) for name in np.unique(catalogues)},
        }
    if redshifts is not None:
        summary["redshifts"] = {**redshift_accuracy(evaluation, redshifts["outlier"]),
                                "problems": list(redshifts["problems"])}
    return _json_ready(summary)


def blank_images_text(blank, thresholds=(0.5, 0.8, 0.9)):
    """One sentence: false detections per deg^2 on the blank images (`summary["blank_images"]`) at ``thresholds``."""
    rates = {round(row["threshold"], 6): row for row in blank["rates"]}
    shown = [f"{100 * t:g} %: {rates[round(t, 6)]['false_per_deg2']:.1f} ({rates[round(t, 6)]['n_false']})"
             for t in thresholds if round(t, 6) in rates]
    return (f"{blank['n_images']} images without a cluster ({blank['area_deg2']:.3f} deg^2): false detections per "
            f"deg^2 (number) at score >= " + ", ".join(shown) + ".")


def flat_metrics(summary):
    """The numbers as one flat dict of floats (detectron2's ``print_csv_format`` per-task layout).

    The headline keys (best row, centring error, KS tests) carry no ``-``; the whole threshold table follows
    as ``"<column>-<threshold in %>"`` (``"f1-50"``, ``"tp-100"``, ...), which ``print_csv_format`` leaves out
    of its one-line summary as it does detectron2's per-category ``"AP-<class>"`` keys.
    """
    best = summary["best"]
    metrics = {"best_threshold": best["threshold"], "precision": best["precision"], "recall": best["recall"],
               "f1": best["f1"], "tp": best["tp"], "fp": best["fp"], "fn": best["fn"],
               "centring_error_kpc": summary["centring_error_kpc"], "n_true": summary["n_true"],
               "n_predictions": summary["n_predictions"]}
    for row in summary["ks_tests"]:
        metrics[f"ks_{row['property']}_D"] = row["statistic"]
        metrics[f"ks_{row['property']}_pvalue"] = row["pvalue"]
    if "redshifts" in summary:
        for name in ("sigma_nmad", "outlier_fraction", "median_dz"):
            metrics[f"z_{name}"] = summary["redshifts"][name]
        metrics["richness_scatter_dex"] = summary["redshifts"]["richness_scatter_dex"]
    if "crossmatch" in summary:
        metrics["fp_known"] = summary["crossmatch"]["n_known"]
        metrics["fp_new"] = summary["crossmatch"]["n_new"]
    for row in summary["thresholds"]:
        for name in ("tp", "fp", "fn", "precision", "recall", "f1"):
            metrics[f"{name}-{100 * row['threshold']:g}"] = row[name]
    for row in summary.get("blank_images", {}).get("rates", ()):
        metrics[f"blank_false_per_deg2-{100 * row['threshold']:g}"] = row["false_per_deg2"]
    for row in summary.get("red_sequence_confirmed", {}).get("thresholds", ()):
        metrics[f"confirmed_recall-{100 * row['threshold']:g}"] = row["recall"]
    if "survey_merged" in summary:
        best = summary["survey_merged"]["best"]
        metrics.update({f"survey_merged_{name}": best[name] for name in ("threshold", "precision", "recall", "f1")})
    return {key: float("nan") if value is None else float(value) for key, value in metrics.items()}


# ---- plots ----

def plot_precision_recall(table, best_index):
    """Precision against recall over the thresholds (labelled in %), and P, R, F1 against threshold."""
    figure = Figure(figsize=(10, 4.2))
    curve, versus = figure.subplots(1, 2)
    curve.plot(table["recall"], table["precision"], "o-", color="tab:blue")
    for row in table:
        curve.annotate(f"{100 * row['threshold']:g}%", (row["recall"], row["precision"]), fontsize=7,
                       xytext=(3, 3), textcoords="offset points")
    best = table[best_index]
    curve.plot([best["recall"]], [best["precision"]], "*", color="tab:red", markersize=14,
               label=f"best F1 = {best['f1']:.3f} at {100 * best['threshold']:g}%")
    curve.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="Precision-recall")
    curve.legend(loc="lower left")
    for name, colour in (("precision", "tab:blue"), ("recall", "tab:orange"), ("f1", "tab:green")):
        versus.plot(100 * table["threshold"], table[name], "o-", color=colour, label=name)
    versus.axvline(100 * best["threshold"], color="tab:red", linestyle=":")
    versus.set(xlabel="confidence threshold (%)", ylim=(0, 1.02), title="Against threshold")
    versus.legend()
    figure.tight_layout()
    return figure


def plot_centre_distances(evaluation):
    """Histogram of predicted-to-true centre distances within the histogram radius, at the best threshold."""
    figure = Figure(figsize=(6, 4.2))
    axes = figure.subplots()
    radius = evaluation.histogram_radius.to_value(u.kpc)
    axes.hist(evaluation.histogram_distances.to_value(u.kpc), bins=np.linspace(0, radius, 26),
              color="tab:blue", alpha=0.8)
    axes.axvline(evaluation.match_radius.to_value(u.kpc), color="tab:red", linestyle="--",
                 label=f"match radius {evaluation.match_radius.to_value(u.kpc):g} kpc")
    axes.set(xlabel="distance to the nearest true centre (proper kpc)", ylabel="predictions",
             title=f"Centring at {100 * evaluation.best_threshold:g}%: "
                   f"sqrt(<d^2>) = {evaluation.centring_error.to_value(u.kpc):.1f} kpc")
    axes.legend()
    figure.tight_layout()
    return figure


def plot_recovered_vs_all(truths, name, ks_row=None):
    """Histograms of property ``name`` for all true clusters and for those recovered."""
    values = np.asarray(truths[name], dtype=float)
    recovered = np.asarray(truths["recovered"], dtype=bool)
    finite = np.isfinite(values)
    figure = Figure(figsize=(6, 4.2))
    axes = figure.subplots()
    if finite.any():
        edges = np.histogram_bin_edges(values[finite], bins="auto")
        axes.hist(values[finite], bins=edges, histtype="step", linewidth=2, color="tab:gray", label="all")
        axes.hist(values[finite & recovered], bins=edges, color="tab:blue", alpha=0.6, label="recovered")
        axes.legend()
    title = f"Recovered vs all: {KS_PROPERTIES.get(name, name)}"
    if ks_row is not None and np.isfinite(ks_row["statistic"]):
        title += f"\nKS D = {ks_row['statistic']:.3f}, p = {ks_row['pvalue']:.3g} (alpha {ks_row['alpha']:g})"
    axes.set(xlabel=KS_PROPERTIES.get(name, name), ylabel="clusters", title=title)
    figure.tight_layout()
    return figure


def plot_completeness(table, name):
    """Completeness against property ``name``, with binomial error bars."""
    figure = Figure(figsize=(6, 4.2))
    axes = figure.subplots()
    filled = table["n_true"] > 0
    centres = 0.5 * (table["lower"] + table["upper"])[filled]
    fraction = table["completeness"][filled]
    errors = [fraction - table["completeness_low"][filled], table["completeness_high"][filled] - fraction]
    axes.errorbar(centres, fraction, yerr=errors, xerr=0.5 * (table["upper"] - table["lower"])[filled], fmt="o",
                  capsize=3, color="tab:blue")
    for x, y, n in zip(centres, fraction, table["n_true"][filled]):
        axes.annotate(str(n), (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points")
    axes.set(xlabel=KS_PROPERTIES.get(name, name), ylabel="completeness (recovered / all)", ylim=(-0.02, 1.05),
             title=f"Completeness against {KS_PROPERTIES.get(name, name)} (numbers: clusters per bin)")
    figure.tight_layout()
    return figure


# ---- the whole report ----

def _markdown_report(evaluation, summary, ks, crossmatch):
    best = evaluation.table[evaluation.best_index]
    title = summary.get("dataset", "")
    lines = [f"# Deep-CEE evaluation{': ' + title if title else ''}", ""]
    lines += [f"A prediction is a true positive when its box centre lies within "
              f"{evaluation.match_radius.to_value(u.kpc):g} kpc (proper, at the true cluster's redshift; "
              f"{_cosmology_text(evaluation.cosmology)}) of a true cluster centre. Per image, the predictions "
              f"above the threshold are matched one to one to the true clusters within that distance, with as "
              f"many matches as possible (then the smallest total distance); every other prediction is a false "
              f"positive, every cluster left a false negative.",
              ""]
    counts = f"{summary['n_true']} true clusters, {summary['n_predictions']} predictions"
    if "n_images" in summary:
        counts = f"{summary['n_images']} images, " + counts
    lines += [counts + ".", "", "## Precision, recall and F1 (cf. the paper's Table 2)", "",
              markdown_table(evaluation.table, evaluation.best_index),
              f"Best threshold: **{100 * best['threshold']:g}%** (precision {best['precision']:.3f}, recall "
              f"{best['recall']:.3f}, F1 {best['f1']:.3f}).", "", f"![precision-recall]({PR_CURVE_NAME})", ""]
    if "blank_images" in summary:
        lines += ["## Sky without clusters", "", blank_images_text(summary["blank_images"]), ""]
    lines += ["## Centring", "",
              f"Centring standard error sqrt(mean(d^2)) over the {summary['n_true_positives_at_best']} true "
              f"positives at {100 * best['threshold']:g}%: **{evaluation.centring_error.to_value(u.kpc):.1f} kpc**. "
              f"The histogram shows every prediction above that threshold within "
              f"{evaluation.histogram_radius.to_value(u.kpc):g} kpc of a true centre.", "",
              f"![centre distances]({DISTANCES_NAME})", ""]
    lines += [f"## Recovered against all true clusters (two-sample KS tests, alpha = {ks['alpha'][0]:g})"
              if len(ks) else "## Recovered against all true clusters", "", _ks_markdown(ks)]
    lines += [f"![{name}]({recovered_vs_all_name(name)})" for name in KS_PROPERTIES] + [""]
    lines += ["## Completeness", ""] + [f"![completeness {name}]({completeness_name(name)})"
                                         for name in COMPLETENESS_PROPERTIES] + [""]
    if crossmatch is not None:
        match = summary["crossmatch"]
        lines += ["## False positives against catalogues", "",
                  f"Of {match['n_false_positives']} false positives at {100 * best['threshold']:g}%, "
                  f"{match['n_known']} lie near a catalogued cluster "
                  f"({', '.join(f'{k}: {v}' for k, v in match['n_known_per_catalog'].items()) or 'none'}) and "
                  f"{match['n_new']} are new candidates: [{CROSSMATCH_STEM}.ecsv]({CROSSMATCH_STEM}.ecsv), "
                  f"[{CROSSMATCH_STEM}.fits]({CROSSMATCH_STEM}.fits).", ""]
    if "redshifts" in summary:
        lines += _redshift_markdown(summary["redshifts"], best)
    lines += ["## Files", "", f"Every number: [{JSON_NAME}]({JSON_NAME}); per prediction: "
              f"[{PREDICTIONS_NAME}]({PREDICTIONS_NAME}); per true cluster: [{TRUTHS_NAME}]({TRUTHS_NAME}).", ""]
    return "\n".join(lines)


def _redshift_markdown(accuracy, best):
    lines = ["## Redshift and richness (red sequence)", "",
             f"Estimated from the g, r, i flux cutouts of the images (`deepcee_d2.redsequence`), for the "
             f"{accuracy['n_true_positives']} true positives at {100 * best['threshold']:g}%, of which "
             f"{accuracy['n_with_peak']} have a red-sequence peak (the numbers below are over those).", "",
             f"| sigma_NMAD dz/(1+z) | outliers (\\|dz\\|/(1+z) > {accuracy['outlier']:g}) | median dz/(1+z) "
             f"| \\|dz\\| < z_err | richness scatter, dex (n) | at >= {RICH_MEMBERS} members |",
             "|---:|---:|---:|---:|---:|---:|"]

    def number(value, form):
        return "-" if value is None else format(value, form)

    lines += [f"| {number(accuracy['sigma_nmad'], '.4f')} | {number(accuracy['outlier_fraction'], '.1%')} | "
              f"{number(accuracy['median_dz'], '+.4f')} | {number(accuracy['within_error_fraction'], '.0%')} | "
              f"{number(accuracy['richness_scatter_dex'], '.3f')} ({accuracy['n_richness']}) | "
              f"{number(accuracy['richness_scatter_dex_rich'], '.3f')} ({accuracy['n_richness_rich']}) |", ""]
    if accuracy["problems"]:
        lines += [f"No estimates in {len(accuracy['problems'])} images whose flux cutout could not be made, e.g. "
                  f"{accuracy['problems'][0]}", ""]
    return lines + [f"![redshifts]({REDSHIFTS_NAME})", ""]


def write_report(evaluation, output_dir, ks_alpha, crossmatch=None, metadata=None, redshifts=None):
    """Write every output of the evaluation into ``output_dir`` and return the summary dict.

    Parameters
    ----------
    evaluation : `~deepcee_d2.evaluation.matching.Evaluation`
    output_dir : str or Path
        Created if missing; files already there under the same names are replaced, atomically.
    ks_alpha : float
        Significance level of the KS tests.
    crossmatch : `~astropy.table.Table`, optional
        From `deepcee_d2.evaluation.crossmatch.crossmatch_false_positives`: written as FITS and ECSV.
    metadata : dict, optional
        Extra entries for ``evaluation.json`` (e.g. ``dataset``, ``n_images``).
    redshifts : dict, optional
        With red-sequence estimates in the predictions: ``outlier`` and ``problems`` (see `summarise`); adds
        their accuracy and ``redshifts.png``.

    Returns
    -------
    dict
        What ``evaluation.json`` holds, with ``files``: the names written.
    """
    output_dir = Path(output_dir)
    ks, completeness = _statistics(evaluation, ks_alpha)
    summary = _summary(evaluation, ks, completeness, crossmatch, metadata, redshifts)

    figures = {PR_CURVE_NAME: plot_precision_recall(evaluation.table, evaluation.best_index),
               DISTANCES_NAME: plot_centre_distances(evaluation)}
    for row in ks:
        figures[recovered_vs_all_name(row["property"])] = plot_recovered_vs_all(evaluation.truths, row["property"], row)
    for name, table in completeness.items():
        figures[completeness_name(name)] = plot_completeness(table, name)
    if redshifts is not None:
        figures[REDSHIFTS_NAME] = plot_redshifts(evaluation, redshifts["outlier"])
    for file_name, figure in figures.items():
        _write_figure(figure, output_dir / file_name)
    written = list(figures)

    _write_table(evaluation.predictions, output_dir / PREDICTIONS_NAME, "ascii.ecsv")
    _write_table(evaluation.truths, output_dir / TRUTHS_NAME, "ascii.ecsv")
    written += [PREDICTIONS_NAME, TRUTHS_NAME]
    if crossmatch is not None:
        _write_table(crossmatch, output_dir / f"{CROSSMATCH_STEM}.fits", "fits")
        _write_table(crossmatch, output_dir / f"{CROSSMATCH_STEM}.ecsv", "ascii.ecsv")
        written += [f"{CROSSMATCH_STEM}.fits", f"{CROSSMATCH_STEM}.ecsv"]
    _write_text(output_dir / MARKDOWN_NAME, _markdown_report(evaluation, summary, ks, crossmatch))
    summary["files"] = written + [MARKDOWN_NAME, JSON_NAME]
    _write_text(output_dir / JSON_NAME, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary
