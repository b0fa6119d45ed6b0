# %% [markdown]
# # Tutorial: label-free adaptation with autoencoder deep transfer learning (DTL)
#
# Synthetic spectra are never quite like observed ones: missing opacities, line
# lists, 1-D atmospheres, the instrument and the reduction all leave a *synthetic
# gap*, and a network trained on synthetic spectra alone carries it into the labels
# it derives for real stars. Mas-Buitrago et al. (2024, A&A 687, A205) close the gap
# **without any labelled observed star**:
#
# 1. train dense autoencoders on synthetic spectra, so that each spectrum has a
#    low-dimensional *latent* vector;
# 2. fine-tune each autoencoder on the survey's *unlabelled* spectra (its first
#    encoder layers frozen), so that observed spectra are encoded by an encoder
#    that has seen them;
# 3. train small 1-D CNN regressors from synthetic latents to labels;
# 4. label an observed spectrum with the regressors applied to its latent vector
#    from the fine-tuned encoder; the spread of an ensemble of (autoencoder,
#    regressor) pairs gives the uncertainties.
#
# This tutorial goes through all four steps with `stellarml.models.DTLModel` (see
# [the DTL page](../dtl.rst) for the details), and then checks the domain gap before
# and after adaptation. It is executed every time the
# documentation is built, on one CPU thread in about a minute, so everything
# is small: 2000 synthetic spectra, one autoencoder, two regressors, 200 MILES stars
# to adapt on and a few dozen held-out MILES stars to look at.
#
# **A model this small is not accurate**, and this tutorial measures nothing: the
# held-out comparison at the end is a sanity check on a few dozen stars. For measured
# accuracy of a larger DTL configuration (k-fold on all the MILES training stars) see
# `benchmarks/RESULTS.md`, section 14, and the warning on [the DTL page](../dtl.rst).

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from stellarml.models import DTLModel
from stellarml.recipes import load_config
from stellarml.recipes.remap import build_preparation, build_pretrain_library

torch.set_num_threads(1)

# %% [markdown]
# ## 1. A synthetic library on the default model's grid
#
# The DTL recipe (`stellarml train` with `[model] method = "dtl"`) reads a
# configuration whose `[preparation]` and `[pretrain]` tables are those of the REMAP
# recipe: a DTL model and the default REMAP model `remap-optical-r2000` put spectra on
# the same grid in the same way (3800–7000 Å in vacuum, steps of 3×10⁻⁴ in ln λ,
# R = 1500, continuum-normalised). The tables below are those of
# `scripts/dtl-optical-r2000.toml`, with far fewer spectra. `{data_dir}` is the
# reference-data folder (`STELLARML_DATA_DIR`); the synthetic spectra come from its
# Doppler polynomial emulator, degraded to the model's resolving power, with a few
# km/s of RV jitter and a mild continuum distortion as augmentation.

# %%
cfg = load_config(
    {
        "model": {"method": "dtl", "name": "dtl-tutorial", "labels": ["teff", "logg", "fe_h"]},
        "preparation": {
            "wavelength_min": 3800.0,
            "wavelength_max": 7000.0,
            "dloglam": 3.0e-4,
            "medium": "vacuum",
            "resolution": 1500.0,
            "continuum_width": 100.0,
        },
        "pretrain": {
            "emulator": "{data_dir}/doppler/coolstars_cubic_emulator.npz",
            "n_spectra": 2000,
            "design": "training",
            "seed": 1,
            "wavelength_margin": 60.0,
            "rv_jitter": 3.0,
            "continuum_distortion": 0.03,
        },
    }
)
preparation = build_preparation(cfg)
library = build_pretrain_library(cfg, preparation)
synthetic = library.prepare(preparation)
synthetic_labels = library.label_array(["teff", "logg", "fe_h"])
print(library)
print("model grid:", synthetic.flux.shape[1], "pixels")

# %% [markdown]
# ## 2. Train the autoencoders and regressors on synthetic spectra
#
# `fit_prepared` takes spectra already on the model grid and their labels. Every
# setting has a default in `stellarml.models.dtl.DEFAULT_ARCHITECTURE`,
# `DEFAULT_TRAINING` and `DEFAULT_ENSEMBLE`. The defaults used here:
#
# * `widths=(256,)`: the first encoder layer of the (single) autoencoder; the
#   following layers are ¾, ½, ¼ and ⅛ of it, then the 32-dimensional bottleneck;
# * `input_scaling="centre"`: the mean spectrum of the synthetic training set is
#   subtracted and the result divided by one scale for all pixels (the output layer
#   is linear), so that the autoencoder learns how spectra differ across the library
#   rather than the mean spectrum;
# * `bottleneck="linear"` with the `"exact"` contractive penalty (the squared
#   Frobenius norm of the bottleneck's Jacobian, exact for a linear bottleneck): the
#   paper's ReLU bottleneck tends to leave latent dimensions dead.
#
# Changed for this tutorial, to run in a minute:
#
# * one autoencoder × two CNN regressors, both kept: each spectrum gets two label
#   draws. The paper uses 26 autoencoders × 5 CNNs and keeps the best 80;
# * 30 fine-tuning epochs instead of 60.
#
# 30 % of the synthetic spectra are held out (`test_fraction`); the regressors are
# ranked by their error on them, and the same spectra set the thresholds of the
# out-of-domain score.

