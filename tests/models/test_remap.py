"""Tests of the deep-REMAP network and model: training, PDFs, domain check, fine-tuning."""

import contextlib
import copy

import astropy.units as u
import numpy as np
import pytest
import torch

from stellarml import read_model, write_model
from stellarml.flags import LabelFlag
from stellarml.labels import LABELS, LabelSpec, register_label
from stellarml.models import RemapModel, RemapNet
from stellarml.models.remap import (
    LabelBins,
    der_snr_ivar,
    nearest_distance,
    pdf_from_logits,
    summarize_pdf,
)

BINS = {"teff": (3500.0, 7500.0, 100.0), "logg": (0.0, 5.5, 0.25), "fe_h": (-2.5, 1.0, 0.1)}
TINY = {
    "stem_channels": 8,
    "stem_kernel": 5,
    "stem_stride": 2,
    "stage_channels": (12, 16),
    "stage_blocks": (1, 2),
    "kernel_size": 3,
    "pool_length": 4,
    "embedding_dim": 16,
    "dropout": 0.0,
}
FAST = {"batch_size": 64, "lr": 5e-3, "progress": False, "domain_reference_size": 200}


def toy_spectra(n, npix=64, seed=0, snr=None):
    """Absorption-line spectra whose line depths and widths depend on the labels."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(4000, 7000, n)
    logg = rng.uniform(1.0, 5.0, n)
    feh = rng.uniform(-2.0, 0.5, n)
    t = (teff[:, None] - 5500) / 1500
    g = (logg[:, None] - 3) / 2
    m = (feh[:, None] + 0.75) / 1.25
    k = np.arange(6)[None, :]
    depth = 0.35 + 0.2 * np.sin(k + 1.3) * t + 0.15 * m * (1 + 0.3 * np.cos(2 * k))
    depth = np.clip(depth + 0.05 * g * (k % 3 - 1), 0.02, 0.95)
    width = 1.2 + 0.5 * g + 0.2 * (k % 2)
    centres = np.linspace(6, npix - 6, 6)[None, :, None]
    x = np.arange(npix)[None, None, :]
    flux = 1.0 - (depth[..., None] * np.exp(-0.5 * ((x - centres) / width[..., None]) ** 2)).sum(1)
    flux = np.clip(flux, 0.02, None)
    labels = np.stack([teff, logg, feh], axis=1)
    if snr is None:
        return flux.astype(np.float32), None, labels
    flux = flux + rng.normal(0.0, 1.0 / snr, flux.shape)
    return flux.astype(np.float32), np.full(flux.shape, snr**2, np.float32), labels


@contextlib.contextmanager
def one_thread():
    """Tiny networks: one thread is faster and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def tiny_model(**kw):
    training = dict(FAST, **kw.pop("training", {}))
    return RemapModel(bins=BINS, architecture=TINY, training=training, **kw)


@pytest.fixture(scope="module")
def trained():
    flux, _, labels = toy_spectra(800, seed=1)
    with one_thread():
        model = tiny_model(training={"max_epochs": 15})
        return model.fit_prepared(flux, None, labels, noiseless=True)


def test_network_shapes_depth_grows_length_shrinks():
    net = RemapNet({"teff": 40, "logg": 22}, **TINY).eval()
    flux, ivar = torch.ones(3, 64), torch.full((3, 64), 100.0)
    logits, emb = net(flux, ivar)
    assert [z.shape for z in logits] == [(3, 40), (3, 22)]
    assert emb.shape == (3, 16)
    x = net.stem(net.encoder(flux, ivar))
    shapes = [tuple(x.shape[1:])]
    for stage in net.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 32), (12, 16), (16, 8)]
    assert net.label_names == ("teff", "logg")


