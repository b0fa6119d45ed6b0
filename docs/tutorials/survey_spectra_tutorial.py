# %% [markdown]
# # Tutorial: labels for real survey spectra, published as a VOTable
#
# This tutorial is executed every time the documentation is built, on real files of
# the reference data (`STELLARML_DATA_DIR`, default `../shared/data`): 25 LAMOST DR10
# low-resolution spectra and one SDSS/BOSS spectrum.
#
# 1. read the files with `specutils` and derive labels with the shipped default model;
# 2. read the flags, and look at the posterior of one star;
# 3. compare with the LAMOST pipeline's labels (pipeline values, not truth);
# 4. publish the table as a VOTable and read it back.

# %%
import os
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table
from specutils import Spectrum

from stellarml import derive_labels, read_model
from stellarml.flags import describe_flags

torch.set_num_threads(2)
data = Path(os.environ.get("STELLARML_DATA_DIR", "../shared/data"))
files = sorted((data / "lamost").glob("*.fits"))
spectra = [Spectrum.read(f) for f in files]  # stellarml registers the LAMOST reader
spectra[0].meta["resolution"], spectra[0].meta["medium"], spectra[0].radial_velocity

# %% [markdown]
# The reader gives each spectrum its resolving power, the medium of its wavelengths
# and the pipeline's radial velocity, so nothing has to be assumed. `derive_labels`
# takes the list (one row per spectrum, in input order); `return_posterior=True` also
# returns the label distributions behind the table.

# %%
model = read_model()  # the shipped "remap-optical-r2000"
table, posterior = derive_labels(spectra, model=model, return_posterior=True)
table["teff", "teff_err_lo", "teff_err_hi", "logg", "fe_h", "rv", "rv_source", "flags"][:8]

# %% [markdown]
# ## Flags
#
# `flags` is a bitmask of `stellarml.flags.LabelFlag`; `flag_names` spells it out.
# Fatal bits (no overlap, too few good pixels, bad input) leave masked labels;
# the others are warnings to read before using a row.

# %%
for name, count in zip(
    *np.unique(
        np.concatenate([describe_flags(f) for f in table["flags"]] + [[]]), return_counts=True
    ),
    strict=True,
):
    print(f"{name}: {count} of {len(table)}")
clean = np.asarray(table["flags"]) == 0
print(f"{clean.sum()} rows without any flag")

# %% [markdown]
# ## The posterior of one star
#
# The default model's labels are binned PDFs (regression as classification). The
# table holds their median and 16th/84th percentiles; here is the whole thing.

# %%
from stellarml.visualization import plot_label_comparison, plot_posterior

row = int(np.flatnonzero(clean)[0])
fig, axes = plot_posterior(posterior, row=row)
fig.suptitle(files[row].name)

# %% [markdown]
# ## Against the LAMOST pipeline
#
# `lamost/LASP_CurveFit_inferred.csv` has the labels of a re-implementation of the
# LAMOST stellar parameter pipeline for the same files. They are pipeline values,
# with their own errors, not truth: the comparison shows agreement, not accuracy.

# %%
lasp = Table.read(data / "lamost" / "LASP_CurveFit_inferred.csv")
lasp = {str(r["ID"]): r for r in lasp}
reference = {
    "teff": np.array([lasp[f.name]["pred_Teff"] for f in files]),
    "logg": np.array([lasp[f.name]["pred_logg"] for f in files]),
    "fe_h": np.array([lasp[f.name]["pred_FeH"] for f in files]),
}
fig, axes, stats = plot_label_comparison(table[clean], {k: v[clean] for k, v in reference.items()})
print(stats)

# %% [markdown]
# ## A single SDSS/BOSS spectrum
#
# `Spectrum.read` of a BOSS `spec-*.fits` file goes through stellarml's BOSS reader,
# which takes the RV from the pipeline's redshift and the resolution from `WDISP`.

# %%
boss = Spectrum.read(data / "sdss" / "spec-3586-55181-0500.fits")
row = derive_labels(boss, model=model)
print(boss.meta["subclass"], row["teff"][0], row["logg"][0], row["fe_h"][0], row["rv"][0])
print(row["flag_names"][0])

# %% [markdown]
# ## Publish as a VOTable
#
# Every column has a unit, a UCD and a description; the model, its file hash, the
# calibration and the preparation are in the table's metadata. stellarml's reader
# gives back exactly that table; a plain astropy read keeps the units, UCDs and
# descriptions, and the metadata is in the `INFO` elements.

# %%
import tempfile

from astropy.io.votable import parse

from stellarml.catalog import read_label_votable

out = Path(tempfile.mkdtemp()) / "lamost_labels.xml"
table.write(out, format="votable")
again = read_label_votable(out)
print(again["teff"].unit, again["logg"].unit, again.meta["model_name"], again.meta["calibration"])
votable = parse(out)
field = votable.get_first_table().get_field_by_id_or_name("teff")
print(field.ucd, "|", field.description)