# %%
model = DTLModel(
    labels=("teff", "logg", "fe_h"),
    preparation=preparation,
    training={"ae_epochs": 60, "cnn_epochs": 60, "fine_tune_epochs": 30},
    ensemble={"n_autoencoders": 1, "n_regressors": 2, "keep": 2},
    name="dtl-tutorial",
    seed=1,
    device="cpu",
)
model.fit_prepared(
    synthetic.flux,
    synthetic_labels,
    ivar=synthetic.ivar,
    flags=synthetic.flags,
    source=library.meta,
)
fit = model.metrics_["fit"]
print("reconstruction MSE of held-out synthetic spectra:", fit["reconstruction_mse"])
for j, mse in enumerate(fit["regressor_mse"][0]):
    rms = ", ".join(f"{name} {np.sqrt(value):.3g}" for name, value in mse.items())
    print(f"regressor {j}: RMS error on held-out synthetic spectra: {rms}")
print(model)

# %% [markdown]
# These are errors on *synthetic* spectra like the training ones: the floor the
# method can reach, not what it does on real stars.
#
# ## 3. Adapt to unlabelled observed spectra
#
# The observed spectra are MILES stars. Only the stars of the MILES *training* list
# (`miles_train_labels.csv`) are ever read; we draw 200 of them to adapt on and 40
# others, never seen by the model, to look at afterwards. `from_miles` reads the
# reference labels along with the spectra (we need them for the final comparison),
# but `adapt` reads only the flux: a `DTLModel` has no way to use labels of observed
# spectra. It returns a **new** model; `model` itself stays the synthetic-only
# baseline.

# %%
from stellarml.libraries import ObservedLibrary

miles = ObservedLibrary.from_miles()
n = len(miles)
adapt_set, held_out, _ = miles.split((200 / n, 40 / n, (n - 240) / n), seed=3)
print(f"{n} MILES training stars: adapt on {len(adapt_set)}, hold out {len(held_out)}")

adapted = model.adapt(adapt_set)
print(adapted)
adapt_info = adapted.provenance_["adapt"]
print("labels used:", adapt_info["labels_used"])
print("spectra:", adapt_info["n_spectra"], "| frozen layers:", adapt_info["frozen_layers"])
mse = adapted.metrics_["adapt"]
mse_before, mse_after = mse["reconstruction_mse_before"][0], mse["reconstruction_mse_after"][0]
print(
    "mean reconstruction MSE of the adaptation spectra (centred, scaled flux): "
    f"{mse_before:.2f} before, {mse_after:.2f} after"
)

# %% [markdown]
# Fine-tuning made the autoencoder reconstruct the observed spectra better. Does that
# carry over to stars it did not adapt on? `encode_prepared` gives the latents and
# the reconstruction error of any spectra on the model grid, through either encoder:

# %%
held = held_out.prepare(preparation)
for which in ("pretrained", "adapted"):
    _, errors = adapted.encode_prepared(held.flux, held.ivar, encoder=which)
    print(
        f"{which:>10s} autoencoder: median reconstruction MSE of held-out stars "
        f"{np.median(errors[0]):.3f}"
    )

# %% [markdown]
# ## 4. The domain gap, before and after
#
# `domain_gap` compares, per autoencoder, the synthetic latents with the observed
# ones as the regressors see them: *before*, both through the pre-trained encoder;
# *after*, the observed spectra through the fine-tuned encoder and the synthetic ones
# through the pre-trained encoder (the paper's choice,
# `training["synthetic_latents"] = "pretrained"`). Each comparison is a kernel
# two-sample test: the squared maximum mean discrepancy MMD² (0 when both sets come
# from the same distribution) with a permutation p-value, and the mean distance of
# each observed latent to its nearest synthetic latent (in units of the synthetic
# latents' RMS).

# %%
from stellarml.models.dtl import domain_gap, project_latents
from stellarml.visualization import plot_latent_projection

