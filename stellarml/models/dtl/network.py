"""DTL networks: the dense autoencoder, its penalties, and the 1-D CNN on latents.

Re-derived from the description of Mas-Buitrago et al. (2024, A&A 687, A205)
in METHODS.md §2; nothing is ported from the released code.

`DenseAutoencoder` is symmetric: ``npix -> n -> 3n/4 -> n/2 -> n/4 -> n/8 ->
latent -> n/8 -> n/4 -> n/2 -> 3n/4 -> n -> npix``, ReLU in the hidden layers,
a ReLU bottleneck and a sigmoid output as in the paper (or, as options, a
linear bottleneck and a linear output, for standardised inputs). `contractive_penalty` computes the
contractive term in one of three forms (see its documentation).
`LatentRegressor` is the paper's CNN: two width-2 convolutions over the latent
vector, then dense layers to the labels.
"""

import itertools

import torch
from torch import nn

__all__ = [
    "BOTTLENECKS",
    "CONTRACTIVE_FORMS",
    "OUTPUTS",
    "DenseAutoencoder",
    "LatentRegressor",
    "contractive_penalty",
    "hidden_widths",
]

#: The forms of the contractive penalty `contractive_penalty` knows.
CONTRACTIVE_FORMS = ("exact", "relu", "autograd", "sigmoid_released")

#: Bottleneck activations `DenseAutoencoder` knows.
BOTTLENECKS = ("relu", "linear")

#: Output activations `DenseAutoencoder` knows.
OUTPUTS = ("sigmoid", "linear")

#: Hidden-layer widths of the encoder as fractions of the first width ``n``.
_FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.125)


def hidden_widths(width):
    """Widths of the encoder's hidden layers for first width ``width`` (tuple of int)."""
    width = int(width)
    if width < 16:
        raise ValueError(f"the first autoencoder width must be >= 16, got {width}")
    return tuple(max(1, round(width * f)) for f in _FRACTIONS)


class DenseAutoencoder(nn.Module):
    """Symmetric dense autoencoder (by default a ReLU bottleneck and a sigmoid output).

    Parameters
    ----------
    n_pix : int
        Pixels of the (scaled) input spectrum.
    width : int
        Width ``n`` of the first encoder layer (the others are 3n/4, n/2, n/4, n/8).
    latent_dim : int
        Bottleneck size.
    bottleneck : {"relu", "linear"}
        Bottleneck activation: the paper's ReLU, or none (no unit can die).
    output : {"sigmoid", "linear"}
        Output activation: the paper's sigmoid (inputs in [0, 1]), or none
        (standardised inputs).

    Raises
    ------
    ValueError
        For an unknown ``bottleneck`` or ``output``, or ``width < 16``.

    Notes
    -----
    ``encoder`` holds the six linear layers (``encoder.0`` ... ``encoder.5``,
    the last one the bottleneck), ``decoder`` the six of the way back
    (``decoder.5`` the output layer). `forward` returns the reconstruction,
    the latent vector, the bottleneck's pre-activation, the bottleneck's input
    and the activations the L1 activity penalty applies to (every hidden layer
    except the first encoder layer and the bottleneck, as in the paper).

    Examples
    --------
    >>> import torch
    >>> from stellarml.models.dtl import DenseAutoencoder
    >>> _ = torch.manual_seed(0)
    >>> net = DenseAutoencoder(n_pix=200, width=64, latent_dim=4)
    >>> [layer.out_features for layer in net.encoder]
    [64, 48, 32, 16, 8, 4]
    >>> x = torch.rand(5, 200)  # scaled spectra in [0, 1]
    >>> x_hat, z, pre, bottleneck_input, activity = net(x)
    >>> tuple(x_hat.shape), tuple(z.shape), len(activity)
    ((5, 200), (5, 4), 9)
    >>> bool(((x_hat > 0) & (x_hat < 1)).all())  # sigmoid output
    True
    """

    def __init__(self, n_pix, width, latent_dim=32, bottleneck="relu", output="sigmoid"):
        super().__init__()
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {bottleneck!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.bottleneck = bottleneck
        self.output = output
        widths = hidden_widths(width)
        enc = [int(n_pix), *widths, int(latent_dim)]
        dec = enc[::-1]
        self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(enc))
        self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dec))
        self.config = {
            "n_pix": int(n_pix),
            "width": int(width),
            "latent_dim": int(latent_dim),
            "bottleneck": bottleneck,
            "output": output,
        }

    def encode(self, x, *, return_parts=False):
        """Latent vector of ``(b, npix)`` scaled spectra (and, optionally, the parts)."""
        activity = []
        h = x
        for k, layer in enumerate(self.encoder[:-1]):
            h = torch.relu(layer(h))
            if k > 0:
                activity.append(h)
        bottleneck_input = h
        pre = self.encoder[-1](h)
        z = torch.relu(pre) if self.bottleneck == "relu" else pre
        if return_parts:
            return z, pre, bottleneck_input, activity
        return z

    def decode(self, z, *, return_activity=False):
        """Reconstruction of latent vectors ``(b, latent_dim)`` (in (0, 1) for a sigmoid output)."""
        activity = []
        h = z
        for layer in self.decoder[:-1]:
            h = torch.relu(layer(h))
            activity.append(h)
        out = self.decoder[-1](h)
        if self.output == "sigmoid":
            out = torch.sigmoid(out)
        return (out, activity) if return_activity else out

    def forward(self, x):
        z, pre, bottleneck_input, activity = self.encode(x, return_parts=True)
        x_hat, dec_activity = self.decode(z, return_activity=True)
        return x_hat, z, pre, bottleneck_input, activity + dec_activity


