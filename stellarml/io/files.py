"""Spectrum files to a prepared batch: one block of rows per file, unreadable files flagged.

The command line and `stellarml.distributed.derive_catalog` read files through
here, so a file gives the same rows whichever path reads it. Files that hold
parts of one star (the camera files of a GALAH star, whose spectra carry one
``meta["star_id"]``) given one after the other are joined into one
`~stellarml.spectra.SpectrumParts`: one row for the star.
"""

import itertools
import time

import numpy as np

from ..flags import LabelFlag

__all__ = ["input_names", "prepare_inputs", "read_spectrum_file"]


def read_spectrum_file(path, *, format=None, retries=1, wait=0.1):
    """Read one spectrum file with ``specutils.Spectrum.read``, retrying on failure.

    Parameters
    ----------
    path : str or path-like
        A file any specutils loader (or a stellarml one) identifies.
    format : str, optional
        The specutils loader to use (``"LAMOST-LRS"``, ``"SDSS-III/IV spec"``...).
        Default: identify it, which opens the file once per registered
        loader and takes most of the reading time (about 40 of 50 ms for a
        LAMOST file).
    retries : int, optional
        How many more times to try after a failure (default 1: network file
        systems fail transiently); a missing file is not retried.
    wait : float, optional
        Pause between tries [s].

    Returns
    -------
    `~specutils.Spectrum` or `~specutils.SpectrumList`
        What ``Spectrum.read`` gives for the file.

    Raises
    ------
    FileNotFoundError
        At once, if the file does not exist.
    Exception
        Otherwise the reader's last error.

    Examples
    --------
    >>> from stellarml.io.files import read_spectrum_file
    >>> path = data_dir / "lamost" / "3703110.fits"  # any spectrum file
    >>> spec = read_spectrum_file(path, format="LAMOST-LRS")
    >>> type(spec).__name__, spec.flux.size, spec.meta["survey"]
    ('Spectrum', 3909, 'LAMOST')
    >>> try:
    ...     read_spectrum_file("no-such-file.fits")
    ... except FileNotFoundError as err:
    ...     print(type(err).__name__)
    FileNotFoundError
    """
    from pathlib import Path

    from specutils import Spectrum

    for attempt in range(int(retries) + 1):
        try:
            return Spectrum.read(str(path), format=format) if format else Spectrum.read(str(path))
        except FileNotFoundError:
            raise
        except Exception:
            if attempt == retries or not Path(path).exists():
                raise
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def prepare_inputs(
    inputs,
    preparation,
    *,
    resolution=None,
    format=None,
    retries=1,
    rv=None,
    medium=None,
    estimate_rv=True,
):
    """Read (where needed) and prepare spectra, keeping every input's rows in order.

    Parameters
    ----------
    inputs : sequence
        File paths (str or path-like) and/or specutils spectra (anything
        `~stellarml.spectra.prepare` takes), in any mix.
    preparation : `~stellarml.spectra.PreparationSettings`
        The model's preparation.
    resolution : float, optional
        Resolving power of every input (else each spectrum's own metadata).
    format : str, optional
        specutils loader of every file (default: identified per file).
    retries : int, optional
        Extra read attempts per file (`read_spectrum_file`).
    rv : float or `~astropy.units.Quantity`, optional
        Radial velocity of every input [km/s] (else each spectrum's own).
    medium : {"air", "vacuum"}, optional
        Wavelength medium of every input (else each spectrum's ``meta``).
    estimate_rv : bool, optional
        Measure the radial velocity of spectra without one (default True, as
        `stellarml.derive_labels` does: `~stellarml.spectra.prepare_with_rv`).

    Returns
    -------
    batch : `~stellarml.spectra.PreparedBatch`
        The rows of input 0, then of input 1, ...; a file that cannot be read
        is one row flagged ``BAD_INPUT`` whose message names the file and the
        error. Consecutive files whose spectra are parts of one star (1-D
        spectra with one ``meta["star_id"]``, e.g. GALAH cameras of one
        ``sobject_id``) give one row, combined on the model grid
        (`~stellarml.spectra.SpectrumParts`); parts of a star given apart
        (other inputs between them) stay separate rows.
    rows : numpy.ndarray of int
        Number of rows of each input (a 2-D spectrum or a multi-spectrum file
        gives several); 0 for a file joined to the star of the file before
        it, whose row it shares.

    Raises
    ------
    ValueError
        If ``rv`` is not one number (reading errors never raise: they flag
        the file's row).

    Examples
    --------
    A MILES star, two camera files of one GALAH star and a file that is not
    there, on a small air-wavelength grid that all of them cover:

    >>> from pathlib import Path
    >>> import numpy as np
    >>> from stellarml.flags import describe_flags
    >>> from stellarml.io.files import input_names, prepare_inputs
    >>> from stellarml.spectra import PreparationSettings
    >>> grid = np.geomspace(4750.0, 4880.0, 400)  # [Angstrom], uniform in ln(lambda)
    >>> settings = PreparationSettings(grid, medium="air", resolution=1800.0)
    >>> inputs = [
    ...     data_dir / "miles" / "MILES_res2.50_star_m0001V.fits",
    ...     data_dir / "galah" / "1312160026010031.fits",
    ...     data_dir / "galah" / "1312160026010032.fits",
    ...     "missing.fits",
    ... ]
    >>> batch, rows = prepare_inputs(inputs, settings, estimate_rv=False)
    >>> batch.flux.shape, rows
    ((3, 400), array([1, 1, 0, 1]))
    >>> [describe_flags(f) for f in batch.flags]
    [['NO_UNCERTAINTY'], [], ['BAD_INPUT']]
    >>> print(batch.messages[2])
    could not read missing.fits: FileNotFoundError: [Errno 2] No such file or directory: ...
    >>> names = input_names(inputs, rows)  # the paths, one per row
    >>> [[Path(part).name for part in name.split(" + ")] for name in names]
    [['MILES_res2.50_star_m0001V.fits'], ['1312160026010031.fits', '1312160026010032.fits'],
     ['missing.fits']]
    """
    from ..spectra import PreparedBatch
    from ..spectra.prepare import _empty_batch

    npix = preparation.wavelength.size
    if not inputs:
        return _empty_batch(0, npix), np.zeros(0, dtype=int)
    # read every file first, then prepare all readable inputs in one call: spectra on one
    # grid go through preparation together, not one call per file
    spectra, failed = [], {}
    for i, item in enumerate(inputs):
        if not _is_path(item):
            spectra.append(item)
            continue
        try:
            spectra.append(read_spectrum_file(item, format=format, retries=retries))
        except Exception as exc:  # any reader failure becomes a flagged row
            row = _empty_batch(1, npix)
            row.flags |= int(LabelFlag.BAD_INPUT)
            row.messages = [f"could not read {item}: {_reader_error(exc)}"]
            failed[i] = row
    readable = [i for i in range(len(inputs)) if i not in failed]
    spectra, joined = _join_star_parts(spectra, [_is_path(inputs[i]) for i in readable])
    joined = {readable[j] for j in joined}
    options = {"resolution": resolution, "rv": rv, "medium": medium, "estimate_rv": estimate_rv}
    prepared = iter(_prepare_each(spectra, preparation, options) if spectra else [])
    batches, rows = [], []
    for i in range(len(inputs)):
        if i in failed:
            batches.append(failed[i])
        elif i in joined:
            rows.append(0)
            continue
        else:
            batches.append(next(prepared))
        rows.append(len(batches[-1]))
    return PreparedBatch.concatenate(batches), np.asarray(rows, dtype=int)


