"""Label posteriors: the three forms give the same summaries; rows, mixtures and transforms."""

import numpy as np
import pytest
from scipy.special import ndtri

from stellarml.posterior import (
    BinnedPosterior,
    GaussianPosterior,
    LabelBins,
    LabelPosterior,
    SamplePosterior,
)

BINS = LabelBins(3000.0, 8000.0, 25.0)


def gaussian_pdf(mu, sigma, bins=BINS):
    centers = bins.centers
    edges = bins.edges
    from scipy.special import ndtr

    p = ndtr((edges[None, 1:] - mu[:, None]) / sigma[:, None]) - ndtr(
        (edges[None, :-1] - mu[:, None]) / sigma[:, None]
    )
    assert p.shape == (mu.size, centers.size)
    return p.astype(np.float32)


@pytest.fixture
def three_forms():
    """The same Gaussians N(mu, sigma) as a binned PDF, draws and mean + covariance."""
    rng = np.random.default_rng(4)
    mu = np.array([4500.0, 5200.0, 6100.0])
    sigma = np.array([80.0, 120.0, 60.0])
    binned = BinnedPosterior({"teff": gaussian_pdf(mu, sigma)}, {"teff": BINS})
    draws = mu[:, None] + sigma[:, None] * rng.standard_normal((3, 40000))
    samples = SamplePosterior(draws, ["teff"])
    gauss = GaussianPosterior(mu[:, None], sigma[:, None] ** 2, ["teff"])
    return mu, sigma, binned, samples, gauss


def test_every_form_gives_the_same_summaries(three_forms):
    mu, sigma, binned, samples, gauss = three_forms
    # bins spread each bin's probability uniformly: widths are ~2 % wider at 60 K / 25 K bins
    for post, tol, rtol in ((binned, 1.0, 0.03), (samples, 2.0, 0.02), (gauss, 1e-9, 1e-9)):
        s = post.summaries()["teff"]
        assert set(s) == {"median", "p16", "p84", "err_lo", "err_hi", "mode", "mean"}
        np.testing.assert_allclose(s["median"], mu, atol=tol)
        np.testing.assert_allclose(s["mean"], mu, atol=tol)
        np.testing.assert_allclose(s["err_lo"], -ndtri(0.16) * sigma, rtol=rtol)
        np.testing.assert_allclose(s["err_hi"], s["p84"] - s["median"])
    np.testing.assert_allclose(binned.mode("teff"), mu, atol=3.0)
    np.testing.assert_array_equal(gauss.mode("teff"), mu)
    assert np.isnan(samples.mode("teff")).all()  # the mode is not defined for draws
    q = gauss.quantiles("teff", [0.025, 0.975])
    np.testing.assert_allclose(q[:, 1] - q[:, 0], 2 * 1.959964 * sigma, rtol=1e-6)
    np.testing.assert_allclose(binned.quantiles("teff", [0.5])[:, 0], binned.median("teff"))


def test_rows_select_expand_concatenate(three_forms):
    _, _, binned, samples, gauss = three_forms
    for post in (binned, samples, gauss):
        post = post.with_flags(np.array([1, 2, 4])).with_diagnostics(chi2=[1.0, 2.0, 3.0])
        sub = post[[2, 0]]
        np.testing.assert_array_equal(sub.median("teff"), post.median("teff")[[2, 0]])
        np.testing.assert_array_equal(sub.flags, [4, 1])
        np.testing.assert_array_equal(sub.diagnostics["chi2"], [3.0, 1.0])
        mask = np.array([True, False, True, False, True])
        big = post.expand(mask)
        assert len(big) == 5 and list(big.valid) == list(mask)
        assert np.isnan(big.median("teff")[[1, 3]]).all()
        np.testing.assert_array_equal(big.median("teff")[mask], post.median("teff"))
        np.testing.assert_array_equal(big.flags, [1, 0, 2, 0, 4])
        assert np.isnan(big.diagnostics["chi2"][1])
        joined = type(post).concatenate([post[:1], post[1:]])
        np.testing.assert_array_equal(joined.median("teff"), post.median("teff"))
        with pytest.raises(ValueError, match="3 True entries"):
            post.expand([True, False])


