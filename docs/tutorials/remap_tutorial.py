# %% [markdown]
# # Tutorial: deep-REMAP from a synthetic library to a VO table
#
# This tutorial is executed every time the documentation is built. It uses the
# reference data (`STELLARML_DATA_DIR`, default `../shared/data`): the Doppler
# polynomial emulator of synthetic spectra and the MILES *training* stars.
#
# 1. derive labels with the shipped default model and look at a label PDF;
# 2. train a (small) REMAP model on a synthetic library;
# 3. fine-tune it on observed MILES spectra (transfer learning);
# 4. save it to ASDF, read it back, and publish the labels as a VOTable.

# %%
import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
import torch

from stellarml import derive_labels, read_model, write_model
from stellarml.data import example_spectra
from stellarml.spectra import prepare

torch.set_num_threads(2)
spectra, truth = example_spectra()
model = read_model()  # the shipped "remap-optical-r2000"
table = derive_labels(spectra, model=model)
table["teff", "teff_err_lo", "teff_err_hi", "logg", "fe_h", "flags"]

# %% [markdown]
# Each label comes from a binned probability distribution (regression as
# classification). The table holds its median, mode and 16th/84th percentiles;
# the full PDFs are available from the model:

# %%
batch = prepare(spectra, model.preparation)
result = model.predict_prepared(batch.flux, batch.ivar, device="cpu")
fig, axes = plt.subplots(1, 3, figsize=(11, 3))
for ax, name in zip(axes, model.label_names, strict=True):
    for i in (0, 3, 6):
        ax.step(model.bin_centers(name), result["pdf"][name][i], where="mid", label=f"star {i}")
        ax.axvline(truth[name][i].value, ls=":", color=ax.lines[-1].get_color())
    ax.set_xlabel(f"{name} [{model.label_specs[model.label_names.index(name)].unit}]")
axes[0].set_ylabel("probability per bin")
axes[0].legend()
fig.tight_layout()

# %% [markdown]
# ## Train a small model on a synthetic library
#
# The library is generated from the polynomial emulator, degraded once to the
# model's resolving power. Here it is small and the network tiny so that the
# tutorial runs in a minute; the default model's configuration is in
# `scripts/remap-optical-r2000.toml`.

# %%
import os
from pathlib import Path

from stellarml.libraries import ObservedLibrary, PolynomialEmulatorLibrary
from stellarml.models import RemapModel
from stellarml.spectra import PreparationSettings, log_lambda_grid

settings = PreparationSettings(
    wavelength=log_lambda_grid(4800.0, 5600.0, 3e-4) * u.AA, medium="vacuum", resolution=1500.0
)
data = Path(os.environ.get("STELLARML_DATA_DIR", "../shared/data"))
emulator = PolynomialEmulatorLibrary.from_file(data / "doppler" / "coolstars_cubic_emulator.npz")
synthetic = emulator.degrade(resolution=1500.0, wavelength_range=(4750.0, 5650.0) * u.AA).sample(
    3000, design="training", seed=1
)
small = RemapModel(
    preparation=settings,
    architecture={"stage_channels": (16, 16, 32, 32), "stage_blocks": (1, 1, 1, 1)},
    training={"max_epochs": 6, "progress": False, "fine_tune_epochs": 5},
    name="tutorial",
    seed=1,
    device="cpu",
).fit(synthetic)
small.metrics_["fit"]["labels"]["teff"]

# %% [markdown]
# ## Fine-tune on observed spectra
#
# Only the MILES stars listed in `miles_train_labels.csv` are ever used. We
# fine-tune on part of them and look at the others before and after, with the
# settings the default model uses for its few hundred stars: every star trains
# (no early-stopping split), soft targets two bins wide, and the weights of
# two seeded runs averaged (see the "Fine-tuning" section of the deep-REMAP page).

# %%
miles = ObservedLibrary.from_miles()
inside = (miles.label_array(["teff"])[:, 0] > 3600) & (miles.label_array(["teff"])[:, 0] < 7900)
miles = miles[inside]
train, test = miles.split((0.8, 0.2), seed=0)
before = derive_labels(test.to_spectrum(), model=small)
small.fine_tune(train, freeze="stem", validation_fraction=0.0, loss={"sigma_bins": 2.0}, runs=2)
after = derive_labels(test.to_spectrum(), model=small)
ref = test.label_array(["teff"])[:, 0]
for label, tab in (("before", before), ("after", after)):
    resid = np.asarray(tab["teff"]) - ref
    print(
        f"{label} fine-tuning: median Teff offset {np.median(resid):+.0f} K, "
        f"robust scatter {1.4826 * np.median(np.abs(resid - np.median(resid))):.0f} K"
    )

# %% [markdown]
# ## Save, read back, publish

# %%
import tempfile

tmp = Path(tempfile.mkdtemp())
write_model(small, tmp / "tutorial.asdf")
again = read_model(tmp / "tutorial.asdf")
labels = derive_labels(spectra, model=again)
labels.write(tmp / "labels.xml", format="votable")
print((tmp / "labels.xml").read_text()[:1200])
