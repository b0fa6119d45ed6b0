"""Calibrations recover injected offsets, trends and width errors; they survive model files."""

import numpy as np
import pytest

from stellarml.calibration import (
    ChainedCalibration,
    GroupCalibration,
    TrendCalibration,
    WidthCalibration,
)
from stellarml.labels import LABELS
from stellarml.posterior import BinnedPosterior, GaussianPosterior, LabelBins

N = 400


def simulated(seed=0, *, offset=-80.0, slope=0.06, width_factor=2.0, scatter=40.0, n=N):
    """Reference stars and a model that is ``offset + slope (T - 5500)`` off, intervals too wide.

    The model's error is the injected trend plus Gaussian scatter ``scatter``; its
    posteriors claim ``width_factor * scatter``. Reference errors are 20 K.
    """
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4300, 6700, n)
    feh = rng.uniform(-1.0, 0.4, n)
    ref_err = np.full(n, 20.0)
    observed_ref = teff + ref_err * rng.standard_normal(n)
    predicted = teff + offset + slope * (teff - 5500.0) + scatter * rng.standard_normal(n)
    pred_feh = feh + 0.05 + 0.03 * rng.standard_normal(n)
    sigma = np.column_stack([np.full(n, width_factor * scatter), np.full(n, 0.06)])
    post = GaussianPosterior(np.column_stack([predicted, pred_feh]), sigma**2, ["teff", "fe_h"])
    reference = {"teff": observed_ref, "teff_err": ref_err, "fe_h": feh}
    return post, reference, teff


def test_trend_recovers_an_injected_offset_and_trend():
    post, reference, teff = simulated()
    cal = TrendCalibration({"teff": ["teff"], "fe_h": []}).fit(post, reference, name="sim")
    theta, err = cal.coefficients_["teff"], np.sqrt(np.diag(cal.covariance_["teff"]))
    # equal reference errors: the weighted fit is the least-squares line of reference - model
    predicted = post.median("teff")
    centre = cal.centers_["teff"]["teff"]
    slope, intercept = np.polyfit(predicted - centre, reference["teff"] - predicted, 1)
    np.testing.assert_allclose(theta, [intercept, slope], rtol=1e-6)
    # and it finds the injected error: reference - model = (80 - 0.06 (c - 5500)) / 1.06 at
    # the centre c, slope -0.06 / 1.06 per K (the model's Teff scale is stretched by 1.06)
    assert abs(theta[0] - (80.0 - 0.06 * (centre - 5500.0)) / 1.06) < 3 * err[0]
    assert abs(theta[1] - (-0.06 / 1.06)) < 3 * err[1]
    assert cal.scatter_["teff"] == pytest.approx(40.0 / 1.06, rel=0.15)
    assert cal.coefficients_["fe_h"][0] == pytest.approx(-0.05, abs=0.01)
    out = cal(post)
    resid = teff - out.median("teff")
    assert abs(np.median(resid)) < 5.0
    assert abs(np.polyfit(teff, resid, 1)[0]) < 0.01  # the trend is gone
    # the correction's own uncertainty widens the posteriors a little, never narrows them
    assert np.all(out.summaries()["teff"]["err_lo"] >= post.summaries()["teff"]["err_lo"])
    meta = cal.table_meta()
    assert meta["calibration_reference"] == "sim" and meta["calibration_n"] == N
    assert meta["calibration_corrections"]["teff"]["terms"] == ["offset", "teff"]


def test_trend_clips_outliers_and_does_not_extrapolate():
    post, reference, _ = simulated(1, slope=0.0)
    reference["teff"] = reference["teff"].copy()
    reference["teff"][:5] += 3000.0  # five wrong reference labels
    cal = TrendCalibration({"teff": ["teff"]}).fit(post, reference, ids=[f"s{i}" for i in range(N)])
    assert cal.provenance_["clipped"]["teff"][:5] == ["s0", "s1", "s2", "s3", "s4"]
    assert cal.coefficients_["teff"][0] == pytest.approx(80.0, abs=8.0)
    hot = GaussianPosterior([[12000.0, 0.0]], [[100.0**2, 0.01]], ["teff", "fe_h"])
    edge = GaussianPosterior(
        [[cal.ranges_["teff"]["teff"][1], 0.0]], [[1e4, 0.01]], ["teff", "fe_h"]
    )
    assert cal.shifts(hot)["teff"][0] == pytest.approx(cal.shifts(edge)["teff"][0])


