"""Auto-identification of every real spectrum file: one loader wins, never a tie.

``Spectrum.read(path)`` raises when two loaders of the same top priority both claim a
file, so each real file in ../shared/data must be claimed by exactly the expected
stellarml loader (LAMOST, GALAH, BOSS, APOGEE) or by none of them (MILES, whose own
loader is not counted here), next to specutils' loaders of lower priority.
"""

import pytest
from astropy.io import registry as io_registry
from specutils import Spectrum, SpectrumList

import stellarml.io.echelle
import stellarml.io.kurucz
import stellarml.io.lamost
import stellarml.io.phoenix  # noqa: F401  (registers the loader)

STELLARML_FORMATS = {
    "LAMOST-LRS",
    "PHOENIX-ACES",
    "Castelli-Kurucz",
    "CARMENES-CARACAL",
    "GALAH-HERMES",
    "SDSS-BOSS-stellarml",
    "SDSS-APOGEE-stellarml",
}
EXPECTED = {
    "lamost": {"LAMOST-LRS"},
    "galah": {"GALAH-HERMES"},
    "sdss": {"spec": {"SDSS-BOSS-stellarml"}, "ap": {"SDSS-APOGEE-stellarml"}},
    "miles": set(),
}
# specutils' BOSS loader makes astropy warn that '1E-17 erg/cm^2/s/Ang' "contains
# multiple slashes" (the unit still parses correctly).
BOSS_UNIT_WARNING = "ignore:.*contains multiple slashes:astropy.units.UnitsWarning"


def _files(data_dir, folder):
    files = sorted((data_dir / folder).glob("*.fits"))
    assert files, f"no FITS files in {data_dir / folder}"
    # MILES has 668 stars; 12 spread over the list keep this test fast.
    return files[:: max(1, len(files) // 12)] if folder == "miles" else files


@pytest.mark.filterwarnings(BOSS_UNIT_WARNING)
@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_each_real_file_has_one_winning_loader(data_dir, folder):
    for path in _files(data_dir, folder):
        formats = set(io_registry.identify_format("read", Spectrum, str(path), None, [], {}))
        expected = EXPECTED[folder]
        if folder == "sdss":
            expected = expected["spec" if path.name.startswith("spec-") else "ap"]
        assert formats & STELLARML_FORMATS == expected, (path.name, formats)
        spec = Spectrum.read(path)  # raises if two top-priority loaders tie
        if folder == "lamost":
            assert spec.meta["survey"] == "LAMOST"
        elif folder == "galah":
            assert spec.meta["survey"] == "GALAH"
        elif folder == "sdss":
            assert spec.meta["survey"] == ("SDSS" if path.name.startswith("spec-") else "APOGEE")
            assert spec.meta["rv_source"] == "header"
        else:
            assert spec.meta.get("survey") not in ("LAMOST", "GALAH")
    first = _files(data_dir, folder)[0]
    listed = SpectrumList.read(first)
    assert len(listed) == (4 if folder == "galah" else 1)


def test_readers_are_exported_from_stellarml_io():
    import stellarml.io as io

    for module in (io.echelle, io.kurucz, io.lamost, io.miles, io.phoenix, io.sdss):
        for name in module.__all__:
            assert getattr(io, name) is getattr(module, name)
    assert {"read_boss", "read_apogee", "read_lamost", "read_galah_star"} <= set(io.__all__)