def test_inference_copy_folds_batch_norm_exactly():
    net = RemapNet({"teff": 40, "logg": 22}, **TINY)
    gen = torch.Generator().manual_seed(0)
    for module in net.modules():  # non-trivial statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(generator=gen)
            module.running_var.uniform_(0.5, 2.0, generator=gen)
            module.weight.data.normal_(generator=gen)
            module.bias.data.normal_(generator=gen)
    net.eval()
    fast = net.inference_copy()
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fast.modules())
    flux = 1 - 0.5 * torch.rand(5, 64, generator=gen)
    ivar = torch.full((5, 64), 400.0)
    with torch.no_grad():
        (a, _), ea = net(flux, ivar)
        (b, _), eb = fast(flux, ivar)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ea, eb, rtol=1e-4, atol=1e-4)
    assert net.stem.norm.training is False and isinstance(net.stem.norm, torch.nn.BatchNorm1d)


def test_label_bins():
    b = LabelBins(3500, 7500, 100)
    assert b.n_bins == 40
    assert b.centers[0] == 3550 and b.edges[-1] == 7500
    assert b.positions([3500, 7500]).tolist() == [0.0, 40.0]
    with pytest.raises(ValueError, match="integer"):
        LabelBins(0, 1, 0.3)
    with pytest.raises(ValueError, match="hi > lo"):
        LabelBins(1, 0, 0.1)


def test_summaries_of_known_pdfs():
    bins = LabelBins(0.0, 10.0, 0.5)
    centres = bins.centers
    gauss = np.exp(-0.5 * ((centres - 4.3) / 1.0) ** 2)
    single = np.zeros(20)
    single[7] = 1.0
    skewed = np.exp(-centres / 1.5) * (centres > 1.0)
    s = summarize_pdf(np.stack([gauss, single, skewed]), bins)
    # Gaussian: median = mean = mode = mu, p84 - p16 = 2 sigma (to binning accuracy)
    assert s["median"][0] == pytest.approx(4.3, abs=0.01)
    assert s["mean"][0] == pytest.approx(4.3, abs=0.01)
    assert s["mode"][0] == pytest.approx(4.3, abs=0.06)
    assert s["p84"][0] - s["p16"][0] == pytest.approx(2.0, abs=0.05)
    # a single bin: uniform inside [3.5, 4.0)
    assert s["median"][1] == pytest.approx(3.75)
    assert s["p16"][1] == pytest.approx(3.5 + 0.16 * 0.5)
    assert s["mode"][1] == pytest.approx(3.75)
    # a one-sided tail: the upper error is the larger
    assert s["err_hi"][2] > 1.5 * s["err_lo"][2]
    np.testing.assert_allclose(s["err_lo"], s["median"] - s["p16"])
    # quantiles agree with a direct interpolation of the CDF at the bin edges
    cdf = np.concatenate([[0.0], np.cumsum(skewed / skewed.sum())])
    assert s["p84"][2] == pytest.approx(np.interp(0.84, cdf, bins.edges), rel=1e-9)
    assert s["edge_mass"][1] == 0.0
    edge = summarize_pdf(np.eye(20)[[0, 19, 5]], bins)["edge_mass"]
    assert edge.tolist() == [1.0, 1.0, 0.0]


def test_sigmoid_pdf_removes_the_floor_of_clipped_negatives():
    p = torch.full((2, 51), 0.04)
    p[0, 20] = 0.9
    p[1] = 0.01  # nothing above the margin: plain sigmoids, normalised
    logits = torch.logit(p)
    shifted = pdf_from_logits(logits, "sigmoid", clip=0.05)
    plain = pdf_from_logits(logits, "sigmoid", clip=0.0)
    assert shifted[0, 20] == pytest.approx(1.0)
    assert plain[0, 20] < 0.35  # 50 negatives at 0.04 would swamp the positive
    torch.testing.assert_close(shifted[1], torch.full((51,), 1 / 51))
    torch.testing.assert_close(pdf_from_logits(logits), torch.softmax(logits, -1))


def test_nearest_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(30, 5)), rng.normal(size=(50, 5))
    brute = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distance(q, r, chunk=7), brute, rtol=1e-4)
    loo = np.sort(np.sqrt(((r[:, None] - r[None]) ** 2).sum(-1)), axis=1)[:, 1]
    np.testing.assert_allclose(nearest_distance(r, r, exclude_self=True, chunk=8), loo, rtol=1e-4)