def test_width_recovers_an_injected_width_error():
    post, reference, _ = simulated(2, offset=0.0, slope=0.0, width_factor=2.5, n=4000)
    cal = WidthCalibration(labels=["teff"]).fit(post, reference)
    # the true scatter is 40 K; the reference error (20 K) is accounted for, not absorbed
    assert cal.scale_["teff"] == pytest.approx(1 / 2.5, rel=0.1)
    lo, hi = cal.scale_interval_["teff"]
    assert lo < cal.scale_["teff"] < hi
    assert cal.coverage_before_["teff"] > 0.95 and cal.coverage_after_["teff"] == pytest.approx(
        0.68, abs=0.01
    )
    out = cal(post)
    s = out.summaries()["teff"]
    r = reference["teff"] - s["median"]
    half = np.where(r > 0, s["err_hi"], s["err_lo"])
    covered = np.abs(r) <= np.hypot(half, reference["teff_err"])
    assert covered.mean() == pytest.approx(0.68, abs=0.005)
    np.testing.assert_allclose(out.median("teff"), post.median("teff"))  # medians unchanged


def test_chain_fits_each_step_on_the_previous_output():
    post, reference, teff = simulated(3)
    chain = ChainedCalibration([TrendCalibration({"teff": ["teff"]}), WidthCalibration(["teff"])])
    chain.fit(post, reference, name="sim")
    out = chain(post)
    assert abs(np.median(teff - out.median("teff"))) < 5.0
    assert chain.steps[1].scale_["teff"] == pytest.approx(1 / 2.0 / 1.06, rel=0.15)
    assert "then interval widths" in chain.summary()
    corrections = chain.corrections()["teff"]
    assert {"coefficients", "width_scale"} <= set(corrections)
    assert chain.provenance_["reference"] == chain.steps[1].provenance_["reference"] == "sim"