observed = adapt_set.prepare(preparation)
syn_flux = synthetic.flux[:1000]
gap = domain_gap(adapted, syn_flux, observed.flux, observed.ivar, n_permutations=200)
for k, entry in enumerate(gap):
    for when in ("before", "after"):
        g = entry[when]
        print(
            f"autoencoder {k}, {when:>6s} adaptation: MMD² {g['mmd2']:.3f} "
            f"(p = {g['p_value']:.3f}), mean nearest-synthetic distance "
            f"{g['mean_min_distance']:.2f}"
        )

# %% [markdown]
# Adaptation helps the regressors only if it moves the observed latents towards the
# synthetic ones: a smaller MMD² and a smaller nearest-synthetic distance *after*
# than *before*. Nothing in the fine-tuning forces that: the retrained bottleneck is
# free to move its coordinates, and the regressors, trained on the pre-trained
# encoder's synthetic latents, never see it. For this tiny model:

# %%
before, after = gap[0]["before"], gap[0]["after"]
mmd_ratio = after["mmd2"] / before["mmd2"]
distance_ratio = after["mean_min_distance"] / before["mean_min_distance"]
print(
    f"after / before: MMD² x{mmd_ratio:.2f}, mean nearest-synthetic distance x{distance_ratio:.2f}"
)
print("the gap shrank" if max(mmd_ratio, distance_ratio) < 1 else "the gap did not shrink")

# %% [markdown]
# For the scaled-down configuration of `benchmarks/RESULTS.md` §14 the gap grew. A
# p-value at its floor, 1/(1 + 200), only says that the two sets are
# distinguishable; a few hundred real spectra never have exactly the distribution of
# a synthetic library. Where the observed latents land is easier to judge by eye:
# `project_latents` fits a 2-D principal-component projection on the synthetic
# latents and projects the observed ones with the same map, and
# `stellarml.visualization.plot_latent_projection` draws each set in its own colour.

# %%
syn_latents, _ = adapted.encode_prepared(syn_flux, encoder="pretrained")
obs_before, _ = adapted.encode_prepared(observed.flux, observed.ivar, encoder="pretrained")
obs_after, _ = adapted.encode_prepared(observed.flux, observed.ivar, encoder="adapted")
p_syn, p_before, p_after = project_latents(syn_latents[0], obs_before[0], obs_after[0])

fig, (ax_before, ax_after) = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True)
plot_latent_projection(
    {"synthetic": p_syn, "MILES, pre-trained encoder": p_before},
    ax=ax_before,
    title="before adaptation",
)
plot_latent_projection(
    {"synthetic": p_syn, "MILES, fine-tuned encoder": p_after},
    ax=ax_after,
    title="after adaptation",
)
fig.tight_layout()
plt.show()

# %% [markdown]
# Look at this figure for your own model before trusting its labels: the method
# relies on the observed latents falling among the synthetic ones after adaptation.
# The same plot with UMAP instead of PCA is `project_latents(..., method="umap")`
# (needs `umap-learn`).
#
# ## 5. Labels for stars the model never saw
#
# `derive_labels` works for a DTL model as for any other. Each spectrum's label
# draws, one per kept (autoencoder, regressor) pair, become the median and the
# 16th/84th percentiles of the table (`teff`, `teff_err_lo`, `teff_err_hi`,
# `teff_p16`, ...). The spread is the ensemble's only: no observational noise is
# propagated, and with two draws it says little. `domain_distance` is the
# out-of-domain score: the larger of a spectrum's latent distance to the nearest
# synthetic latent and its reconstruction error, each divided by its 99th percentile
# over the spectra the model was adapted on; above 1 the row is flagged
# `OUTSIDE_TRAINING_DOMAIN`. MILES spectra are in the rest frame, so `rv=0` skips the
# RV measurement and prepares them exactly as `adapt` did. The MILES files carry no
# uncertainties: every row is flagged `NO_UNCERTAINTY` and `reconstruction_error`
# (the residual in units of the noise) is empty.

# %%
from stellarml import derive_labels
from stellarml.flags import LabelFlag

spectra = held_out.to_spectrum()
table = derive_labels(spectra, model=adapted, rv=0)
baseline = derive_labels(spectra, model=model, rv=0)  # the synthetic-only model
columns = ["teff", "teff_err_lo", "teff_err_hi", "logg", "fe_h", "domain_distance", "flag_names"]
for name in columns[:-1]:  # display formats only
    table[name].info.format = ".0f" if name.startswith("teff") else ".2f"
table[columns][:8]

# %%
for flag in (LabelFlag.OUTSIDE_TRAINING_DOMAIN, LabelFlag.BIMODAL_PDF):
    counts = [int(((np.asarray(t["flags"]) & flag) > 0).sum()) for t in (baseline, table)]
    print(f"{flag.name}: synthetic-only {counts[0]}, adapted {counts[1]} of {len(table)} stars")

