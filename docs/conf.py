# Sphinx configuration for stellarml (sphinx-astropy based).
import datetime
import os
from importlib.metadata import version as _version
from pathlib import Path

from sphinx_astropy.conf.v2 import *  # noqa: F403

project = "stellarml"
author = "The stellarml developers"
copyright = f"{datetime.datetime.now(datetime.UTC).year}, {author}"
release = _version("stellarml")
version = ".".join(release.split(".")[:2])

extensions += ["nbsphinx"]  # noqa: F405
exclude_patterns += ["_build", "**.ipynb_checkpoints"]  # noqa: F405

# Tutorials are jupytext "percent" scripts, executed at build time.
nbsphinx_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nbsphinx_execute = "always"
nbsphinx_timeout = 1200
nbsphinx_allow_errors = False

os.environ.setdefault(
    "STELLARML_DATA_DIR", str((Path(__file__).resolve().parents[2] / "shared" / "data"))
)

html_theme_options = {"github_url": "https://github.com/stellarml/stellarml"}
html_title = f"stellarml v{release}"
intersphinx_mapping.update(  # noqa: F405
    {
        "specutils": ("https://specutils.readthedocs.io/en/stable/", None),
        "asdf": ("https://asdf.readthedocs.io/en/stable/", None),
        "torch": ("https://pytorch.org/docs/stable/", None),
    }
)
# No network on build machines: intersphinx must not fail the build.
nitpicky = False
suppress_warnings = ["intersphinx.external"]