def test_der_snr_recovers_white_noise():
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 2000)
    flux = 1.0 + 0.05 * np.sin(3 * x) + rng.normal(0.0, 1 / 40, (3, 2000))
    mask = np.ones((3, 2000))
    mask[0, 100:300] = 0
    mask[2] = 0  # nothing usable
    ivar, snr = der_snr_ivar(flux, mask)
    assert snr[:2] == pytest.approx([40, 40], rel=0.05)
    assert np.isnan(snr[2]) and not ivar[2].any()
    assert not ivar[0, 100:300].any()
    assert ivar[1] == pytest.approx(snr[1] ** 2)


def test_unknown_uncertainties_are_estimated(trained):
    flux, ivar, _ = toy_spectra(20, seed=12, snr=20)
    unit = (ivar > 0).astype(np.float32)  # what preparation gives without uncertainties
    flags = np.where(np.arange(20) < 10, LabelFlag.NO_UNCERTAINTY, 0)
    mixed = trained.predict_prepared(flux, np.where(flags[:, None] > 0, unit, ivar), flags=flags)
    estimated = trained.predict_prepared(flux, None)
    given = trained.predict_prepared(flux, ivar)
    assert np.isfinite(mixed["estimated_snr"][:10]).all()
    assert np.isnan(mixed["estimated_snr"][10:]).all()
    np.testing.assert_array_equal(mixed["estimated_snr"][:10], estimated["estimated_snr"][:10])
    for name in trained.label_names:
        np.testing.assert_array_equal(mixed["pdf"][name][:10], estimated["pdf"][name][:10])
        np.testing.assert_array_equal(mixed["pdf"][name][10:], given["pdf"][name][10:])
    # a conservative estimate: line structure counts as noise, so the S/N is a lower limit
    assert 3 < np.median(estimated["estimated_snr"]) < 20 * 1.2
    with pytest.raises(ValueError, match="flags must have shape"):
        trained.predict_prepared(flux, ivar, flags=[0, 1])


def test_training_recovers_labels(trained):
    flux, ivar, labels = toy_spectra(300, seed=2, snr=100)
    result = trained.predict_prepared(flux, ivar)
    for k, name in enumerate(trained.label_names):
        mae = np.mean(np.abs(result["summary"][name]["median"] - labels[:, k]))
        baseline = np.mean(np.abs(labels[:, k] - labels[:, k].mean()))
        assert mae < 0.35 * baseline, name
    pdf = result["pdf"]["teff"]
    assert pdf.shape == (300, 40) and pdf.dtype == np.float32
    np.testing.assert_allclose(pdf.sum(1), 1.0, rtol=1e-5)
    assert result["embedding"].shape == (300, 16)
    s = result["summary"]["logg"]
    assert np.all(s["p16"] <= s["median"]) and np.all(s["median"] <= s["p84"])
    assert set(s) == {"median", "mode", "mean", "p16", "p84", "err_lo", "err_hi"}


def test_prediction_follows_changed_weights(trained):
    model = copy.deepcopy(trained)
    flux, ivar, _ = toy_spectra(5, seed=15, snr=50)
    before = model.predict_prepared(flux, ivar)["summary"]["teff"]["median"]
    with torch.no_grad():
        model.net_.heads.teff[-1].bias[:20] += 5.0  # push the PDF to low temperatures
    after = model.predict_prepared(flux, ivar)["summary"]["teff"]["median"]
    assert np.all(after < before)


def test_learned_attributes(trained):
    assert trained.n_pix_ == 64
    assert trained.history_[0]["stage"] == "fit" and "val_loss" in trained.history_[0]
    assert trained.metrics_["fit"]["split"] == "validation"
    assert trained.metrics_["fit"]["n"] == 80
    assert set(trained.metrics_["fit"]["labels"]["teff"]) == {
        "mae",
        "rmse",
        "bias",
        "coverage_68",
        "median_half_width",
    }
    prov = trained.provenance_["fit"]
    assert prov["n_train"] == 720 and prov["n_validation"] == 80 and prov["noiseless"]
    assert trained.domain_reference_.shape == (200, 16)
    assert trained.domain_reference_.dtype == np.float32
    assert np.isfinite(trained.domain_threshold_) and trained.domain_threshold_ > 0