def test_group_recovers_an_injected_teff_trend():
    rng = np.random.default_rng(5)
    n_groups, size = 60, 4
    cluster_feh = np.repeat(rng.uniform(-0.8, 0.3, n_groups), size)
    teff = rng.uniform(4300, 6600, n_groups * size)
    injected = 2e-4 * (teff - 5500.0)  # the model's [Fe/H] drifts with Teff
    pred = cluster_feh + injected + 0.02 * rng.standard_normal(teff.size)
    post = GaussianPosterior(
        np.column_stack([teff, pred]),
        np.column_stack([np.full(teff.size, 80.0**2), np.full(teff.size, 0.04**2)]),
        ["teff", "fe_h"],
    )
    groups = np.repeat([f"cluster{k}" for k in range(n_groups)], size).astype(object)
    groups[::17] = None  # field stars: in no group
    cal = GroupCalibration("fe_h", ["teff"]).fit(post, groups=groups)
    assert cal.coefficients_[0] == pytest.approx(-2e-4, abs=3 * np.sqrt(cal.covariance_[0, 0]))
    assert cal.spread_after_ < 0.5 * cal.spread_before_
    assert cal.spread_after_ == pytest.approx(0.02, rel=0.3)
    out = cal(post).median("fe_h")
    for g in np.unique(groups[groups != None]):  # noqa: E711 - object array
        rows = groups == g
        assert np.std(out[rows]) < 0.05
    # pairs (wide binaries) are groups of two
    pairs = np.repeat(np.arange(teff.size // 2), 2)
    two = GroupCalibration("fe_h", ["teff"]).fit(post, groups=pairs)
    assert two.n_groups_ == teff.size // 2


def test_group_recovers_a_teff_trend_from_wide_binaries():
    """Pairs share [X/Fe]; a curved Teff trend of the model shows as pair differences."""
    rng = np.random.default_rng(11)
    n_pairs = 150
    shared = np.repeat(rng.uniform(-0.3, 0.4, n_pairs), 2)  # the pair's common [Mg/Fe]
    teff = np.column_stack([rng.uniform(5200, 6500, n_pairs), rng.uniform(4200, 5600, n_pairs)])
    teff = teff.ravel()  # primary, secondary, primary, ...
    trend = 1.5e-4 * (teff - 5500.0) + 8e-8 * (teff - 5500.0) ** 2
    pred = shared + trend + 0.015 * rng.standard_normal(teff.size)
    post = GaussianPosterior(
        np.column_stack([teff, pred]),
        np.column_stack([np.full(teff.size, 60.0**2), np.full(teff.size, 0.03**2)]),
        ["teff", "mg_fe"] if "mg_fe" in LABELS else ["teff", "alpha_fe"],
    )
    label = post.label_names[1]
    pairs = np.repeat(np.arange(n_pairs), 2)
    cal = GroupCalibration(label, ["teff"], degree=2).fit(post, groups=pairs)
    # the correction undoes the injected trend up to a constant (groups fix no zero point)
    grid = np.linspace(4300, 6400, 8)
    probe = GaussianPosterior(
        np.column_stack([grid, np.zeros_like(grid)]),
        np.column_stack([np.full(grid.size, 1.0), np.full(grid.size, 1e-4)]),
        post.label_names,
    )
    corrected = cal(probe).median(label)
    injected = 1.5e-4 * (grid - 5500.0) + 8e-8 * (grid - 5500.0) ** 2
    residual = corrected + injected
    assert np.ptp(residual) < 0.02  # flat: the trend (0.27 dex peak to peak) is gone
    assert np.ptp(injected) > 0.25
    # pair differences no longer depend on Teff
    out = cal(post).median(label)
    d_out, d_in = out[0::2] - out[1::2], pred[0::2] - pred[1::2]
    dt = teff[0::2] - teff[1::2]
    assert abs(np.corrcoef(dt, d_in)[0, 1]) > 0.6
    assert abs(np.corrcoef(dt, d_out)[0, 1]) < 0.2
    assert cal.spread_after_ == pytest.approx(0.015, rel=0.3)


def test_calibration_acts_on_binned_posteriors():
    bins = LabelBins(3000.0, 8500.0, 50.0)
    post, reference, teff = simulated(6)
    mu, sigma = post.median("teff"), np.sqrt(post.covariance[:, 0, 0])
    pdf = np.exp(-0.5 * ((bins.centers[None] - mu[:, None]) / sigma[:, None]) ** 2)
    binned = BinnedPosterior({"teff": pdf.astype(np.float32)}, {"teff": bins})
    cal = ChainedCalibration([TrendCalibration({"teff": ["teff"]}), WidthCalibration()]).fit(
        binned, reference
    )
    out = cal(binned)
    assert abs(np.median(teff - out.median("teff"))) < 6.0
    assert np.median(out.summaries()["teff"]["err_lo"]) < 0.7 * np.median(
        binned.summaries()["teff"]["err_lo"]
    )


def test_bad_calibration_inputs():
    post, reference, _ = simulated(7, n=30)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        TrendCalibration({"teff": []})(post)
    with pytest.raises(ValueError, match="needs reference labels"):
        TrendCalibration().fit(post)
    with pytest.raises(ValueError, match="needs groups="):
        GroupCalibration("fe_h", ["teff"]).fit(post)
    with pytest.raises(ValueError, match="'logg' is not a label of the posterior"):
        TrendCalibration({"logg": []}).fit(post, reference)
    with pytest.raises(ValueError, match=r"reference column 'teff' has 3 rows, not 30"):
        TrendCalibration({"teff": []}).fit(post, {"teff": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="too few"):
        TrendCalibration({"teff": ["teff", "fe_h"]}, degree=3).fit(
            post[:6], reference_rows(reference, 6)
        )
    cal = TrendCalibration({"teff": []}).fit(post, reference)
    other = GaussianPosterior([[1.0]], [[1.0]], ["logg"])
    with pytest.raises(ValueError, match=r"corrects \['teff'\], which the posterior does not have"):
        cal(other)


def reference_rows(reference, n):
    return {k: np.asarray(v)[:n] for k, v in reference.items()}
