"""stellarml's `astropy.config` items (``stellarml.conf``).

Set them for a session (``stellarml.conf.default_device = "cuda:1"``), for a
block (``with stellarml.conf.set_temp("default_device", "cpu"): ...``) or for
good in ``~/.astropy/config/stellarml.cfg``, written by
``astropy.config.generate_config("stellarml")``.
"""

from astropy import config as _config

__all__ = ["Conf", "conf"]


class Conf(_config.ConfigNamespace):
    """Configuration parameters of stellarml."""

    data_dir = _config.ConfigItem(
        "",
        "Folder of the reference data (the MILES training list, the Doppler emulator, ...) "
        "that training configurations name as {data_dir}. Empty: the STELLARML_DATA_DIR "
        "environment variable, else ../shared/data.",
        cfgtype="string",
    )
    cache_dir = _config.ConfigItem(
        "",
        "Folder where grid files downloaded on demand (PHOENIX, Kurucz) are kept, in each "
        "server's own layout (so that it is also a local grid directory). Empty: the astropy "
        "download cache (astropy.config.get_cache_dir()).",
        cfgtype="string",
    )
    default_device = _config.ConfigItem(
        "auto",
        "Device used when a function is given device='auto': 'auto' (CUDA when available, "
        "else the CPU), 'cpu', 'cuda' or 'cuda:N'.",
        cfgtype="string",
    )


conf = Conf()