def test_domain_distance_flags_foreign_spectra(trained):
    flux, ivar, _ = toy_spectra(100, seed=3, snr=100)
    inside = trained.predict_prepared(flux, ivar)["domain_distance"]
    rng = np.random.default_rng(4)
    foreign = 1.0 - 0.8 * rng.random((100, 64)).astype(np.float32)  # no lines, just junk
    outside = trained.predict_prepared(foreign, ivar)["domain_distance"]
    assert np.mean(inside > trained.domain_threshold_) < 0.1
    assert np.mean(outside > trained.domain_threshold_) > 0.9


def test_masked_pixels_are_handled(trained):
    flux, ivar, _ = toy_spectra(4, seed=5, snr=50)
    flux[:, 10:20] = np.nan
    ivar[:, 10:20] = 0.0
    result = trained.predict_prepared(flux, ivar, return_pdf=False)
    assert "pdf" not in result
    assert all(np.isfinite(v).all() for v in result["summary"]["teff"].values())
    with pytest.raises(ValueError, match="non-finite flux"):
        trained.predict_prepared(np.full((1, 64), np.nan), np.ones((1, 64)))
    with pytest.raises(ValueError, match="64"):
        trained.predict_prepared(np.ones((1, 65)), np.ones((1, 65)))
    with pytest.raises(ValueError, match="ivar must be finite"):
        trained.predict_prepared(np.ones((1, 64)), -np.ones((1, 64)))


