"""DTLModel on real spectra: synthetic-trained autoencoders adapted to MILES spectra without labels.

A small model (short grid, narrow autoencoders, few epochs) is trained once
per module on the Doppler-emulator library and adapted on 100 MILES training
stars; 20 other MILES training stars are held out of the adaptation.
"""

import copy

import numpy as np
import pytest
import torch

from stellarml import derive_labels
from stellarml.flags import LabelFlag
from stellarml.io.asdf import read_model, write_model
from stellarml.libraries import ObservedLibrary
from stellarml.models import DTLModel, LabelModel
from stellarml.models.dtl import (
    DenseAutoencoder,
    contractive_penalty,
    domain_gap,
    kde_mode,
    mmd_test,
    project_latents,
)
from stellarml.recipes import load_config
from stellarml.recipes.remap import build_preparation, build_pretrain_library

LABELS = ("teff", "logg", "fe_h")
SMALL = {
    "architecture": {"widths": (32, 48), "l1": (1e-7,)},
    "training": {
        "ae_epochs": 25,
        "ae_batch_size": 32,
        "cnn_epochs": 20,
        "cnn_batch_size": 32,
        "fine_tune_epochs": 25,
        "fine_tune_lr": 1e-3,  # 100 steps on 100 spectra
        "reference_size": 500,
    },
    "ensemble": {"n_autoencoders": 2, "n_regressors": 2, "keep": 3},
}


@pytest.fixture(scope="module")
def setting(data_dir):
    cfg = load_config(
        {
            "model": {"method": "dtl", "name": "t"},
            "preparation": {
                "wavelength_min": 4800.0,
                "wavelength_max": 5400.0,
                "dloglam": 3.0e-4,
                "medium": "vacuum",
                "resolution": 1500.0,
            },
            "pretrain": {
                "emulator": str(data_dir / "doppler" / "coolstars_cubic_emulator.npz"),
                "n_spectra": 300,
                "design": "training",
                "seed": 5,
            },
        }
    )
    prep = build_preparation(cfg)
    library = build_pretrain_library(cfg, prep)
    synthetic = library.prepare(prep)
    miles = ObservedLibrary.from_miles(data_dir / "miles", require=LABELS)[:120]
    torch.manual_seed(0)
    model = DTLModel(LABELS, preparation=prep, seed=1, **SMALL)
    model.fit_prepared(synthetic.flux, library.label_array(list(LABELS)), ivar=synthetic.ivar)
    adapted = model.adapt(miles[:100])
    held = miles[100:].prepare(prep)
    return {
        "prep": prep,
        "synthetic": synthetic,
        "labels": library.label_array(list(LABELS)),
        "miles": miles,
        "held": held,
        "model": model,
        "adapted": adapted,
    }


def test_is_a_label_model(setting):
    model, adapted = setting["model"], setting["adapted"]
    assert isinstance(adapted, LabelModel)
    assert adapted.method == "dtl"
    assert not model.is_adapted() and adapted.is_adapted()
    assert model.members_[0]["adapted"] is None  # adapt returns a new model
    prov = adapted.provenance_["adapt"]
    assert prov["labels_used"] is False and prov["n_spectra"] == 100
    assert prov["frozen_layers"] == ["encoder.0", "encoder.1", "encoder.2", "encoder.3"]
    # frozen layers are shared with the pre-trained autoencoder, so not stored twice
    assert not any(k.startswith("encoder.0.") for k in adapted.members_[0]["adapted"])
    assert "encoder.4.weight" in adapted.members_[0]["adapted"]


def test_frozen_layers_unchanged_and_others_moved(setting):
    model, adapted = setting["model"], setting["adapted"]
    before = model._autoencoder(0, "pretrained").state_dict()
    after = adapted._autoencoder(0, "adapted").state_dict()
    for name in before:
        same = torch.equal(before[name], after[name])
        assert same == (int(name.split(".")[1]) < 4 and name.startswith("encoder")), name


def test_reconstruction_of_unseen_observed_spectra_improves(setting):
    held = setting["held"]
    _, before = setting["model"].encode_prepared(held.flux, held.ivar)
    _, after = setting["adapted"].encode_prepared(held.flux, held.ivar)
    for b, a in zip(before, after, strict=True):
        assert np.mean(a) < 0.9 * np.mean(b)
    metrics = setting["adapted"].metrics_["adapt"]
    assert all(
        a < b
        for a, b in zip(
            metrics["reconstruction_mse_after"], metrics["reconstruction_mse_before"], strict=True
        )
    )


