"""Quality flags of derived labels.

Each output row carries ``flags``, a bitmask of `LabelFlag` values. A row with
any of the `FATAL` bits set has masked label values: the spectrum could not be
analysed, and the flag says why. The other bits are warnings: the labels are
there but should be used with care.
"""

import enum

__all__ = ["FATAL", "LabelFlag", "describe_flags"]


class LabelFlag(enum.IntFlag):
    """Bit meanings of the ``flags`` column.

    An `enum.IntFlag`: members combine with ``|`` and test with ``&``, and a
    row's ``flags`` value is the OR of its members' values. The bits in
    `FATAL` leave the row without labels; the others are warnings.

    Attributes
    ----------
    NO_WAVELENGTH_OVERLAP : int
        1 (fatal): the spectrum does not overlap the model's wavelength grid (enough).
    TOO_FEW_GOOD_PIXELS : int
        2 (fatal): fewer good pixels on the model grid than the model needs.
    BAD_INPUT : int
        4 (fatal): invalid input (units, shape, non-finite values, bad
        uncertainties, an unreadable file).
    OUTSIDE_TRAINING_DOMAIN : int
        8: the spectrum lies outside the domain the model was trained on.
    PDF_AT_GRID_EDGE : int
        16: a label PDF has significant probability in its first or last bin
        (for an emulator fit: a label at an edge of the emulator's box).
    LOW_SNR : int
        32: median S/N per pixel below the model's minimum.
    NO_UNCERTAINTY : int
        64: no uncertainty given; unit weights assumed, ``snr`` masked.
    RESOLUTION_ASSUMED : int
        128: the input resolution was unknown and assumed equal to the model's.
    MEDIUM_ASSUMED : int
        256: the wavelength medium (air or vacuum) was unknown and assumed vacuum.
    RV_UNRELIABLE : int
        512: the estimated radial velocity failed or is ambiguous.
    MANY_MASKED_PIXELS : int
        1024: more of the model grid is masked or uncovered than the labels
        are known to survive.
    BIMODAL_PDF : int
        2048: a label PDF has two separated modes (`stellarml.posterior.bimodal_rows`).
    NOT_A_STAR : int
        4096 (fatal): the input is clearly not a star, or was prepared very wrongly.
    FIT_NOT_CONVERGED : int
        8192: the label fit (`stellarml.fitting`) did not meet its convergence test.

    Examples
    --------
    >>> from stellarml.flags import FATAL, LabelFlag
    >>> value = LabelFlag.LOW_SNR | LabelFlag.NO_UNCERTAINTY
    >>> int(value)
    96
    >>> bool(value & LabelFlag.LOW_SNR), bool(value & FATAL)
    (True, False)
    >>> LabelFlag(2048).name
    'BIMODAL_PDF'
    """

    #: The spectrum does not overlap the model's wavelength grid (enough).
    NO_WAVELENGTH_OVERLAP = 1
    #: Fewer good pixels on the model grid than the model needs.
    TOO_FEW_GOOD_PIXELS = 2
    #: The input is invalid (units, shape, non-finite values, bad uncertainties).
    BAD_INPUT = 4
    #: The spectrum lies outside the domain the model was trained on
    #: (its embedding is far from every training spectrum).
    OUTSIDE_TRAINING_DOMAIN = 8
    #: A label PDF has significant probability in the first or last bin (for
    #: an emulator fit: a fitted label at an edge of the emulator's box).
    PDF_AT_GRID_EDGE = 16
    #: Median signal-to-noise ratio per pixel below the model's minimum.
    LOW_SNR = 32
    #: No uncertainty was given; unit weights were assumed and ``snr`` is masked.
    NO_UNCERTAINTY = 64
    #: The input resolution was unknown and assumed equal to the model's.
    RESOLUTION_ASSUMED = 128
    #: The wavelength medium (air or vacuum) of the input was unknown and assumed to
    #: be vacuum (no ``meta["medium"]`` and no ``medium=`` argument).
    MEDIUM_ASSUMED = 256
    #: The radial velocity was estimated (no RV was known) and the estimate failed
    #: or is ambiguous; the spectrum was analysed at the reported ``rv``.
    RV_UNRELIABLE = 512
    #: More of the model grid is masked or not covered by the input than the labels are
    #: known to survive (`stellarml.spectra.prepare.MAX_MASKED_FRACTION`): the labels can
    #: be shifted by more than their stated errors.
    MANY_MASKED_PIXELS = 1024
    #: A label PDF has two separated modes (see
    #: `stellarml.posterior.bimodal_rows`): the median and interval describe
    #: neither mode well.
    BIMODAL_PDF = 2048
    #: The input is clearly not a star, or was prepared very wrongly (see
    #: ``docs/output_tables.rst``): the labels are masked.
    NOT_A_STAR = 4096
    #: The label fit (`stellarml.fitting`) did not meet its convergence test; the
    #: labels are its last iterate.
    FIT_NOT_CONVERGED = 8192


#: Bits that leave no labels.
FATAL = (
    LabelFlag.NO_WAVELENGTH_OVERLAP
    | LabelFlag.TOO_FEW_GOOD_PIXELS
    | LabelFlag.BAD_INPUT
    | LabelFlag.NOT_A_STAR
)


def describe_flags(value):
    """Names of the bits set in ``value``.

    Parameters
    ----------
    value : int or `LabelFlag`
        A ``flags`` value (a bitmask of `LabelFlag` bits).

    Returns
    -------
    names : list of str
        Names of the `LabelFlag` members set in ``value``, lowest bit first
        (empty for 0). This is what the ``flag_names`` column of a label
        table holds, comma-separated.

    Examples
    --------
    >>> from stellarml.flags import describe_flags
    >>> describe_flags(9)
    ['NO_WAVELENGTH_OVERLAP', 'OUTSIDE_TRAINING_DOMAIN']
    """
    value = int(value)
    return [f.name for f in LabelFlag if value & f]