def test_same_seed_same_weights():
    flux, _, labels = toy_spectra(120, seed=6)

    def fit(seed):
        model = tiny_model(seed=seed, training={"max_epochs": 2})
        return model.fit_prepared(flux, None, labels, noiseless=True).net_.state_dict()

    a, b, c = fit(3), fit(3), fit(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_labels_outside_bins_and_fatal_rows():
    flux, _, labels = toy_spectra(60, seed=7)
    labels[[3, 17], 0] = [9000.0, 3000.0]
    ids = [f"star{i}" for i in range(60)]
    model = tiny_model(training={"max_epochs": 1})
    with pytest.raises(ValueError, match=r"2 teff labels lie outside .*star3.*star17"):
        model.fit_prepared(flux, None, labels, noiseless=True, ids=ids)
    flags = np.zeros(60, dtype=np.int64)
    flags[[5, 6]] = LabelFlag.BAD_INPUT
    flags[8] = LabelFlag.LOW_SNR  # not fatal: kept
    model.fit_prepared(flux, None, labels, noiseless=True, ids=ids, flags=flags, clip_to_bins=True)
    prov = model.provenance_["fit"]
    assert prov["excluded_fatal"] == {"count": 2, "ids": ["star5", "star6"]}
    assert prov["clipped_labels"]["teff"] == {"count": 2, "ids": ["star3", "star17"]}
    assert prov["n_train"] + prov["n_validation"] == 58
    labels[0, 2] = np.nan
    with pytest.raises(ValueError, match="no finite fe_h"):
        model.fit_prepared(flux, None, labels, noiseless=True, clip_to_bins=True)


def test_bad_inputs_are_rejected():
    model = tiny_model()
    flux, _, labels = toy_spectra(10)
    with pytest.raises(RuntimeError, match="not trained"):
        model.predict_prepared(flux, np.ones_like(flux))
    with pytest.raises(ValueError, match="noiseless=True"):
        model.fit_prepared(flux, None, labels)
    with pytest.raises(ValueError, match="shape"):
        model.fit_prepared(flux, None, labels[:, :2], noiseless=True)
    with pytest.raises(ValueError, match="unknown architecture settings"):
        RemapModel(architecture={"depth": 3}).get_config()
    # tc_fe: a label registered only here (c_fe and the like are in the registry)
    register_label(LabelSpec("tc_fe", u.dex, "phys.abund.X", "[Tc/Fe]", (-2.0, 2.0)))
    try:
        with pytest.raises(ValueError, match="no default bins for label 'tc_fe'"):
            RemapModel(labels=("teff", "tc_fe")).label_bins()
        assert RemapModel(labels=("tc_fe",), bins={"tc_fe": (-1, 1, 0.1)}).label_bins()
    finally:
        del LABELS["tc_fe"]
    with pytest.raises(KeyError, match="unknown label"):
        RemapModel(labels=("teff", "xyz")).label_bins()
    with pytest.raises(ValueError, match="preparation"):
        model.fit(object())


def test_labels_as_table_columns():
    from astropy.table import QTable

    flux, _, labels = toy_spectra(40, seed=8)
    table = QTable(
        {"teff": labels[:, 0] * u.K, "logg": labels[:, 1] * u.dex, "fe_h": labels[:, 2] * u.dex}
    )
    model = RemapModel(
        ("fe_h", "teff"),
        bins={"fe_h": BINS["fe_h"], "teff": BINS["teff"]},
        architecture=TINY,
        training=dict(FAST, max_epochs=1),
    )
    model.fit_prepared(flux, None, table, noiseless=True)
    assert model.net_.label_names == ("fe_h", "teff")


def test_weight_arrays_round_trip(trained):
    arrays = trained.weight_arrays()
    assert arrays["network"]["heads.teff.2.weight"].shape == (40, 16)
    assert all(isinstance(v, np.ndarray) for v in arrays["network"].values())
    assert "centers_0" in arrays["embedding_loss"]
    rebuilt = RemapModel(
        labels=trained.label_names,
        bins={k: list(v) for k, v in BINS.items()},  # lists, as a YAML reader hands them back
        architecture={k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()},
        training=trained.training,
        device="cpu",
    ).load_weights(trained.n_pix_, arrays["network"], arrays["embedding_loss"])
    rebuilt.domain_reference_ = trained.domain_reference_
    rebuilt.domain_threshold_ = trained.domain_threshold_
    flux, ivar, _ = toy_spectra(20, seed=9, snr=80)
    a = trained.predict_prepared(flux, ivar)
    b = rebuilt.predict_prepared(flux, ivar)
    np.testing.assert_array_equal(a["pdf"]["logg"], b["pdf"]["logg"])
    np.testing.assert_array_equal(a["domain_distance"], b["domain_distance"])
    assert rebuilt.get_config() == trained.get_config()
    narrow = RemapModel(
        labels=trained.label_names, bins=BINS, architecture=dict(TINY, embedding_dim=8)
    )
    with pytest.raises(ValueError, match="do not fit"):
        narrow.load_weights(trained.n_pix_, arrays["network"])
    broken = dict(arrays["network"])
    broken["stem.conv.weight"] = np.full_like(broken["stem.conv.weight"], np.inf)
    with pytest.raises(ValueError, match="non-finite"):
        RemapModel(labels=trained.label_names, bins=BINS, architecture=TINY).load_weights(
            trained.n_pix_, broken
        )


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("freeze", "fixed"),
    [
        ("backbone", ("stem.", "stages.", "embedding.")),
        ("stem", ("stem.",)),
        (["stages.1", "heads.logg"], ("stages.1.", "heads.logg.")),
        ("none", ()),
    ],
)
def test_fine_tune_freezes_what_it_says(trained, freeze, fixed):
    model = copy.deepcopy(trained)
    before = _snapshot(model.net_)
    flux, ivar, labels = toy_spectra(48, seed=10, snr=60)
    labels[:, 0] += 150.0  # a systematic offset between the two "domains"
    model.fine_tune_prepared(flux, ivar, labels, freeze=freeze, epochs=3, lr=1e-3)
    after = model.net_.state_dict()
    for name, value in before.items():
        same = torch.equal(value, after[name])
        if name.startswith(fixed):
            assert same, f"{name} changed although frozen"
        elif name.endswith(("weight", "bias")) and not name.startswith("encoder"):
            assert not same, f"{name} did not change although trainable"
    record = model.provenance_["fine_tune"][-1]
    assert record["n_input"] == 48
    assert model.history_[-1]["stage"] == "fine_tune"
    assert "fine_tune" in model.metrics_
    assert all(p.requires_grad for p in model.net_.parameters())  # unfrozen afterwards
    n_ref = trained.domain_reference_.shape[0]
    if freeze == "backbone":
        assert record["domain_reference"] == "extended"
        assert model.domain_threshold_ == trained.domain_threshold_
        assert model.domain_reference_.shape == (n_ref, 16)
        # the training embeddings are kept, the fine-tuning ones appended at the end
        assert np.isin(model.domain_reference_[0], trained.domain_reference_).all()
    else:
        assert record["domain_reference"] == "recomputed"