def test_gap_statistic_before_and_after(setting):
    held, syn = setting["held"], setting["synthetic"]
    gap = domain_gap(setting["adapted"], syn.flux, held.flux, held.ivar, n_permutations=100)
    assert len(gap) == 2
    for entry in gap:
        for key in ("before", "after"):
            r = entry[key]
            assert r["n_x"] == 300 and r["n_y"] == 20
            assert 0 < r["p_value"] <= 1 and r["mean_min_distance"] > 0
    # an unadapted model has no "after"
    assert set(domain_gap(setting["model"], syn.flux, held.flux, held.ivar)[0]) == {"before"}


def test_mmd_test_detects_a_shift_and_not_its_absence():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 4))
    same = mmd_test(x, rng.standard_normal((150, 4)), n_permutations=200)
    shifted = mmd_test(x, rng.standard_normal((150, 4)) + 0.5, n_permutations=200)
    assert same["p_value"] > 0.05
    assert shifted["p_value"] < 0.01 and shifted["mmd2"] > 10 * abs(same["mmd2"])
    with pytest.raises(ValueError, match="same d"):
        mmd_test(x, x[:, :3])


def test_posterior_spread_nonzero_and_ordered(setting):
    table = derive_labels(setting["miles"][100:].to_spectrum(), model=setting["adapted"])
    assert len(table) == 20
    for name in LABELS:
        p16 = np.asarray(table[f"{name}_p16"].value)
        med = np.asarray(table[name].value)
        p84 = np.asarray(table[f"{name}_p84"].value)
        assert np.all(p16 <= med) and np.all(med <= p84)
        assert np.all(p84 - p16 > 0)
    assert table.meta["model_method"] == "dtl"
    assert "domain_distance" in table.colnames
    result = setting["adapted"].predict_prepared(setting["held"].flux, setting["held"].ivar)
    assert result["samples"].shape == (20, 3, 3)
    assert np.all(np.ptp(result["samples"], axis=1) > 0)


def test_out_of_domain_flag(setting):
    held = setting["held"]
    model = setting["adapted"]
    flux = held.flux.copy()
    flux[:5] = np.where(held.ivar[:5] > 0, 1.0 + 0.5 * np.sin(np.arange(flux.shape[1]) / 3), 0)
    result = model.predict_prepared(flux, held.ivar)
    flags = result["posterior"].flags
    assert np.all(flags[:5] & int(LabelFlag.OUTSIDE_TRAINING_DOMAIN))
    assert np.all(result["domain_distance"][:5] > 1)
    assert np.all(result["domain_distance"][:5] > result["domain_distance"][5:].max())


def test_asdf_round_trip_identical_and_lazy(setting, tmp_path):
    model = setting["adapted"]
    path = tmp_path / "dtl.asdf"
    write_model(model, path)
    back = read_model(path)
    assert isinstance(back, DTLModel) and back.is_adapted()
    assert not back.__dict__.get("_net_cache")  # networks are built on first use
    held = setting["held"]
    a = model.predict_prepared(held.flux, held.ivar)
    b = back.predict_prepared(held.flux, held.ivar)
    np.testing.assert_array_equal(a["samples"], b["samples"])
    np.testing.assert_array_equal(a["domain_distance"], b["domain_distance"])
    np.testing.assert_array_equal(back.label_range_, model.label_range_)
    np.testing.assert_array_equal(back.input_mean_, model.input_mean_)
    assert back.__dict__.get("_net_cache")
    # an unadapted model round-trips too, and adapts after reading
    write_model(setting["model"], tmp_path / "syn.asdf")
    syn = read_model(tmp_path / "syn.asdf")
    assert not syn.is_adapted()
    np.testing.assert_array_equal(
        syn.predict_prepared(held.flux, held.ivar)["samples"],
        setting["model"].predict_prepared(held.flux, held.ivar)["samples"],
    )


def test_bad_inputs(setting):
    model = setting["adapted"]
    held = setting["held"]
    with pytest.raises(ValueError, match="pixels but the model grid has"):
        model.predict_prepared(held.flux[:, :-3], held.ivar[:, :-3])
    flux = held.flux.copy()
    flux[2, 10] = np.nan
    with pytest.raises(ValueError, match="non-finite flux at 1 pixels"):
        model.predict_prepared(flux, held.ivar)
    with pytest.raises(ValueError, match="ivar must be finite"):
        model.predict_prepared(held.flux, -held.ivar)
    with pytest.raises(ValueError, match="at least 2 usable spectra"):
        model.adapt_prepared(held.flux[:1], held.ivar[:1])
    with pytest.raises(ValueError, match="unknown training settings"):
        DTLModel(training={"epochs": 3}).get_config()
    with pytest.raises(ValueError, match="contractive must be one of"):
        DTLModel(architecture={"contractive": "sigmoid"}).get_config()
    with pytest.raises(ValueError, match="keep <= n_autoencoders"):
        DTLModel(ensemble={"keep": 100}).get_config()
    with pytest.raises(RuntimeError, match="not trained yet"):
        DTLModel().predict_prepared(held.flux)


