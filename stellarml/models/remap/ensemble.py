"""Deep ensembles of deep-REMAP models: several independently trained networks, one answer.

A `RemapEnsemble` holds trained `~stellarml.models.RemapModel` members that
share labels, bins, preparation and grid but were trained from different
seeds (weight initialisation *and* their own draw of the synthetic library).
Prediction averages the members' label PDFs, an equal-weight mixture, and
summarises the mixture exactly as a single model's PDF (Lakshminarayanan,
Pritzel & Blundell 2017, "Simple and scalable predictive uncertainty
estimation using deep ensembles", NeurIPS, arXiv:1612.01474). The deep-REMAP
paper does not say whether it ensembles (NF in METHODS.md); this is
stellarml's choice, measured in ``benchmarks/RESULTS.md``. It costs one forward
pass per member.
"""

import numpy as np

from ..._utils import plain_tree
from .inference import RemapPredictor
from .model import RemapModel

__all__ = ["RemapEnsemble"]

#: Provenance entries of the first member that the ensemble repeats at its top
#: level (what `stellarml.derive_labels` copies into table metadata).
_SHARED_PROVENANCE = ("stellarml_version", "torch_version", "numpy_version", "fit", "fine_tune")


class RemapEnsemble(RemapPredictor):
    """An equal-weight deep ensemble of trained `~stellarml.models.RemapModel` members.

    Parameters
    ----------
    members : sequence of `~stellarml.models.RemapModel`
        Trained models with the same labels, bins, preparation settings,
        number of pixels and PDF variant (at least one). They should differ in
        their seeds; nothing else about them is averaged but their PDFs.
    name : str, optional
        Name written to output tables; default the first member's name.
    provenance : dict, optional
        Ensemble-level provenance (e.g. the build configuration); the members
        keep their own.

    Attributes
    ----------
    members : list of `~stellarml.models.RemapModel`
    provenance_ : dict
        ``ensemble`` (number of members and their seeds) plus the first
        member's training records (what ``table_meta`` reports).
    metrics_ : dict
        ``{"members": [...]}``, each member's validation metrics.
    domain_threshold_ : float
        1.0: an ensemble's domain distance is the largest member distance in
        units of that member's own threshold.
    calibration : `~stellarml.calibration.LabelCalibration` or None
        The correction of the ensemble's (combined) posteriors; the members
        carry none.

    Raises
    ------
    ValueError
        If ``members`` is empty or the members differ in labels, bins,
        pixels, preparation or PDF variant (the message names the first
        difference).
    TypeError
        If a member is not a `~stellarml.models.RemapModel`.
    RuntimeError
        If a member is not trained.

    Notes
    -----
    ``predict_prepared(...)["embedding"]`` is the first member's embedding,
    and ``"domain_distance"`` is ``max_k(d_k / threshold_k)`` over members
    (a spectrum is outside the training domain when any member says so).

    Examples
    --------
    The shipped default model is an ensemble of three networks; on three of
    the shipped example spectra (made at Teff 5770, 6300 and 4800 K):

    >>> import numpy as np
    >>> from stellarml import read_model
    >>> from stellarml.data import example_spectra
    >>> from stellarml.models import RemapEnsemble
    >>> from stellarml.spectra import prepare
    >>> model = read_model("remap-optical-r2000")
    >>> model
    <RemapEnsemble 'remap-optical-r2000' labels=['teff', 'logg', 'fe_h'] (3 members)>
    >>> spectra, truth = example_spectra()
    >>> batch = prepare(spectra[:3], model.preparation)
    >>> posterior = model.predict_posterior(batch, device="cpu")
    >>> np.round(posterior.summaries()["teff"]["median"], -1)  # [K], uncalibrated
    array([5800., 6270., 4650.])
    >>> RemapEnsemble(model.members[:2], name="two-of-three")
    <RemapEnsemble 'two-of-three' labels=['teff', 'logg', 'fe_h'] (2 members)>
    """

    def __init__(self, members, *, name=None, provenance=None):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for k, m in enumerate(members):
            if not isinstance(m, RemapModel):
                raise TypeError(f"member {k} is a {type(m).__name__}, not a RemapModel")
            m._check_fitted()
        first = members[0]
        for k, m in enumerate(members[1:], start=1):
            _check_compatible(first, m, k)
        self.members = members
        self.name = str(name if name is not None else first.name)
        self.provenance_ = plain_tree(dict(provenance or {}))
        self._refresh_provenance()

    # ------------------------------------------------------------------ shared attributes
    @property
    def label_names(self):
        """Label names in output order (tuple of str)."""
        return self.members[0].label_names

    @property
    def label_specs(self):
        """`~stellarml.labels.LabelSpec` of each label (tuple)."""
        return self.members[0].label_specs

    @property
    def preparation(self):
        """The members' `~stellarml.spectra.PreparationSettings`."""
        return self.members[0].preparation

    @property
    def n_pix_(self):
        """Number of pixels of the model grid."""
        return self.members[0].n_pix_

    @property
    def device(self):
        """Device of the first member (setting it moves every member)."""
        return self.members[0].device

    @device.setter
    def device(self, value):
        for m in self.members:
            m.device = value

    @property
    def metrics_(self):
        """Validation metrics of each member: ``{"members": [member.metrics_, ...]}``."""
        return {"members": [m.metrics_ for m in self.members]}

    @property
    def domain_threshold_(self):
        has = [getattr(m, "domain_threshold_", None) is not None for m in self.members]
        return 1.0 if any(has) else None

    def label_bins(self):
        """Bins of every label: dict of name to `~stellarml.posterior.LabelBins`."""
        return self.members[0].label_bins()

    def bin_centers(self, label):
        """Bin centres of ``label`` (label units)."""
        return self.members[0].bin_centers(label)

    def bin_edges(self, label):
        """Bin edges of ``label`` (label units)."""
        return self.members[0].bin_edges(label)

    def get_config(self):
        """The first member's resolved configuration (all members share labels and bins)."""
        return self.members[0].get_config()

    def _check_fitted(self):
        for m in self.members:
            m._check_fitted()

    def _arrays(self, flux, ivar, *, noiseless=False):
        return self.members[0]._arrays(flux, ivar, noiseless=noiseless)

    def _prediction_members(self):
        """The members; each domain distance in units of that member's threshold."""
        scales = []
        for m in self.members:
            thr = getattr(m, "domain_threshold_", None)
            scales.append(thr if thr is not None and thr > 0 else 1.0)
        return self.members, scales

    def _refresh_provenance(self):
        first = self.members[0].provenance_ or {}
        for key in _SHARED_PROVENANCE:
            if key in first:
                self.provenance_[key] = plain_tree(first[key])
        self.provenance_["ensemble"] = {
            "n_members": len(self.members),
            "member_seeds": [int(m.seed) for m in self.members],
            "combination": "equal-weight mixture of the members' label PDFs",
        }

    # ------------------------------------------------------------------ training
    def fine_tune(self, observed, **kwargs):
        """Fine-tune every member on the same observed library.

        Parameters
        ----------
        observed : `~stellarml.libraries.SpectralLibrary`
            As in `RemapModel.fine_tune <stellarml.models.RemapModel.fine_tune>`.
        **kwargs
            Passed to each member's ``fine_tune`` (``freeze``, ``epochs``,
            ``lr``, ``runs``, ``loss``, ``validation_fraction``...); each
            member uses its own seed.

        Returns
        -------
        self : `RemapEnsemble`
        """
        for m in self.members:
            m.fine_tune(observed, **kwargs)
        self._refresh_provenance()
        return self

    def fine_tune_prepared(self, flux, ivar, labels, **kwargs):
        """Fine-tune every member on arrays already on the model grid.

        Parameters
        ----------
        flux, ivar, labels, **kwargs
            As in `RemapModel.fine_tune_prepared
            <stellarml.models.RemapModel.fine_tune_prepared>`; a
            ``checkpoint_dir`` gets one ``member<k>`` folder per member.

        Returns
        -------
        self : `RemapEnsemble`
        """
        checkpoint_dir = kwargs.pop("checkpoint_dir", None)
        for k, m in enumerate(self.members):
            where = None if checkpoint_dir is None else f"{checkpoint_dir}/member{k}"
            m.fine_tune_prepared(flux, ivar, labels, checkpoint_dir=where, **kwargs)
        self._refresh_provenance()
        return self

    def __len__(self):
        return len(self.members)

    def __repr__(self):
        return (
            f"<RemapEnsemble {self.name!r} labels={list(self.label_names)} "
            f"({len(self.members)} members)>"
        )


