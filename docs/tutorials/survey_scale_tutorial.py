# %% [markdown]
# # Tutorial: a survey-scale run with Dask
#
# This tutorial is executed every time the documentation is built. It runs the
# shipped default model over files with `stellarml.distributed.derive_catalog` on a
# `dask.distributed` cluster: here a `LocalCluster` of two single-threaded workers on
# this machine, the same code that runs on a cluster of many nodes given its
# scheduler address. The inputs are the 25 real LAMOST DR10 spectra of the reference
# data (`STELLARML_DATA_DIR`, default `../shared/data`), plus one file that is not a
# spectrum, to show what happens to it.
#
# 1. derive a catalogue as one table;
# 2. write a partitioned, resumable catalogue;
# 3. read it back and draw its Kiel diagram.

# %%
import os
import tempfile
from pathlib import Path

import numpy as np
from distributed import Client, LocalCluster

from stellarml.distributed import derive_catalog

data = Path(os.environ.get("STELLARML_DATA_DIR", "../shared/data"))
work = Path(tempfile.mkdtemp())
broken = work / "not_a_spectrum.fits"
broken.write_bytes(b"SIMPLE  = this is not a FITS file")
files = [*sorted((data / "lamost").glob("*.fits")), broken]

cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
client = Client(cluster)

# %% [markdown]
# ## One table
#
# The model is sent to each worker once; files are read on the workers in
# partitions. Rows come back in input order with `input` and `file` columns, and a
# file that cannot be read is a row flagged `BAD_INPUT` with the reader's message,
# not a crash and not a missing row.

# %%
table = derive_catalog(files, client=client, partition_size=8, progress=False)
print(len(table), "rows for", len(files), "inputs")
table["input", "teff", "logg", "fe_h", "flag_names"][-4:]

# %%
bad = table[-1]
print(bad["file"], "|", bad["flag_names"], "|", bad["message"])

# %% [markdown]
# ## A partitioned catalogue on disk
#
# With `output`, every partition is written as soon as it is done (ECSV, FITS,
# Parquet or VOTable) beside a manifest. Running the same command again skips the
# partitions already written, so an interrupted run resumes where it stopped.

# %%
out = work / "catalogue"
summary = derive_catalog(
    files, client=client, output=out, format="ecsv", partition_size=8, progress=False
)
print(summary)
again = derive_catalog(
    files, client=client, output=out, format="ecsv", partition_size=8, progress=False
)
print("second run: written", again["written"], "skipped", again["skipped"])
sorted(p.name for p in out.iterdir())

# %% [markdown]
# ## Read it back
#
# Each partition is an ordinary astropy table with units, so the catalogue is a
# `vstack` away. The partitions' metadata differ only in the time each was written
# (``date``), which `vstack` may keep from any one of them.

# %%
from astropy.table import vstack

from stellarml.visualization import plot_kiel

parts = sorted(out.glob("*.ecsv"))
catalogue = vstack(
    [type(table).read(p, format="ascii.ecsv") for p in parts], metadata_conflicts="silent"
)
assert np.array_equal(np.asarray(catalogue["input"]), np.arange(len(files)))
ax, counts = plot_kiel(catalogue)
ax.set_title(f"{counts['clean']} LAMOST stars without flags")
client.close()
cluster.close()
