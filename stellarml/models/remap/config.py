"""deep-REMAP configuration: the defaults of every setting the paper does not give.

Every value here is stellarml's choice (NF in METHODS.md), not the paper's;
see ``docs/remap.rst``.
"""

from .._settings import merge_settings

__all__ = [
    "CPU_BATCH",
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_BINS",
    "DEFAULT_LOSS",
    "DEFAULT_TRAINING",
    "NOISELESS_IVAR",
    "merge_settings",
]

#: Default label bins ``(lo, hi, width)`` in label units (K, dex, km/s). Not from the paper
#: (NF): chosen to cover FGKM stars with bins finer than typical label precision.
DEFAULT_BINS = {
    "teff": (3000.0, 8500.0, 50.0),
    "logg": (-0.5, 5.5, 0.1),
    "fe_h": (-3.0, 1.0, 0.05),
    "m_h": (-3.0, 1.0, 0.05),
    "alpha_fe": (-0.4, 0.8, 0.05),
    "vsini": (0.0, 100.0, 2.0),
    "vmicro": (0.0, 5.0, 0.1),
    "vmacro": (0.0, 30.0, 0.5),
}

#: Default network configuration (every value NF in the paper; chosen for speed on CPUs:
#: about 8.6 million multiply-accumulates per 2037-pixel spectrum).
DEFAULT_ARCHITECTURE = {
    "input_encoding": "flux+weight",  # channels: flux - 1, tanh(sqrt(ivar) / snr_scale)
    "snr_scale": 30.0,  # S/N per pixel at which the weight channel is tanh(1)
    "flux_clip": (-0.5, 2.0),  # normalised flux range fed to the network
    "stem_channels": 16,
    "stem_kernel": 9,  # pixels
    "stem_stride": 4,
    "stage_channels": (16, 32, 48, 64),  # depth after each stage (one RN-V2 + RN-V1 blocks)
    "stage_blocks": (1, 2, 2, 2),  # blocks per stage: 1 RN-V2 (stride 2) + (n - 1) RN-V1
    "kernel_size": 5,  # pixels, residual blocks
    "pool_length": 16,  # adaptive average pooling to this length before the embedding
    "embedding_dim": 64,
    "head_hidden": 0,  # 0: linear heads; > 0: one hidden layer of this width
    "dropout": 0.1,  # before each head
    "activation": "relu",
}

#: Default loss configuration (every value NF in the paper). ``gamma_pos=None`` means
#: the variant's published default: 0 for "softmax", 1 for "sigmoid".
DEFAULT_LOSS = {
    "variant": "softmax",
    "gamma_pos": None,
    "gamma_neg": 4.0,
    "clip": 0.05,  # probability margin of the sigmoid form
    "sigma_bins": 1.0,  # width of the Gaussian soft targets, in bins
    "label_smoothing": 0.1,  # uniform share of the softmax form (asymmetrically focused)
    "task_weights": None,  # {label: weight}; None = 1 for every label
    "embedding": "center",  # "center", "pairwise", or None (no embedding loss)
    "embedding_weight": 0.1,  # lambda_emb
    "embedding_options": {},  # keyword arguments of the embedding loss
}

#: Default training configuration (every value NF in the paper).
DEFAULT_TRAINING = {
    "max_epochs": 40,
    "batch_size": 256,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "schedule": "onecycle",
    "warmup_fraction": 0.1,
    "patience": 8,
    "min_delta": 0.0,
    "grad_clip": 5.0,
    "validation_fraction": 0.1,
    "augment": {
        "snr": (10.0, 300.0),
        "rv_jitter": 0.3,
        "continuum": 0.0,
        "continuum_degree": 3,
        # masks (SpectrumAugmenter step 4): off by default, as in the shipped model's training
        "mask_fraction": 0.0,  # largest fraction of scattered bad pixels per spectrum
        "mask_chunks": 0,  # largest number of contiguous masked runs per spectrum
        "mask_chunk_pixels": 50,  # largest length of a run [pixels]
    },
    "domain_reference_size": 2000,  # training embeddings kept for the domain check
    "domain_quantile": 0.99,  # quantile of held-out NN distances used as threshold
    "fine_tune_epochs": 30,
    "fine_tune_lr": 3e-4,
    "fine_tune_batch_size": 32,
    "fine_tune_freeze": "stem",
    "fine_tune_runs": 1,  # > 1: average the weights of several fine-tuning runs
    "progress": True,
}

#: ``ivar`` given to pixels of spectra declared noiseless (S/N 10^6 per pixel).
NOISELESS_IVAR = 1e12

#: Largest forward batch on the CPU: 2037-pixel batches of 128-512 spectra ran ~20 %
#: faster than 1024 on two cores (the activations stay in the caches).
CPU_BATCH = 256