def test_fine_tune_rejects_unknown_modules_and_untrained_models(trained):
    model = copy.deepcopy(trained)
    flux, ivar, labels = toy_spectra(10, seed=11, snr=60)
    with pytest.raises(ValueError, match="match nothing"):
        model.fine_tune_prepared(flux, ivar, labels, freeze=["decoder"], epochs=1)
    with pytest.raises(ValueError, match="unknown freeze"):
        model.fine_tune_prepared(flux, ivar, labels, freeze="heads", epochs=1)
    with pytest.raises(RuntimeError, match="not trained"):
        tiny_model().fine_tune_prepared(flux, ivar, labels, epochs=1)


def test_fine_tune_runs_average_the_weights_of_separately_seeded_runs(trained, tmp_path):
    flux, ivar, labels = toy_spectra(48, seed=12, snr=60)
    labels[:, 0] += 150.0
    kw = {"epochs": 2, "lr": 1e-3, "validation_fraction": 0.0, "freeze": "stem"}
    soup = copy.deepcopy(trained)
    soup.fine_tune_prepared(flux, ivar, labels, runs=2, checkpoint_dir=tmp_path, **kw)
    # each run keeps its own snapshots
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run0", "run1"]
    assert all(any((tmp_path / d).iterdir()) for d in ("run0", "run1"))
    singles = []
    for offset in (0, 1):  # run r uses the model seed + r
        single = copy.deepcopy(trained)
        single.seed = trained.seed + offset
        single.fine_tune_prepared(flux, ivar, labels, runs=1, **kw)
        singles.append(single.net_.state_dict())
    assert not torch.equal(singles[0]["embedding.weight"], singles[1]["embedding.weight"])
    for name, value in soup.net_.state_dict().items():
        if value.is_floating_point():
            expected = (singles[0][name].double() + singles[1][name].double()) / 2
            torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)
    record = soup.provenance_["fine_tune"][-1]
    assert record["runs"] == 2
    assert [e["run"] for e in soup.history_ if e["stage"] == "fine_tune"] == [0, 0, 1, 1]
    # the summaries come from the averaged network
    pred = soup.predict_prepared(flux, ivar, return_pdf=False)
    assert np.isfinite(pred["summary"]["teff"]["median"]).all()


def test_fine_tune_loss_overrides_apply_to_that_stage_only(trained):
    flux, ivar, labels = toy_spectra(32, seed=13, snr=60)
    model = copy.deepcopy(trained)
    wide = copy.deepcopy(trained)
    kw = {"epochs": 1, "lr": 1e-3, "validation_fraction": 0.0}
    model.fine_tune_prepared(flux, ivar, labels, **kw)
    wide.fine_tune_prepared(flux, ivar, labels, loss={"sigma_bins": 3.0}, **kw)
    assert wide.provenance_["fine_tune"][-1]["loss_overrides"] == {"sigma_bins": 3.0}
    assert wide.get_config()["loss"] == trained.get_config()["loss"]  # model settings kept
    assert not torch.equal(
        model.net_.state_dict()["heads.teff.2.weight"],
        wide.net_.state_dict()["heads.teff.2.weight"],
    )
    with pytest.raises(ValueError, match="unknown loss settings"):
        model.fine_tune_prepared(flux, ivar, labels, loss={"sigma": 2.0}, **kw)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="runs must be a positive integer"):
            model.fine_tune_prepared(flux, ivar, labels, runs=bad, **kw)
    assert all(p.requires_grad for p in model.net_.parameters())