def _check_compatible(first, other, k):
    """Raise ValueError naming the first difference between two members."""
    if other.label_names != first.label_names:
        raise ValueError(
            f"member {k} predicts {list(other.label_names)}, member 0 {list(first.label_names)}"
        )
    a = {n: b.as_tuple() for n, b in first.label_bins().items()}
    b = {n: b.as_tuple() for n, b in other.label_bins().items()}
    if a != b:
        raise ValueError(f"member {k} has bins {b}, member 0 {a}")
    if other.n_pix_ != first.n_pix_:
        raise ValueError(f"member {k} has {other.n_pix_} pixels, member 0 {first.n_pix_}")
    pa, pb = first.preparation, other.preparation
    if (pa is None) != (pb is None) or (pa is not None and not _same_preparation(pa, pb)):
        raise ValueError(f"member {k} prepares spectra differently from member 0")
    la, lb = first.get_config()["loss"], other.get_config()["loss"]
    for key in ("variant", "clip"):
        if la[key] != lb[key]:
            raise ValueError(f"member {k} has loss {key} {lb[key]!r}, member 0 {la[key]!r}")


def _same_preparation(a, b):
    da, db = a.to_dict(), b.to_dict()
    wa, wb = da.pop("wavelength"), db.pop("wavelength")
    return da == db and wa.shape == wb.shape and bool(np.all(wa == wb))
