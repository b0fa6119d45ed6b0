"""Reading and writing trained stellarml models as ASDF files.

A model file is an ASDF file whose tree has a ``model`` entry tagged with a
stellarml tag (e.g. ``asdf://stellarml.org/stellarml/tags/remap_model-1.0.0``),
plus ``stellarml_version`` and ``date`` of writing. Network weights are numpy
arrays in ASDF binary blocks; nothing is pickled. See :doc:`/models_on_disk`.

Every problem with a file raises a `ModelFileError` (a `ValueError`) that
names the file and the problem.
"""

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

from ..._utils import stellarml_version, utc_now
from ...models.base import LabelModel
from .converters._common import InvalidModelContent

__all__ = [
    "ModelFileError",
    "ModelFileNotFoundError",
    "UnsupportedModelVersionError",
    "file_hash",
    "read_model",
    "write_model",
]

#: Prefix of every stellarml tag.
_TAG_PREFIX = "asdf://stellarml.org/stellarml/tags/"

#: Magic bytes every ASDF file starts with.
_ASDF_MAGIC = b"#ASDF "


class ModelFileError(ValueError):
    """A model file cannot be read or written: the message names the file and why.

    The base of every error `read_model` and `write_model` raise about a file
    (a `ValueError`): the file is not ASDF, is truncated or corrupted, holds no
    stellarml model, violates a schema or holds invalid values.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.io.asdf import ModelFileError, read_model
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "notes.asdf"
    ...     _ = path.write_text("hello, not a model")
    ...     try:
    ...         read_model(path)
    ...     except ModelFileError as err:
    ...         print(type(err).__name__, isinstance(err, ValueError))
    ...         print(str(err).replace(str(path), "<path>"))
    ModelFileError True
    <path> is not an ASDF file (it starts with b'hello,', not b'#ASDF ')
    """


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """The model file, or the shipped model of that name, does not exist.

    Both a `ModelFileError` and a `FileNotFoundError`.

    Examples
    --------
    >>> from stellarml.io.asdf import ModelFileNotFoundError, read_model
    >>> try:
    ...     read_model("remap-optical-r9999")  # not a shipped model's name
    ... except ModelFileNotFoundError as err:
    ...     print(isinstance(err, FileNotFoundError))
    ...     print(err)
    True
    no shipped model named 'remap-optical-r9999'; available: ... (pass a path to read a model file)
    >>> try:
    ...     read_model("no/such/file.asdf")
    ... except ModelFileNotFoundError as err:
    ...     print(str(err).split(": ")[0])
    model file not found
    """


class UnsupportedModelVersionError(ModelFileError):
    """The file holds a stellarml object whose tag version this stellarml cannot read.

    A later minor version of a supported tag means the file was written by a
    newer stellarml (the message says to upgrade); another major version
    needs a stellarml that supports it.

    Examples
    --------
    A copy of a shipped model whose tag claims a later minor version, as a
    newer stellarml would write it:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.data import model_path
    >>> from stellarml.io.asdf import UnsupportedModelVersionError, read_model
    >>> data = model_path("phdl-optical-r2000").read_bytes()
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "newer.asdf"
    ...     _ = path.write_bytes(data.replace(b"emulator_model-1.0.0", b"emulator_model-1.9.0"))
    ...     try:
    ...         read_model(path)
    ...     except UnsupportedModelVersionError as err:
    ...         print(str(err).replace(str(path), "<path>"))
    <path> was written by a newer stellarml (...): it holds emulator_model-1.9.0, a later ...
    """