def _toy_library(n, seed, snr=None):
    import astropy.units as u

    from stellarml.libraries import SpectralLibrary
    from stellarml.spectra import log_lambda_grid

    flux, ivar, labels = toy_spectra(n, npix=200, seed=seed, snr=snr)
    wave = log_lambda_grid(5000.0, 5000.0 * np.exp(3e-4 * 199.5), 3e-4)
    table = {
        "id": [f"toy{seed}-{i}" for i in range(n)],
        "teff": labels[:, 0] * u.K,
        "logg": labels[:, 1] * u.dex,
        "fe_h": labels[:, 2] * u.dex,
    }
    meta = {"name": "toy library", "seed": seed}
    return SpectralLibrary(table, wave * u.AA, flux, ivar, resolution=5000.0, meta=meta)


def test_fit_library_predict_spectra_and_asdf_file(tmp_path):
    import astropy.units as u

    from stellarml.spectra import PreparationSettings, prepare

    train = _toy_library(300, seed=13)
    settings = PreparationSettings(wavelength=train.wavelength, resolution=5000.0)
    model = tiny_model(preparation=settings, training={"max_epochs": 3}, name="toy")
    model.fit(train)
    prov = model.provenance_["fit"]
    assert prov["noiseless"] and prov["source"] == {"name": "toy library", "seed": 13}
    assert model.n_pix_ == 200

    test = _toy_library(6, seed=14, snr=50)
    spectra = test.to_spectrum()
    direct = model.predict(test)
    batch = prepare(spectra, settings)
    from_spectra = model.predict(spectra)
    from_batch = model.predict(batch)
    for result in (from_spectra, from_batch):
        np.testing.assert_allclose(
            result["summary"]["teff"]["median"], direct["summary"]["teff"]["median"], rtol=1e-5
        )
    assert direct["flags"].shape == (6,) and np.isnan(direct["estimated_snr"]).all()
    # a spectrum far off the grid gets a fatal flag and NaN labels, in order
    off = test.to_spectrum()[0]
    shifted = type(off)(flux=off.flux, spectral_axis=off.spectral_axis + 3000 * u.AA)
    mixed = model.predict([spectra[0], shifted, spectra[1]])
    assert np.isnan(mixed["summary"]["logg"]["median"][1])
    assert mixed["flags"][1] & LabelFlag.NO_WAVELENGTH_OVERLAP
    np.testing.assert_allclose(
        mixed["summary"]["logg"]["median"][[0, 2]],
        direct["summary"]["logg"]["median"][:2],
        rtol=1e-5,
    )

    path = tmp_path / "toy.asdf"
    write_model(model, path)
    again = read_model(path)
    assert again.preparation == settings and again.name == "toy"
    assert again.source_["path"] == str(path.resolve())
    np.testing.assert_array_equal(again.predict(test)["pdf"]["fe_h"], direct["pdf"]["fe_h"])

    tuned = read_model(path).fine_tune(test, epochs=2)
    assert tuned.provenance_["fine_tune"][0]["source"]["seed"] == 14