def test_combine_is_the_mixture(three_forms):
    mu, sigma, binned, samples, gauss = three_forms
    shifted = BinnedPosterior(
        {"teff": gaussian_pdf(mu + 200, sigma)},
        {"teff": BINS},
        diagnostics={"domain_distance": [0.5, 2.0, 0.1]},
        flags=[0, 8, 0],
    )
    first = binned.with_diagnostics(domain_distance=[1.5, 0.2, 0.3])
    mix = BinnedPosterior.combine([first, shifted])
    np.testing.assert_allclose(mix.pdf("teff"), (binned.pdf("teff") + shifted.pdf("teff")) / 2)
    np.testing.assert_allclose(mix.mean("teff"), mu + 100, atol=1.0)
    # the domain distance combines as the largest member's; flags are OR-ed
    np.testing.assert_array_equal(mix.diagnostics["domain_distance"], [1.5, 2.0, 0.3])
    np.testing.assert_array_equal(mix.flags, [0, 8, 0])
    g2 = GaussianPosterior((mu + 200)[:, None], sigma[:, None] ** 2, ["teff"])
    gmix = GaussianPosterior.combine([gauss, g2])
    np.testing.assert_allclose(gmix.mean("teff"), mu + 100)
    np.testing.assert_allclose(gmix.std("teff"), np.sqrt(sigma**2 + 100.0**2))
    smix = SamplePosterior.combine([samples, samples])
    assert smix.samples.shape == (3, 80000, 1)
    with pytest.raises(TypeError, match="GaussianPosterior"):
        LabelPosterior.combine([binned, gauss])
    with pytest.raises(ValueError, match="other bins"):
        BinnedPosterior.combine(
            [
                binned,
                BinnedPosterior({"teff": binned.pdf("teff")[:, :-1]}, {"teff": (3000, 7975, 25)}),
            ]
        )


def test_transformed_shifts_scales_and_convolves(three_forms):
    _, _, binned, samples, gauss = three_forms
    shift = np.array([10.0, -50.0, 80.0])
    for post, tol in ((binned, 1.0), (samples, 2.0), (gauss, 1e-9)):
        out = post.transformed("teff", shift=shift, scale=0.5, extra_sigma=30.0)
        np.testing.assert_allclose(out.median("teff"), post.median("teff") + shift, atol=tol)
        expected = np.sqrt(
            (0.5 * post.summaries()["teff"]["err_lo"]) ** 2 + (-ndtri(0.16) * 30) ** 2
        )
        np.testing.assert_allclose(out.summaries()["teff"]["err_lo"], expected, rtol=0.03)
        # the original is unchanged
        np.testing.assert_array_equal(post.median("teff"), post.summaries()["teff"]["median"])
    with pytest.raises(ValueError, match="scale positive"):
        gauss.transformed("teff", scale=0.0)
    # binned: the bins are mapped per row, never re-binned
    out = binned.transformed("teff", shift=shift)
    np.testing.assert_allclose(out.bin_centers("teff")[0], BINS.centers + 10.0)
    np.testing.assert_array_equal(out.pdf("teff"), binned.pdf("teff"))


def test_gaussian_correlations_and_draws():
    cov = np.array([[[100.0**2, 0.8 * 100 * 0.2], [0.8 * 100 * 0.2, 0.2**2]]])
    post = GaussianPosterior([[5000.0, 4.0]], cov, ["teff", "logg"])
    draws = post.to_samples(20000, seed=1).samples[0]
    np.testing.assert_allclose(np.corrcoef(draws.T)[0, 1], 0.8, atol=0.02)
    scaled = post.transformed("teff", scale=2.0)
    np.testing.assert_allclose(scaled.covariance[0, 0, 1], 2 * cov[0, 0, 1])
    binned_draws = BinnedPosterior(
        {"teff": gaussian_pdf(np.array([5000.0]), np.array([100.0]))}, {"teff": BINS}
    ).to_samples(20000, seed=2)
    np.testing.assert_allclose(binned_draws.samples[0, :, 0].std(), 100.0, rtol=0.03)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"pdf of 'teff' must be \(n, 200\)"):
        BinnedPosterior({"teff": np.ones((3, 10))}, {"teff": BINS})
    with pytest.raises(ValueError, match="differ from bins labels"):
        BinnedPosterior({"teff": np.ones((3, 200))}, {"logg": BINS})
    with pytest.raises(ValueError, match=r"samples must be \(n, n_samples, 2\)"):
        SamplePosterior(np.ones((3, 5)), ["teff", "logg"])
    with pytest.raises(ValueError, match="non-negative variances"):
        GaussianPosterior([[1.0]], [[-1.0]], ["teff"])
    with pytest.raises(KeyError, match="unknown diagnostic 'chi3'"):
        GaussianPosterior([[1.0]], [[1.0]], ["teff"], diagnostics={"chi3": [1.0]})
    with pytest.raises(ValueError, match=r"flags must have shape \(1,\)"):
        GaussianPosterior([[1.0]], [[1.0]], ["teff"], flags=[0, 0])
    with pytest.raises(KeyError, match="label 'logg' not in this posterior"):
        GaussianPosterior([[1.0]], [[1.0]], ["teff"]).median("logg")
    # non-finite rows are not valid: their summaries are NaN, not invented
    post = GaussianPosterior([[1.0], [np.nan]], [[1.0], [1.0]], ["teff"])
    assert list(post.valid) == [True, False] and np.isnan(post.median("teff")[1])