def file_hash(path, *, chunk_size=1 << 20):
    """SHA-256 of a file's bytes.

    Parameters
    ----------
    path : str or path-like
        The file.
    chunk_size : int, optional
        Bytes read at a time.

    Returns
    -------
    hexdigest : str
        64 lower-case hexadecimal characters.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.io.asdf import file_hash
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "abc.txt"
    ...     _ = path.write_bytes(b"abc")
    ...     print(file_hash(path))
    ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad

    It is the hash `read_model` records in ``model.source_``:

    >>> from stellarml.data import model_path
    >>> from stellarml.io.asdf import read_model
    >>> path = model_path("phdl-optical-r2000")
    >>> file_hash(path) == read_model(path).source_["sha256"]
    True
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def write_model(model, path, *, compression=None):
    """Write a trained model to an ASDF file, atomically.

    The file is written to a temporary file in the same folder and moved into
    place with `os.replace`, so ``path`` is never left half-written. On success
    ``model.source_`` is set to ``{"path": <absolute path>, "sha256": <hash>}``.

    Parameters
    ----------
    model : `~stellarml.models.LabelModel`
        A model whose class has an ASDF converter (stellarml's models, or a
        method registered through its own ASDF extension).
    path : str or path-like
        Destination (conventionally ``*.asdf``); overwritten if it exists.
    compression : {None, "zlib", "bzp2", "lz4"}, optional
        Block compression of the weight arrays (default none).

    Returns
    -------
    sha256 : str
        SHA-256 of the written file.

    Raises
    ------
    TypeError
        If ``model`` is not a type the stellarml extension can write.
    ModelFileError
        If the model's tree violates its schema (the message names the schema
        and the failing entry), or the file cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from stellarml.io.asdf import file_hash, read_model, write_model
    >>> model = read_model("phdl-optical-r2000")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = Path(tmp) / "models" / "phdl.asdf"  # missing folders are created
    ...     sha256 = write_model(model, path, compression="zlib")
    ...     print(sha256 == file_hash(path) == model.source_["sha256"])
    ...     print(path.read_bytes()[:6], read_model(path).name)
    True
    b'#ASDF ' phdl-optical-r2000
    >>> try:
    ...     write_model("not a model", "never-written.asdf")
    ... except TypeError as err:
    ...     print(str(err).split(":")[0])
    cannot write a str as a stellarml model
    """
    import asdf
    from asdf.exceptions import ValidationError

    path = Path(path)
    _check_writable_type(model)
    tree = {"model": model, "stellarml_version": stellarml_version(), "date": utc_now()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            asdf.AsdfFile(tree).write_to(fh, all_array_compression=compression)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except ValidationError as exc:
        raise ModelFileError(
            f"cannot write {path}: the model does not conform to its schema: {exc.message} "
            f"(at {'/'.join(str(p) for p in exc.absolute_path) or 'top level'})"
        ) from exc
    except (OSError, ValueError) as exc:  # ValueError: a converter refused the model
        raise ModelFileError(f"cannot write {path}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    sha256 = file_hash(path)
    model.source_ = {"path": str(path.resolve()), "sha256": sha256}
    return sha256


def read_model(path_or_name):
    """Read a trained model from an ASDF file or by the name of a shipped model.

    Parameters
    ----------
    path_or_name : str or path-like
        A path to a model file, or the name of a model shipped in
        ``stellarml/data`` (e.g. ``"remap-optical-r2000"``). A `str` without a
        path separator and without the ``.asdf`` suffix is a name; anything else
        is a path.

    Returns
    -------
    model : `~stellarml.models.LabelModel`
        The model. ``model.source_`` is ``{"path": <absolute path>,
        "sha256": <SHA-256 of the file>}``.

    Raises
    ------
    ModelFileNotFoundError
        The file does not exist, or no shipped model has that name (the
        message lists the available names).
    ModelFileError
        The file is not ASDF, is truncated or corrupted (block checksums are
        verified), holds no stellarml model, or violates a stellarml schema.
    ModelFileError
        The file holds non-finite weights, domain references or thresholds,
        or calibration parameters ("holds invalid values").
    UnsupportedModelVersionError
        The model's tag version is not supported by this stellarml; a later
        minor version of a supported tag is reported as written by a newer
        stellarml (upgrade to read it).
    TypeError
        ``path_or_name`` is neither a string nor path-like.

    Examples
    --------
    >>> from stellarml.data import available_models
    >>> from stellarml.io.asdf import read_model
    >>> available_models()
    ['dtl-optical-r2000', 'phdl-optical-r2000', 'remap-optical-r2000']
    >>> model = read_model("dtl-optical-r2000")  # a name: the shipped file
    >>> type(model).__name__, model.label_names
    ('DTLModel', ('teff', 'logg', 'fe_h'))
    >>> read_model(model.source_["path"]).source_ == model.source_  # a path: the same file
    True
    """
    path = _resolve(path_or_name)
    if not path.is_file():
        raise ModelFileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(len(_ASDF_MAGIC))
    if head != _ASDF_MAGIC:
        raise ModelFileError(
            f"{path} is not an ASDF file (it starts with {head!r}, not {_ASDF_MAGIC!r})"
        )
    sha256 = file_hash(path)
    model = _load(path)
    model.source_ = {"path": str(path.resolve()), "sha256": sha256}
    return model


def _resolve(path_or_name):
    if isinstance(path_or_name, str) and _is_name(path_or_name):
        from stellarml.data import available_models, model_path

        try:
            return Path(model_path(path_or_name))
        except KeyError:
            names = ", ".join(available_models()) or "none"
            raise ModelFileNotFoundError(
                f"no shipped model named {path_or_name!r}; available: {names} "
                "(pass a path to read a model file)"
            ) from None
    if not isinstance(path_or_name, str | os.PathLike):
        raise TypeError(f"expected a path or a model name, got {type(path_or_name).__name__}")
    return Path(path_or_name).expanduser()


def _is_name(text):
    return (
        text != ""
        and os.sep not in text
        and (os.altsep is None or os.altsep not in text)
        and not text.endswith(".asdf")
    )


def _load(path):
    import asdf
    from asdf.exceptions import ValidationError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with asdf.config_context() as cfg:
                cfg.validate_on_read = True
                cfg.warn_on_failed_conversion = False
                with asdf.open(path, lazy_load=False, memmap=False, validate_checksums=True) as af:
                    tree = dict(af.tree)
        except ValidationError as exc:
            raise ModelFileError(
                f"{path} does not conform to the stellarml schema: {exc.message} "
                f"({_locate_violation(path, exc)})"
            ) from exc
        except InvalidModelContent as exc:
            raise ModelFileError(
                f"{path} holds invalid values and is refused: {exc}. The file is intact "
                "as ASDF, but the model it describes is unusable; retrain or re-export it"
            ) from exc
        except Exception as exc:
            raise ModelFileError(
                f"{path} is corrupted or truncated (or its content is inconsistent) and "
                f"cannot be read: {type(exc).__name__}: {exc}"
            ) from exc
    unsupported = _unsupported_tags(tree)
    newer = _newer_tags(unsupported)
    if newer:
        writer = tree.get("stellarml_version")
        said = f" (the file names stellarml {writer})" if isinstance(writer, str) else ""
        raise UnsupportedModelVersionError(
            f"{path} was written by a newer stellarml{said}: it holds "
            f"{', '.join(sorted(newer))}, a later minor version than this stellarml "
            f"({stellarml_version()}) reads (up to "
            f"{', '.join(_newest_supported(t) for t in sorted(newer))}). "
            "Upgrade stellarml to read it; the file is not corrupted."
        )
    if unsupported:
        # asdf's warnings about the unknown tags/extension say the same, less clearly
        raise UnsupportedModelVersionError(
            f"{path} holds {', '.join(sorted(unsupported))}, which this stellarml "
            f"({stellarml_version()}) cannot read; supported: {', '.join(_supported_tags())}. "
            "Install a stellarml version that supports it."
        )
    model = tree.get("model")
    tag = getattr(model, "_tag", None)
    if isinstance(tag, str):
        raise ModelFileError(
            f"{path} holds a model tagged {tag}, which no installed ASDF extension reads "
            "(install the package that provides this model type)"
        )
    if model is None or not isinstance(model, LabelModel):
        keys = ", ".join(sorted(k for k in tree if not k.startswith("asdf_"))) or "none"
        raise ModelFileError(
            f"{path} is an ASDF file but holds no stellarml model "
            f"(expected a tagged 'model' entry; top-level keys: {keys})"
        )
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return model


def _locate_violation(path, exc):
    """Where a schema violation is: the tagged node and the path inside the file's tree.

    asdf reports paths relative to the innermost tagged node whose schema
    failed. Re-validate the raw tree's stellarml-tagged nodes, deepest first,
    to find that node and give the full path (e.g. ``model/labels/1/ucd``).
    """
    import asdf

    relative = "/".join(str(p) for p in exc.absolute_path)
    try:
        with asdf.open(path, _force_raw_types=True, lazy_load=True) as af:
            located = _deepest_failure(af.tree, [])
    except Exception:  # the file may be broken in other ways too: keep asdf's path
        located = None
    if located is None:
        return f"at {relative or 'top level'}"
    node_path, tag, error = located
    full = "/".join([*node_path, *(str(p) for p in error.absolute_path)])
    return f"in {tag[len(_TAG_PREFIX) :]} at {full or 'top level'}"


def _deepest_failure(node, node_path):
    from asdf.exceptions import ValidationError
    from asdf.schema import validate

    if isinstance(node, dict):
        children = [(str(k), v) for k, v in node.items()]
    elif isinstance(node, list | tuple):
        children = [(str(i), v) for i, v in enumerate(node)]
    else:
        return None
    for key, child in children:
        found = _deepest_failure(child, [*node_path, key])
        if found is not None:
            return found
    tag = getattr(node, "_tag", None)
    if isinstance(tag, str) and tag.startswith(_TAG_PREFIX):
        try:
            validate(node, reading=True)
        except ValidationError as error:
            return node_path, tag, error
    return None


def _unsupported_tags(tree):
    """stellarml tags left unconverted anywhere in ``tree`` (unknown versions)."""
    found = set()

    def walk(node):
        tag = getattr(node, "_tag", None)
        if isinstance(tag, str) and tag.startswith(_TAG_PREFIX):
            found.add(tag[len(_TAG_PREFIX) :])
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(tree)
    return found


def _split_tag(tag):
    """``"remap_model-1.2.0"`` -> ``("remap_model", (1, 2, 0))``, or None."""
    name, _, version = tag.rpartition("-")
    parts = version.split(".")
    if not name or len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return name, tuple(int(p) for p in parts)


def _newest_supported(tag):
    name = _split_tag(tag)[0]
    versions = [_split_tag(t) for t in _supported_tags()]
    best = max(v for n, v in (x for x in versions if x) if n == name)
    return f"{name}-{'.'.join(str(p) for p in best)}"


def _newer_tags(tags):
    """Those of ``tags`` that are a later minor/patch version of a supported major version."""
    supported = [x for x in (_split_tag(t) for t in _supported_tags()) if x]
    out = set()
    for tag in tags:
        split = _split_tag(tag)
        if split is None:
            continue
        name, version = split
        same_major = [v for n, v in supported if n == name and v[0] == version[0]]
        if same_major and version > max(same_major):
            out.add(tag)
    return out


def _supported_tags():
    from .extension import STELLARML_EXTENSIONS

    return sorted({t.tag_uri[len(_TAG_PREFIX) :] for ext in STELLARML_EXTENSIONS for t in ext.tags})


def _check_writable_type(model):
    import asdf

    if not isinstance(model, LabelModel):
        raise TypeError(
            f"cannot write a {type(model).__name__} as a stellarml model: it is not a "
            "LabelModel (see stellarml.models.LabelModel)"
        )
    if not asdf.AsdfFile().extension_manager.handles_type(type(model)):
        raise TypeError(
            f"cannot write a {type(model).__name__}: no ASDF converter is registered for it "
            "(a method's converter belongs in an ASDF extension)"
        )
