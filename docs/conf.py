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
# conf.py itself would otherwise be taken for a jupytext notebook (custom ".py" format)
exclude_patterns += ["_build", "**.ipynb_checkpoints", "conf.py"]  # noqa: F405

# nbsphinx converts markdown cells with pandoc; the docs extra installs it as the
# pypandoc_binary wheel, whose executable is put on PATH here.
try:
    import pypandoc

    os.environ["PATH"] = (
        os.path.dirname(pypandoc.get_pandoc_path()) + os.pathsep + os.environ.get("PATH", "")
    )
except (ImportError, OSError):  # a system pandoc on PATH works too
    pass

# Tutorials are jupytext "percent" scripts, executed at build time.
nbsphinx_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nbsphinx_execute = "always"
nbsphinx_timeout = 1200
nbsphinx_allow_errors = False

os.environ.setdefault(
    "STELLARML_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
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
# Machines without network (CI here) set STELLARML_DOCS_OFFLINE=1: no inventories
# are fetched, so -W builds do not fail on unreachable intersphinx servers.
if os.environ.get("STELLARML_DOCS_OFFLINE"):
    intersphinx_mapping = {}
nitpicky = False