def test_unreadable_row_in_a_batch_is_flagged_not_dropped(setting):
    batch = setting["held"][:4]
    flags = np.asarray(batch.flags).copy()
    flags[1] |= int(LabelFlag.TOO_FEW_GOOD_PIXELS)
    batch = type(batch)(
        flux=batch.flux,
        ivar=batch.ivar,
        flags=flags,
        snr=batch.snr,
        rv=batch.rv,
        messages=list(batch.messages),
    )
    posterior = setting["adapted"].predict_posterior(batch)
    assert len(posterior) == 4
    assert list(posterior.valid) == [True, False, True, True]
    assert np.isnan(posterior.median("teff")[1]) and np.isfinite(posterior.median("teff")[0])


def _value(tensor):
    return float(tensor.detach())


def _brute_frobenius(fn, inp):
    """Sum over the batch of ||d fn(x_b) / d x_b||_F^2 by the full autograd Jacobian, / batch."""
    total = 0.0
    for row in inp:
        jac = torch.autograd.functional.jacobian(fn, row)
        total += float((jac**2).sum())
    return total / inp.shape[0]


def test_contractive_penalties_equal_brute_force_jacobians():
    torch.manual_seed(3)
    net = DenseAutoencoder(40, 32, latent_dim=6).double()
    x = torch.rand(5, 40, dtype=torch.float64)
    z, pre, bottleneck_input, _ = net.encode(x, return_parts=True)
    layer = net.encoder[-1]
    # ReLU closed form == Jacobian of the ReLU bottleneck w.r.t. its input
    relu = _brute_frobenius(lambda a: torch.relu(layer(a)), bottleneck_input.detach())
    assert _value(contractive_penalty(net, x, z, pre, "relu")) == pytest.approx(relu, rel=1e-10)
    # the released formula is the Jacobian of a *sigmoid* bottleneck, not of this ReLU one
    sig_z = torch.sigmoid(pre)
    sigmoid = _brute_frobenius(lambda a: torch.sigmoid(layer(a)), bottleneck_input.detach())
    released = _value(contractive_penalty(net, x, sig_z, pre, "sigmoid_released"))
    assert released == pytest.approx(sigmoid, rel=1e-10)
    assert abs(_value(contractive_penalty(net, x, z, pre, "sigmoid_released")) - relu) > 1e-3 * relu
    # autograd form == Jacobian of the latent w.r.t. the input spectrum
    xg = x.clone().requires_grad_(True)
    zg, preg, _, _ = net.encode(xg, return_parts=True)
    full = _brute_frobenius(lambda s: net.encode(s[None])[0], x)
    assert _value(contractive_penalty(net, xg, zg, preg, "autograd")) == pytest.approx(
        full, rel=1e-10
    )
    with pytest.raises(ValueError, match="requires grad"):
        contractive_penalty(net, x, z, pre, "autograd")


def test_exact_contractive_form_follows_the_bottleneck():
    torch.manual_seed(4)
    x = torch.rand(5, 40, dtype=torch.float64)
    relu_net = DenseAutoencoder(40, 32, latent_dim=6).double()
    z, pre, _, _ = relu_net.encode(x, return_parts=True)
    assert _value(contractive_penalty(relu_net, x, z, pre, "exact")) == pytest.approx(
        _value(contractive_penalty(relu_net, x, z, pre, "relu"))
    )
    net = DenseAutoencoder(40, 32, latent_dim=6, bottleneck="linear", output="linear").double()
    z, pre, bottleneck_input, _ = net.encode(x, return_parts=True)
    assert torch.equal(z, pre)  # no activation: no latent can die
    exact = _brute_frobenius(net.encoder[-1], bottleneck_input.detach())
    assert _value(contractive_penalty(net, x, z, pre, "exact")) == pytest.approx(exact, rel=1e-10)
    assert net.config["bottleneck"] == "linear" and net.config["output"] == "linear"
    with pytest.raises(ValueError, match="bottleneck must be one of"):
        DenseAutoencoder(40, 32, bottleneck="tanh")
    with pytest.raises(ValueError, match="ReLU closed form"):
        DTLModel(architecture={"contractive": "relu", "bottleneck": "linear"}).get_config()
    with pytest.raises(ValueError, match="input_scaling must be one of"):
        DTLModel(architecture={"input_scaling": "log"}).get_config()