def test_bimodality_criterion_on_known_densities():
    from stellarml.posterior import BIMODAL_MAX_DIP, BIMODAL_MIN_PEAK, bimodal_rows

    assert (BIMODAL_MIN_PEAK, BIMODAL_MAX_DIP) == (0.2, 0.5)
    x = np.linspace(0.0, 10.0, 201)

    def g(m, s):
        return np.exp(-0.5 * ((x - m) / s) ** 2)

    rows = np.stack(
        [
            g(5, 1),  # one Gaussian
            g(3, 0.5) + 0.5 * g(7, 0.5),  # two modes, second at half height, deep dip
            g(3, 0.5) + 0.1 * g(7, 0.5),  # second mode below 0.2 of the first
            g(4, 1) + g(5.5, 1),  # two components 1.5 sigma apart: one flat-topped mode
            g(3, 1) + 0.3 * g(7.5, 1),  # second mode at 0.3 of the first, separated
            np.zeros_like(x),  # all zero
            np.full_like(x, np.nan),  # not finite
            g(0, 0.3) + g(10, 0.3),  # modes at both edges of the grid
        ]
    )
    assert bimodal_rows(rows).tolist() == [False, True, False, False, True, False, False, True]
    # the thresholds do what they say
    assert bimodal_rows(rows[2:3], min_peak=0.05).tolist() == [True]
    assert bimodal_rows(rows[1:2], max_dip=0.0).tolist() == [False]
    with pytest.raises(ValueError, match="min_peak must be in"):
        bimodal_rows(rows, min_peak=0)
    with pytest.raises(ValueError, match=r"density must be \(n, K\)"):
        bimodal_rows(x)


def test_one_bin_wiggles_are_not_modes():
    from stellarml.posterior import bimodal_rows

    x = np.linspace(0.0, 10.0, 101)
    smooth = np.exp(-0.5 * ((x - 5) / 1.5) ** 2)
    wiggly = smooth * (1 + 0.3 * (-1) ** np.arange(x.size))  # +-30 % bin-to-bin
    assert not bimodal_rows(wiggly[None])[0]


def test_every_form_flags_a_bimodal_posterior():
    from stellarml.flags import LabelFlag

    rng = np.random.default_rng(7)
    mu = np.array([[4500.0, 6500.0], [5200.0, 5200.0]])  # row 0 bimodal, row 1 not
    pdf = 0.5 * gaussian_pdf(mu[:, 0], np.full(2, 100.0)) + 0.5 * gaussian_pdf(
        mu[:, 1], np.full(2, 100.0)
    )
    binned = BinnedPosterior({"teff": pdf}, {"teff": BINS})
    draws = np.where(rng.random((2, 4000)) < 0.5, mu[:, :1], mu[:, 1:])
    draws = draws + 100.0 * rng.standard_normal((2, 4000))
    samples = SamplePosterior(draws, ["teff"])
    gauss = GaussianPosterior(mu[:, :1], np.full((2, 1), 1e4), ["teff"])
    assert binned.bimodal("teff").tolist() == [True, False]
    assert samples.bimodal("teff").tolist() == [True, False]
    assert gauss.bimodal("teff").tolist() == [False, False]
    assert binned.bimodal_flags().tolist() == [int(LabelFlag.BIMODAL_PDF), 0]
    # draws of the binned form are bimodal too; an invalid row never is
    assert binned.to_samples(4000, seed=1).bimodal("teff").tolist() == [True, False]
    assert binned.expand(np.array([True, False, True])).bimodal("teff").tolist() == [
        True,
        False,
        False,
    ]


def test_unimodal_draws_rarely_look_bimodal():
    rng = np.random.default_rng(11)
    for n_draws in (100, 1000, 10000):
        draws = rng.standard_normal((300, n_draws))
        rate = SamplePosterior(draws, ["teff"]).bimodal("teff").mean()
        assert rate <= 0.01, (n_draws, rate)


def test_a_handful_of_draws_is_never_called_bimodal():
    from stellarml.posterior.samples import MIN_DRAWS_FOR_MODES

    draws = np.tile([[4000.0, 4000.0, 5000.0, 5000.0]], (3, 1))  # 4 draws, two values
    assert not SamplePosterior(draws, ["teff"]).bimodal("teff").any()
    many = np.concatenate([np.full(MIN_DRAWS_FOR_MODES, 4000.0), np.full(20, 5000.0)])
    assert SamplePosterior(many[None], ["teff"]).bimodal("teff").tolist() == [True]