# %% [markdown]
# Two things to know when reading these flags:
#
# * **What "outside the domain" means changes with adaptation.** Before, the
#   thresholds come from held-out *synthetic* spectra, and real spectra, all a little
#   unlike synthetic ones, tend to exceed them. After, they come from the
#   *adaptation* spectra, so the flag means "unlike the spectra the model was adapted
#   on", and a percent or two of spectra like those are flagged by construction. It does not
#   say that a star lies outside the labels of the synthetic library: we adapted on a
#   random draw of MILES stars, hot ones included, so a B star can resemble some of the
#   adaptation spectra and go unflagged, although the synthetic library stops at
#   8000 K. Adapt on the kind of stars the library covers, and check the derived
#   labels against the library's box.
# * **The bimodality test needs more than a handful of draws.** `BIMODAL_PDF` looks
#   for two separated peaks in a histogram of each row's draws; with fewer than
#   `stellarml.posterior.samples.MIN_DRAWS_FOR_MODES` (20) draws a histogram cannot
#   tell two modes from two draws, so rows of an ensemble this small are never
#   flagged. With the paper's 80 draws the test means what it says.
#
# The reference labels of the held-out stars (Cenarro et al. 2007) are used only
# now, to compare. Some of them lie outside the label box of the synthetic library,
# where the model cannot be right; we compare the others.
# `stellarml.visualization.plot_label_comparison` draws derived against reference
# labels, with the median offset (bias) and the robust scatter (1.4826 × MAD) of each
# label in the panel titles.

# %%
from stellarml.visualization import plot_label_comparison

reference = held_out.labels
ref = held_out.label_array(["teff", "logg", "fe_h"])
lo, hi = synthetic_labels.min(axis=0), synthetic_labels.max(axis=0)
in_box = ((ref >= lo) & (ref <= hi)).all(axis=1)
print(
    "synthetic label box:",
    ", ".join(
        f"{k} {a:.0f} to {b:.0f}" if k == "teff" else f"{k} {a:.2f} to {b:.2f}"
        for k, a, b in zip(["teff", "logg", "fe_h"], lo, hi, strict=True)
    ),
)
print(f"{in_box.sum()} of {len(ref)} held-out stars inside it")
fig, axes, stats = plot_label_comparison(table[in_box], reference[in_box])
fig.suptitle(f"adapted model, {in_box.sum()} held-out MILES stars")
plt.show()
_, _, baseline_stats = plot_label_comparison(baseline[in_box], reference[in_box], errors=False)
plt.close()
for name in ("teff", "logg", "fe_h"):
    b, a = baseline_stats[name], stats[name]
    print(
        f"{name:5s} bias / scatter: synthetic-only {b['bias']:+.3g} / {b['sigma']:.3g}, "
        f"adapted {a['bias']:+.3g} / {a['sigma']:.3g}"
    )

# %% [markdown]
# With one autoencoder of width 256, 2000 synthetic spectra and 200 stars to adapt
# on, expect offsets and scatters of hundreds of K and several tenths of a dex, in
# either direction, and do not read the difference between the two models on a few
# dozen stars as a measurement. The configuration to start from is
# `scripts/dtl-optical-r2000.toml`; `benchmarks/dtl_miles.py` measures a
# configuration by k-fold on all the MILES training stars, each fold labelled by a
# model adapted without it, and `benchmarks/RESULTS.md` §14 gives the result. The
# paper's full setting is `stellarml.models.dtl.PAPER_ARCHITECTURE` and
# `PAPER_ENSEMBLE`.
#
# ## 6. Your survey, on the command line
#
# A DTL model adapts to any survey's spectra, files included: no labels are needed,
# so every spectrum of the survey can be used. Train once, adapt per survey, derive:
#
# ```bash
# stellarml train scripts/dtl-optical-r2000.toml -o dtl.asdf
# stellarml adapt dtl.asdf spectra/*.fits -o dtl-my-survey.asdf
# stellarml derive spectra/*.fits -m dtl-my-survey.asdf -o labels.xml
# ```
#
# `stellarml adapt` prepares the files for the model's grid (files that cannot be
# read or prepared are left out, with a warning) and writes the adapted model; in
# Python it is `write_model(model.adapt(spectra), "dtl-my-survey.asdf")`. A DTL model
# shipped with stellarml adapts the same way, by name:
# `stellarml adapt dtl-optical-r2000 spectra/*.fits -o dtl-my-survey.asdf`, or
# `read_model("dtl-optical-r2000").adapt(spectra)`; that model (two autoencoders,
# six regressors, adapted without labels on the MILES training spectra) is measured in
# `benchmarks/RESULTS.md` §14. The models this installation ships:

# %%
from stellarml.data import available_models

print("shipped models:", ", ".join(available_models()))