def _star_id(spec):
    from specutils import Spectrum

    if not isinstance(spec, Spectrum) or spec.flux.ndim != 1 or not isinstance(spec.meta, dict):
        return None
    return spec.meta.get("star_id")


def _join_star_parts(spectra, from_file):
    """Join runs of consecutive file spectra with one ``meta["star_id"]`` into SpectrumParts.

    Returns the new list and the positions (in ``spectra``) of the spectra
    joined to the one before them.
    """
    from ..spectra import SpectrumParts

    out, joined, run = [], [], []

    def flush():
        if len(run) > 1:
            out.append(SpectrumParts([spectra[j] for j in run]))
            joined.extend(run[1:])
        elif run:
            out.append(spectra[run[0]])
        run.clear()

    for j, spec in enumerate(spectra):
        key = _star_id(spec) if from_file[j] else None
        if run and key is not None and key == _star_id(spectra[run[0]]):
            run.append(j)
            continue
        flush()
        if key is not None:
            run.append(j)
        else:
            out.append(spec)
    flush()
    return out, joined


def input_names(inputs, rows):
    """The name of each output row's input: its path ('' for a spectrum), joined files with ' + '.

    Parameters
    ----------
    inputs : sequence
        As given to `prepare_inputs`.
    rows : array-like of int
        The ``rows`` `prepare_inputs` returned.

    Returns
    -------
    numpy.ndarray of str
        One name per output row.

    Examples
    --------
    A file of one row, a file joined to it (``rows`` 0: a second camera of the
    same star) and an in-memory 2-D spectrum of two rows:

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from specutils import Spectrum
    >>> from stellarml.io.files import input_names
    >>> wave = np.arange(5000.0, 5050.0) * u.AA
    >>> spectra = Spectrum(flux=np.ones((2, wave.size)) * u.Jy, spectral_axis=wave)
    >>> input_names(["star1.fits", "star1_red.fits", spectra], [1, 0, 2]).tolist()
    ['star1.fits + star1_red.fits', '', '']
    """
    names = []
    for item, n in zip(inputs, rows, strict=True):
        name = str(item) if _is_path(item) else ""
        if n == 0 and names:
            names[-1] = f"{names[-1]} + {name}"
        else:
            names.extend([name] * int(n))
    return np.asarray(names, dtype=str)


def _prepare_each(spectra, preparation, options):
    """One batch per spectrum object, from a single `prepare` call over all of them."""
    from ..spectra import prepare, prepare_with_rv
    from ..spectra.prepare import input_rows

    counts = [input_rows(s) for s in spectra]
    options = dict(options)
    if options.get("rv") is not None and np.ndim(options["rv"]) != 0:
        raise ValueError("prepare_inputs: rv must be one number for all inputs")
    how = prepare_with_rv if options.pop("estimate_rv") else prepare
    batch = how(list(spectra), preparation, **options)
    edges = np.concatenate([[0], np.cumsum(counts)])
    return [batch[int(a) : int(b)] for a, b in itertools.pairwise(edges)]


def _reader_error(exc):
    """One line for a reader's error (astropy's 'could not identify' lists every format)."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if "could not be identified" in first:
        first = first.split(", please provide")[0] + " (name it with format=/--input-format)"
    return f"{type(exc).__name__}: {first}"


def _is_path(item):
    return isinstance(item, str) or hasattr(item, "__fspath__")