def test_input_scaling_inverts_and_masks(setting):
    model = setting["model"]
    assert model.get_config()["architecture"]["input_scaling"] == "centre"
    held = setting["held"]
    x, mask = model._scaled(held.flux, held.ivar)
    good = held.ivar > 0
    np.testing.assert_array_equal(mask.numpy() > 0, good)
    np.testing.assert_allclose(model._unscaled(x.numpy())[good], held.flux[good], rtol=1e-5)
    assert np.all(x.numpy()[~good] == 0)  # a masked pixel reads as the synthetic mean
    # "centre": one scale for every pixel, the synthetic flux's RMS deviation
    assert np.ptp(model.input_std_) == 0
    flux = setting["synthetic"].flux
    assert model.input_std_[0] == pytest.approx(np.std(flux - flux.mean(0)), rel=0.05)


def test_alignment_term_pulls_observed_latents_to_the_synthetic_ones(setting):
    model, miles = setting["model"], setting["miles"][:100]
    aligned = copy.deepcopy(model)
    aligned.training = {**SMALL["training"], "fine_tune_align": 30.0}
    aligned = aligned.adapt(miles)
    held = setting["held"]
    plain = domain_gap(setting["adapted"], setting["synthetic"].flux, held.flux, held.ivar)
    pulled = domain_gap(aligned, setting["synthetic"].flux, held.flux, held.ivar)
    for p, q in zip(plain, pulled, strict=True):
        assert q["after"]["mmd2"] < p["after"]["mmd2"]


def test_label_using_variant(setting):
    adapted, miles = setting["adapted"], setting["miles"]
    train = miles[:100].prepare(setting["prep"])
    labels = miles[:100].label_array(list(LABELS))
    labels[::7, 2] = np.nan  # a missing [Fe/H] is left out of the loss, not invented
    tuned = adapted.fine_tune_prepared(train.flux, labels, train.ivar, flags=train.flags)
    assert tuned.provenance_["fine_tune"]["labels_used"] is True
    lo, hi = adapted.label_range_[0]  # stars outside the synthetic Teff range are left out
    n_out = int(((labels[:, 0] < lo) | (labels[:, 0] > hi)).sum())
    assert n_out > 0 and tuned.provenance_["fine_tune"]["n_outside_label_range"] >= n_out
    assert tuned.provenance_["adapt"]["labels_used"] is False  # the adaptation itself was not
    assert "fine_tune" not in (adapted.provenance_ or {})  # a new model
    before = adapted.predict_prepared(train.flux, train.ivar)["value"]
    after = tuned.predict_prepared(train.flux, train.ivar)["value"]
    inside = np.all(
        (labels >= adapted.label_range_[:, 0]) & (labels <= adapted.label_range_[:, 1])
        | np.isnan(labels),
        axis=1,
    )
    for i, name in enumerate(LABELS):
        ok = np.isfinite(labels[:, i]) & inside
        rms = [np.sqrt(np.mean((v[name][ok] - labels[ok, i]) ** 2)) for v in (before, after)]
        assert rms[1] < rms[0]
    table = derive_labels(miles[100:105].to_spectrum(), model=tuned)
    assert table.meta["labels_fine_tuned"] is True
    with pytest.raises(ValueError, match="labels must be"):
        adapted.fine_tune_prepared(train.flux, labels[:, :2], train.ivar)


def test_kde_mode_and_projection():
    rng = np.random.default_rng(1)
    draws = np.concatenate([rng.normal(0, 0.1, 30), rng.normal(3, 0.1, 10)])[None]
    assert kde_mode(draws)[0] == pytest.approx(0.0, abs=0.1)
    assert kde_mode(np.full((1, 4), 2.5))[0] == 2.5
    ref = rng.standard_normal((50, 5)) * [5, 3, 1, 0.1, 0.1]
    proj = project_latents(ref, ref[:7])
    assert proj[0].shape == (50, 2) and proj[1].shape == (7, 2)
    np.testing.assert_allclose(proj[1], proj[0][:7])
    assert proj[0][:, 0].var() > proj[0][:, 1].var()
    with pytest.raises(ValueError, match="'pca' or 'umap'"):
        project_latents(ref, method="tsne")