def test_shipped_model_labels_survive_masks_below_the_flag_limit(data_dir):
    """Real MILES spectra with scattered bad pixels: below ``MAX_MASKED_FRACTION`` of the
    grid the labels stay inside their stated errors and are not flagged; above it they are
    flagged ``MANY_MASKED_PIXELS`` (``benchmarks/mask_shift.py`` measures the curve)."""
    import warnings

    from specutils import Spectrum

    import stellarml.io  # noqa: F401  (registers the MILES loader)
    from stellarml import derive_labels
    from stellarml.spectra import prepare
    from stellarml.spectra.prepare import MAX_MASKED_FRACTION

    ids = ("0272", "0266", "0001", "0003", "0004", "0010")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spectra = [
            Spectrum.read(data_dir / "miles" / f"MILES_res2.50_star_m{i}V.fits", format="MILES")
            for i in ids
        ]
    rng = np.random.default_rng(12)
    low, high = [], []
    for s in spectra:
        npix = s.flux.size
        m = np.zeros(npix, dtype=bool)
        m[rng.integers(0, 97) :: 97] = True  # 1 % of the input pixels, isolated
        low.append(Spectrum(flux=s.flux, spectral_axis=s.spectral_axis, mask=m, meta=s.meta))
        m = np.zeros(npix, dtype=bool)
        wave = s.spectral_axis.to_value(u.AA)
        start = rng.integers(
            np.searchsorted(wave, 4000.0), np.searchsorted(wave, 6500.0) - npix // 20
        )
        m[start : start + npix // 20] = True  # one chunk of 5 % of them
        high.append(Spectrum(flux=s.flux, spectral_axis=s.spectral_axis, mask=m, meta=s.meta))
    model = read_model()
    table = derive_labels(spectra + low + high, model=model, calibrate=False)
    n = len(ids)
    many = (np.asarray(table["flags"]) & int(LabelFlag.MANY_MASKED_PIXELS)) != 0
    grid_masked = (prepare(spectra + low + high, model.preparation).ivar == 0).mean(axis=1)
    np.testing.assert_array_equal(many, grid_masked > MAX_MASKED_FRACTION)
    assert not many[:n].any() and many[2 * n :].all()
    below = np.flatnonzero(~many[n : 2 * n])
    assert below.size >= 4
    for label in ("teff", "logg", "fe_h"):
        base = table[label].value[:n][below]
        err = 0.5 * (table[f"{label}_err_lo"].value[:n] + table[f"{label}_err_hi"].value[:n])
        shift = table[label].value[n : 2 * n][below] - base
        assert np.all(np.abs(shift) < err[below]), (label, shift / err[below])


def test_mask_augmentation_produces_the_configured_masks():
    from stellarml.models.remap.config import DEFAULT_TRAINING
    from stellarml.training import SpectrumAugmenter

    n, npix = 4000, 500
    flux = torch.full((n, npix), 0.9)
    ivar = torch.full((n, npix), 1e4)
    assert DEFAULT_TRAINING["augment"]["mask_fraction"] == 0.0
    plain = SpectrumAugmenter(snr=None, rv_jitter=0.0)
    assert torch.all(plain((flux, ivar), torch.Generator().manual_seed(0))[1] > 0)

    scattered = SpectrumAugmenter(snr=None, rv_jitter=0.0, mask_fraction=0.2)
    f, iv = scattered((flux, ivar), torch.Generator().manual_seed(1))
    bad = iv == 0
    assert torch.all(f[bad] == 0) and torch.all(f[~bad] == 0.9) and torch.all(iv[~bad] == 1e4)
    frac = bad.double().mean(dim=1)
    assert frac.mean().item() == pytest.approx(0.1, abs=0.005)  # uniform in [0, 0.2]
    assert frac.max().item() < 0.3 and (frac < 0.02).any()
    _, iv2 = scattered((flux, ivar), torch.Generator().manual_seed(1))
    assert torch.equal(iv2, iv)  # reproducible

    chunks = SpectrumAugmenter(snr=None, rv_jitter=0.0, mask_chunks=3, mask_chunk_pixels=20)
    _, iv = chunks((flux, ivar), torch.Generator().manual_seed(2))
    bad = (iv == 0).numpy()
    starts = (bad[:, 1:] & ~bad[:, :-1]).sum(axis=1) + bad[:, 0]
    assert starts.max() <= 3 and (starts == 0).mean() == pytest.approx(0.25, abs=0.03)
    assert bad.sum(axis=1).max() <= 60
    # 0-3 runs (mean 1.5) of 1-20 pixels (mean 10.5), a little less for overlaps and the end
    assert 13.0 < bad.sum(axis=1).mean() < 15.75
    with pytest.raises(ValueError, match="mask_fraction"):
        SpectrumAugmenter(mask_fraction=1.0)
    with pytest.raises(ValueError, match="mask_chunk_pixels"):
        SpectrumAugmenter(mask_chunk_pixels=0)
    # the REMAP training configuration takes them
    model = RemapModel(
        {"teff": (3000.0, 8000.0, 100.0)},
        training={"augment": {"mask_fraction": 0.05, "mask_chunks": 2}},
    )
    assert model.get_config()["training"]["augment"]["mask_chunks"] == 2
