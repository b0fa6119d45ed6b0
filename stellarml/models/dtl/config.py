"""DTL configuration: defaults of every setting, with where each comes from.

Values marked [paper] or [code] are Mas-Buitrago et al. (2024)'s (METHODS.md
§2); the others are stellarml's choices, mostly scaled down so that an
ensemble trains in minutes on a 2-core CPU and ships in a few MB. The paper's
full setting (26 autoencoders of first width 1024-2048 x 5 CNNs, keeping 80)
is `PAPER_ENSEMBLE` and `PAPER_ARCHITECTURE`. See ``docs/dtl.rst``.
"""

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_ENSEMBLE",
    "DEFAULT_TRAINING",
    "INPUT_SCALINGS",
    "LATENT_SOURCES",
    "PAPER_ARCHITECTURE",
    "PAPER_ENSEMBLE",
    "SUMMARIES",
]

#: Where the synthetic latents the regressors learn from come from:
#: ``"pretrained"`` (the paper's: the encoder before fine-tuning) or
#: ``"adapted"`` (the fine-tuned encoder).
LATENT_SOURCES = ("pretrained", "adapted")

#: What the autoencoders read (see ``DEFAULT_ARCHITECTURE["input_scaling"]``).
INPUT_SCALINGS = ("unit", "centre", "standardise")

#: Point estimates `~stellarml.models.DTLModel.predict_prepared` reports as ``value``.
SUMMARIES = ("median", "kde_mode")

DEFAULT_ARCHITECTURE = {
    # first encoder widths, one per autoencoder (cycled); paper grid 1024-2048 [code],
    # scaled down 4-8x for the CPU and for a shipped file of a few MB. Below 256 the
    # n/8 layer before a 32-d bottleneck is narrower than the bottleneck itself
    "widths": (256,),
    # L1 activity strengths, one per autoencoder (cycled) [code grid: 8-12e-8]
    "l1": (1e-7, 8e-8),
    "latent_dim": 32,  # [paper]
    "contractive": "exact",  # the exact form for the bottleneck used (see contractive_penalty)
    "contractive_weight": 1e-4,  # lambda_c [code]
    # what the autoencoders read: "unit" (flux / flux_scale clipped to [0, 1], with
    # the paper's sigmoid output), "centre" (minus the synthetic training spectra's
    # mean spectrum, over their RMS deviation: one scale for every pixel) or
    # "standardise" (a per-pixel z-score); the last two with a linear output
    "input_scaling": "centre",
    # for "unit": flux is divided by this and clipped to [0, 1]
    "flux_scale": 2.0,
    # [paper]: "relu"; "linear" keeps every latent alive (a ReLU bottleneck left half
    # the latents dead in our tests)
    "bottleneck": "linear",
    "cnn_filters": (16, 8),  # paper (Teff): 64, 32
    "cnn_dense": (128, 64, 32),  # paper: 256, 128, n_u
}

#: The paper's architecture grid, for reference (and for a full-size build).
PAPER_ARCHITECTURE = {
    **DEFAULT_ARCHITECTURE,
    "input_scaling": "unit",
    "bottleneck": "relu",
    "contractive": "relu",
    "widths": (1024, 1280, 1536, 1792, 2048),
    "l1": (8e-8, 9e-8, 1e-7, 1.1e-7, 1.2e-7),
    "cnn_filters": (64, 32),
    "cnn_dense": (256, 128, 64),
}

DEFAULT_TRAINING = {
    "ae_epochs": 60,  # paper: 120
    "ae_lr": 1e-3,  # paper: 1e-4 (over 120 epochs of 16 000 spectra)
    "ae_batch_size": 128,  # [code]
    "fine_tune_epochs": 60,  # [code]
    "fine_tune_lr": 1e-4,  # [code]
    "fine_tune_batch_size": 32,  # paper: 128 (for 229 stars: ~2 steps per epoch)
    "freeze_layers": 4,
    # weight of a label-free latent-alignment term added to the fine-tuning loss:
    # MMD^2 (Gaussian kernel, median-heuristic bandwidth of the synthetic latents)
    # between each batch of observed latents from the encoder being fine-tuned and
    # the stored synthetic latents of the pre-trained encoder. 0: the paper's
    # reconstruction-only fine-tuning (stellarml's addition, see docs/dtl.rst)
    "fine_tune_align": 0.0,  # encoder layers 1-4 frozen while fine-tuning [code/paper]
    "cnn_epochs": 60,
    # the label-using variant (`DTLModel.fine_tune_prepared`, stellarml's addition):
    # the kept regressors trained further on observed latents with observed labels
    "label_epochs": 100,
    "label_lr": 1e-4,
    "label_batch_size": 32,  # paper: 200
    "cnn_lr": 1e-3,  # paper: 0.01 on unscaled labels; ours on standardised labels
    "cnn_batch_size": 64,  # paper: 32
    "test_fraction": 0.3,  # synthetic test share: ensemble selection [paper]
    "synthetic_latents": "pretrained",  # [paper]
    "summary": "median",  # paper: the KDE mode
    "domain_quantile": 0.99,  # of the in-domain scores: the out-of-domain threshold
    "reference_size": 2000,  # synthetic latents kept per autoencoder for the domain score
}

DEFAULT_ENSEMBLE = {
    "n_autoencoders": 2,  # paper: 26
    "n_regressors": 3,  # per autoencoder; paper: 5
    "keep": 4,  # best by synthetic-test MSE; paper: 80 of 130
}

#: The paper's ensemble.
PAPER_ENSEMBLE = {"n_autoencoders": 26, "n_regressors": 5, "keep": 80}