def contractive_penalty(model, x, z, pre, form="relu"):
    """The contractive penalty ``||J||_F^2`` per spectrum, averaged over the batch.

    Parameters
    ----------
    model : `DenseAutoencoder`
        The autoencoder whose bottleneck is penalised.
    x : `torch.Tensor`
        ``(b, npix)`` scaled input (must require gradients for ``"autograd"``).
    z, pre : `torch.Tensor`
        ``(b, latent)`` bottleneck output and pre-activation from ``x``.
    form : {"exact", "relu", "autograd", "sigmoid_released"}
        ``"exact"``: the exact squared Frobenius norm of the Jacobian of the
        bottleneck with respect to its input, ``sum_j 1[pre_j > 0] ||W_j||^2``
        for a ReLU bottleneck, ``sum_j ||W_j||^2`` for a linear one (``W``
        the bottleneck weights). ``"relu"``: the ReLU closed form whatever
        the bottleneck (the same as ``"exact"`` for a ReLU bottleneck).
        ``"autograd"``: the squared Frobenius norm of the Jacobian of the
        latent vector with respect to the input spectrum itself
        (``sum_ij (dz_j / dx_i)^2``, the definition of Rifai et al. 2011),
        by one backward pass per latent dimension, differentiable.
        ``"sigmoid_released"``: the released code's formula,
        ``sum_j [z_j (1 - z_j)]^2 sum_i W_ij^2`` — the closed form of a
        *sigmoid* bottleneck, wrong for the ReLU bottleneck used; only for
        reproducing that code.

    Returns
    -------
    penalty : `torch.Tensor`
        Scalar.

    Raises
    ------
    ValueError
        For an unknown ``form``, or ``"autograd"`` with an ``x`` that does not
        require gradients.

    Examples
    --------
    >>> import torch
    >>> from stellarml.models.dtl import DenseAutoencoder, contractive_penalty
    >>> _ = torch.manual_seed(0)
    >>> net = DenseAutoencoder(n_pix=200, width=64, latent_dim=4)
    >>> x = torch.rand(5, 200).requires_grad_(True)
    >>> _, z, pre, _, _ = net(x)
    >>> relu = contractive_penalty(net, x, z, pre, form="relu")
    >>> weight = net.encoder[-1].weight  # sum over active units of ||W_j||^2
    >>> torch.allclose(relu, ((pre > 0) * (weight**2).sum(dim=1)).sum(dim=1).mean())
    True
    >>> contractive_penalty(net, x, z, pre, form="autograd").shape  # d z / d x: differentiable
    torch.Size([])
    >>> try:
    ...     contractive_penalty(net, x.detach(), z, pre, form="autograd")
    ... except ValueError as err:
    ...     print(err)
    the 'autograd' contractive penalty needs an input that requires grad
    """
    if form not in CONTRACTIVE_FORMS:
        raise ValueError(f"contractive form must be one of {CONTRACTIVE_FORMS}, got {form!r}")
    weight = model.encoder[-1].weight  # (latent, in)
    row_norms = (weight**2).sum(dim=1)  # ||W_j||^2
    if form == "exact" and getattr(model, "bottleneck", "relu") == "linear":
        return row_norms.sum()  # the same for every spectrum
    if form in ("exact", "relu"):
        return ((pre > 0).to(row_norms.dtype) * row_norms).sum(dim=1).mean()
    if form == "sigmoid_released":
        return (((z * (1 - z)) ** 2) * row_norms).sum(dim=1).mean()
    if not x.requires_grad:
        raise ValueError("the 'autograd' contractive penalty needs an input that requires grad")
    total = x.new_zeros(())
    for j in range(z.shape[1]):
        (grad,) = torch.autograd.grad(z[:, j].sum(), x, create_graph=True)
        total = total + (grad**2).sum()
    return total / x.shape[0]


class LatentRegressor(nn.Module):
    """The 1-D CNN on a latent vector: two width-2 convolutions, dense layers, the labels.

    Parameters
    ----------
    latent_dim : int
        Length of the latent vector (the convolutions run along it).
    n_labels : int
        Outputs (standardised labels).
    filters : tuple of int
        Channels of the two convolutions (the paper's ``nf1``, ``nf2``).
    dense : tuple of int
        Widths of the dense layers after the flattening (the paper's 256, 128, ``n_u``).

    Examples
    --------
    >>> import torch
    >>> from stellarml.models.dtl import LatentRegressor
    >>> net = LatentRegressor(latent_dim=8, n_labels=3, filters=(4, 2), dense=(16, 8))
    >>> net(torch.zeros(5, 8)).shape  # standardised Teff, log g, [Fe/H] per latent vector
    torch.Size([5, 3])
    """

    def __init__(self, latent_dim, n_labels, filters=(16, 8), dense=(128, 64, 32)):
        super().__init__()
        f1, f2 = (int(f) for f in filters)
        # kernel 2, 'same' length: pad one zero on the right (as Keras does)
        self.conv = nn.Sequential(
            nn.ConstantPad1d((0, 1), 0.0),
            nn.Conv1d(1, f1, 2),
            nn.ReLU(),
            nn.ConstantPad1d((0, 1), 0.0),
            nn.Conv1d(f1, f2, 2),
            nn.ReLU(),
        )
        layers, width = [], f2 * int(latent_dim)
        for d in dense:
            layers += [nn.Linear(width, int(d)), nn.ReLU()]
            width = int(d)
        layers.append(nn.Linear(width, int(n_labels)))
        self.head = nn.Sequential(*layers)
        self.config = {
            "latent_dim": int(latent_dim),
            "n_labels": int(n_labels),
            "filters": (f1, f2),
            "dense": tuple(int(d) for d in dense),
        }

    def forward(self, z):
        h = self.conv(z[:, None, :])
        return self.head(h.flatten(1))
