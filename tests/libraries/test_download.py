"""Grid downloads against a real HTTP server on 127.0.0.1 serving files in the real formats."""

import hashlib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from astropy.utils import data as astropy_data
from grid_files import (
    kurucz_relpath,
    phoenix_relpath,
    phoenix_wavelengths,
    write_kurucz_file,
    write_phoenix_flux,
    write_phoenix_tree,
)

from stellarml.io.kurucz import read_kurucz_batch
from stellarml.io.phoenix import PHOENIX_WAVE_FILENAME, read_phoenix
from stellarml.libraries import download
from stellarml.libraries.download import (
    KURUCZ_BASE_URL,
    PHOENIX_BASE_URL,
    GridDownloadError,
    GridPointNotFound,
    InvalidGridFile,
    fetch_kurucz,
    fetch_phoenix,
    fetch_phoenix_wavelength,
    grid_url,
    validate_grid_file,
)

SUN = (5800.0, 4.5, 0.0, 0.0)


@pytest.fixture
def phoenix_server(grid_server):
    """The server with a HiResFITS tree of three PHOENIX models and the WAVE file."""
    points = [SUN, (5900.0, 4.5, 0.0, 0.0), (4000.0, 1.5, -0.5, 0.2)]
    _, paths = write_phoenix_tree(grid_server.root / "HiResFITS", points)
    grid_server.base = grid_server.url + "HiResFITS/"
    grid_server.paths = paths
    return grid_server


def _cached():
    return astropy_data.get_cached_urls(on_missing="ignore")


def _partials(cache):
    return sorted(p.name for p in Path(cache).rglob("*.part*") if p.suffix != ".lock")


def test_urls_follow_the_server_layouts():
    assert grid_url(PHOENIX_BASE_URL, download.phoenix_relpath(*SUN)) == (
        "https://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/"
        "PHOENIX-ACES-AGSS-COND-2011/Z-0.0/lte05800-4.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
    )
    assert grid_url(PHOENIX_BASE_URL, PHOENIX_WAVE_FILENAME) == (
        "https://phoenix.astro.physik.uni-goettingen.de/data/HiResFITS/"
        "WAVE_PHOENIX-ACES-AGSS-COND-2011.fits"
    )
    assert download.phoenix_relpath(4000, 1.5, -0.5, 0.2) == (
        "PHOENIX-ACES-AGSS-COND-2011/Z-0.5.Alpha=+0.20/"
        "lte04000-1.50-0.5.Alpha=+0.20.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits"
    )
    assert grid_url(KURUCZ_BASE_URL, download.kurucz_relpath(5000, 0.0)) == (
        "https://archive.stsci.edu/hlsps/reference-atlases/cdbs/grid/ck04models/ckp00/"
        "ckp00_5000.fits"
    )
    assert download.kurucz_relpath(8000, -1.0, "k93") == "k93models/km10/km10_8000.fits"
    assert grid_url("http://127.0.0.1:80", "/a/b.fits") == "http://127.0.0.1:80/a/b.fits"
    with pytest.raises(ValueError, match="http:// or https://"):
        grid_url("ftp://example.org/", "a.fits")
    with pytest.raises(ValueError, match="not a point of the PHOENIX-ACES grid"):
        download.phoenix_relpath(5850, 4.5, 0.0)


def test_download_into_the_astropy_cache(phoenix_server, astropy_cache, capsys):
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=True)
    url = grid_url(phoenix_server.base, phoenix_relpath(*SUN))
    assert path.is_relative_to(astropy_cache)
    assert path.read_bytes() == phoenix_server.paths[SUN].read_bytes()
    assert _cached() == [url]
    # astropy's own API finds it without a new request
    n = len(phoenix_server.requests)
    assert Path(astropy_data.download_file(url, cache=True)) == path
    assert fetch_phoenix(*SUN, base_url=phoenix_server.base) == path
    assert len(phoenix_server.requests) == n
    # a progress bar went to stderr
    assert "lte05800-4.50-0.0" in capsys.readouterr().err
    # the cached file is a PHOENIX model, read with the downloaded wavelength file
    wave_file = fetch_phoenix_wavelength(base_url=phoenix_server.base, show_progress=False)
    spec = read_phoenix(path, wave_file)
    assert spec.meta["teff"].value == 5800 and spec.shape == phoenix_wavelengths().shape
    assert _partials(astropy_cache) == []


def test_missing_grid_point_is_a_clear_lookup_error(phoenix_server, astropy_cache):
    with pytest.raises(GridPointNotFound) as info:
        fetch_phoenix(12000.0, 0.5, 0.0, base_url=phoenix_server.base, show_progress=False)
    err = info.value
    assert isinstance(err, LookupError)
    assert "teff=12000, logg=0.5, m_h=0, alpha_fe=0" in str(err)
    assert "HTTP 404" in str(err) and err.url in str(err)
    assert err.url.endswith("Z-0.0/lte12000-0.50-0.0.PHOENIX-ACES-AGSS-COND-2011-HiRes.fits")
    assert err.point == {"teff": 12000.0, "logg": 0.5, "m_h": 0.0, "alpha_fe": 0.0}
    assert _cached() == []
    assert _partials(astropy_cache) == []
    assert not list(Path(astropy_cache).rglob("*.lock"))


def test_truncated_transfer_leaves_nothing_in_the_cache_and_resumes(phoenix_server, astropy_cache):
    rel = "HiResFITS/" + phoenix_relpath(*SUN)
    size = phoenix_server.paths[SUN].stat().st_size
    phoenix_server.truncate[rel] = 5000
    with pytest.raises(GridDownloadError, match=f"stopped after 5000 of {size} bytes") as info:
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert _cached() == []
    assert info.value.partial.stat().st_size == 5000
    assert not astropy_data.is_url_in_cache(info.value.url, on_missing="ignore")
    # the next call asks only for the rest, and the result is the file
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    _, headers = phoenix_server.requests[-1]
    assert headers["Range"] == "bytes=5000-" and headers["If-Range"].startswith('"')
    assert path.read_bytes() == phoenix_server.paths[SUN].read_bytes()
    assert _cached() == [info.value.url]
    assert _partials(astropy_cache) == []


def test_resume_restarts_without_ranges_or_when_the_file_changed(phoenix_server, astropy_cache):
    point = (5900.0, 4.5, 0.0, 0.0)
    rel = "HiResFITS/" + phoenix_relpath(*point)
    # a server that ignores Range answers 200: the download starts again
    phoenix_server.truncate[rel] = 3000
    with pytest.raises(GridDownloadError):
        fetch_phoenix(*point, base_url=phoenix_server.base, show_progress=False)
    phoenix_server.honour_range = False
    path = fetch_phoenix(*point, base_url=phoenix_server.base, show_progress=False)
    assert path.read_bytes() == phoenix_server.paths[point].read_bytes()
    # a file that changed between the attempts fails If-Range: the new file is fetched whole
    phoenix_server.honour_range = True
    phoenix_server.truncate[rel.replace("05900", "05800")] = 4000
    with pytest.raises(GridDownloadError):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    new = phoenix_server.paths[SUN]
    write_phoenix_flux(
        new, phoenix_wavelengths(), *SUN, flux=np.full(phoenix_wavelengths().size, 7.0)
    )
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    _, headers = phoenix_server.requests[-1]
    assert headers["Range"] == "bytes=4000-"  # asked to resume, got the whole new file
    assert path.read_bytes() == new.read_bytes()


def test_what_astropy_download_file_does_on_its_own(phoenix_server, astropy_cache):
    """astropy refuses short transfers atomically, but caches any complete body."""
    url = grid_url(phoenix_server.base, phoenix_relpath(*SUN))
    phoenix_server.truncate["HiResFITS/" + phoenix_relpath(*SUN)] = 5000
    with pytest.raises(urllib.error.ContentTooShortError, match="only got 5000 bytes"):
        astropy_data.download_file(url, cache=True, show_progress=False)
    assert _cached() == []
    # a complete transfer of a corrupt file goes into the cache as it is
    bad = phoenix_server.root / "HiResFITS" / "corrupt.fits"
    bad.write_bytes(b"<html>Service temporarily unavailable</html>")
    cached = astropy_data.download_file(
        phoenix_server.base + "corrupt.fits", cache=True, show_progress=False
    )
    assert Path(cached).read_bytes() == bad.read_bytes()
    with pytest.raises(InvalidGridFile, match="not a readable phoenix FITS file"):
        validate_grid_file(cached, "phoenix")


def test_corrupt_fits_is_rejected_and_not_cached(phoenix_server, astropy_cache):
    target = phoenix_server.paths[SUN]
    good = target.read_bytes()
    # an error page served with status 200
    target.write_bytes(b"<html>Service temporarily unavailable</html>")
    with pytest.raises(InvalidGridFile, match="not a readable phoenix FITS file"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    # a FITS file that was cut on the server (the transfer itself is complete)
    target.write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidGridFile, match="truncated FITS file"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    # a valid model of another grid point under this name
    write_phoenix_flux(target, phoenix_wavelengths(), *SUN, header_teff=6000.0)
    with pytest.raises(InvalidGridFile, match="teff: expected 5800, file has 6000"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert _cached() == []
    assert _partials(astropy_cache) == []
    # the wavelength file and Kurucz atlas files are checked too
    (phoenix_server.root / "HiResFITS" / PHOENIX_WAVE_FILENAME).write_bytes(b"\0" * 2880)
    with pytest.raises(InvalidGridFile, match="phoenix_wavelength"):
        fetch_phoenix_wavelength(base_url=phoenix_server.base, show_progress=False)
    kurucz = phoenix_server.root / kurucz_relpath(5000.0, 0.0)
    write_kurucz_file(kurucz, 5000.0, 0.0)
    kurucz.write_bytes(kurucz.read_bytes()[:-3000])
    with pytest.raises(InvalidGridFile, match="truncated"):
        fetch_kurucz(5000.0, 0.0, base_url=phoenix_server.url, show_progress=False)
    assert _cached() == []


def test_kurucz_download(grid_server, astropy_cache):
    source = write_kurucz_file(grid_server.root / kurucz_relpath(5000.0, -0.5), 5000.0, -0.5)
    path = fetch_kurucz(5000.0, -0.5, base_url=grid_server.url, show_progress=False)
    assert path.read_bytes() == source.read_bytes()
    spec = read_kurucz_batch(path)
    assert spec.meta["teff"].value == 5000.0 and spec.meta["m_h"].value == -0.5
    with pytest.raises(GridPointNotFound, match=r"teff=5250, m_h=-0\.5"):
        fetch_kurucz(5250.0, -0.5, base_url=grid_server.url, show_progress=False)


def test_mirror_directory_in_the_server_layout(phoenix_server, tmp_path):
    mirror = tmp_path / "mirror"
    point = (4000.0, 1.5, -0.5, 0.2)
    rel = "HiResFITS/" + phoenix_relpath(*point)
    phoenix_server.truncate[rel] = 2880
    with pytest.raises(GridDownloadError, match="resumes it"):
        fetch_phoenix(*point, base_url=phoenix_server.base, mirror=mirror, show_progress=False)
    dest = mirror / phoenix_relpath(*point)
    assert not dest.exists()
    assert dest.with_name(dest.name + ".part").stat().st_size == 2880
    path = fetch_phoenix(*point, base_url=phoenix_server.base, mirror=mirror, show_progress=False)
    assert path == dest and dest.read_bytes() == phoenix_server.paths[point].read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no .part, .json, .lock
    wave = fetch_phoenix_wavelength(base_url=phoenix_server.base, mirror=mirror)
    assert wave == mirror / PHOENIX_WAVE_FILENAME
    # the mirror is a local grid: the reader finds the wavelength file two levels up
    assert read_phoenix(dest).meta["alpha_fe"].value == pytest.approx(0.2)


def test_configured_cache_dir_holds_the_downloads(phoenix_server, astropy_cache, tmp_path):
    """``stellarml.conf.cache_dir`` replaces the astropy cache, in the server layout."""
    from stellarml import conf

    folder = tmp_path / "grids"  # created on first use
    with conf.set_temp("cache_dir", str(folder)):
        path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
        assert path == folder / phoenix_relpath(*SUN)
        assert path.read_bytes() == phoenix_server.paths[SUN].read_bytes()
        n = len(phoenix_server.requests)
        assert fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False) == path
        assert len(phoenix_server.requests) == n  # found there, not fetched again
    assert _cached() == []  # nothing went to the astropy cache
    # without the setting, the same call uses the astropy cache again
    cached = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert cached.is_relative_to(astropy_cache)


def test_network_failures_are_clear(phoenix_server, astropy_cache):
    with astropy_data.conf.set_temp("allow_internet", False):
        with pytest.raises(GridDownloadError, match="allow_internet is False"):
            fetch_phoenix(*SUN, base_url=phoenix_server.base)
    closed = phoenix_server.url
    phoenix_server.close()
    with pytest.raises(GridDownloadError, match="cannot download"):
        fetch_phoenix(*SUN, base_url=closed, show_progress=False, timeout=2)
    with pytest.raises(ValueError, match="kind must be one of"):
        validate_grid_file(__file__, "marcs")


# ---------------------------------------------------------------------- safety
def _b64(digest_bytes):
    import base64

    return base64.b64encode(digest_bytes).decode()


def test_redirect_to_another_host_is_refused(phoenix_server, astropy_cache, tmp_path):
    from grid_files import GridServer

    other = GridServer(tmp_path / "other")
    try:
        rel = "HiResFITS/" + phoenix_relpath(*SUN)
        target = other.root / rel
        target.parent.mkdir(parents=True)
        target.write_bytes(phoenix_server.paths[SUN].read_bytes())
        phoenix_server.redirects[rel] = other.url + rel  # same IP, another port
        with pytest.raises(download.UnsafeDownloadError, match="redirects") as info:
            fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
        assert other.url + rel in str(info.value) and "another host" in str(info.value)
        assert isinstance(info.value, GridDownloadError)
        assert other.requests == []  # never contacted
        assert _cached() == [] and _partials(astropy_cache) == []
    finally:
        other.close()


def test_redirect_within_the_server_is_followed(phoenix_server, astropy_cache):
    rel = "HiResFITS/" + phoenix_relpath(*SUN)
    moved = "HiResFITS/moved/" + phoenix_relpath(*SUN).rsplit("/", 1)[-1]
    (phoenix_server.root / moved).parent.mkdir(parents=True)
    (phoenix_server.root / moved).write_bytes(phoenix_server.paths[SUN].read_bytes())
    phoenix_server.redirects[rel] = "/" + moved
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert path.read_bytes() == phoenix_server.paths[SUN].read_bytes()
    assert [r for r, _ in phoenix_server.requests] == [rel, moved]


@pytest.mark.parametrize("announced", [True, False])
def test_size_cap(phoenix_server, astropy_cache, announced):
    rel = "HiResFITS/" + phoenix_relpath(*SUN)
    size = phoenix_server.paths[SUN].stat().st_size
    if not announced:
        phoenix_server.omit_length.add(rel)
    with pytest.raises(download.UnsafeDownloadError, match="over the size cap of 10000 bytes"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False, max_bytes=10000)
    assert _cached() == [] and _partials(astropy_cache) == []
    # under a cap it fits, also without Content-Length
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False, max_bytes=size)
    assert path.stat().st_size == size
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, max_bytes=0)


@pytest.mark.parametrize(
    ("header", "good"),
    [
        ("Digest", lambda d: "SHA-256=" + _b64(hashlib.sha256(d).digest())),
        ("Digest", lambda d: "MD5=" + _b64(hashlib.md5(d).digest())),
        ("Content-MD5", lambda d: _b64(hashlib.md5(d).digest())),
        ("ETag", lambda d: '"' + hashlib.md5(d).hexdigest() + '"'),
    ],
)
def test_server_checksums_are_verified(phoenix_server, astropy_cache, header, good):
    rel = "HiResFITS/" + phoenix_relpath(*SUN)
    data = phoenix_server.paths[SUN].read_bytes()
    phoenix_server.headers[rel] = {header: good(data + b"x")}  # the digest of other bytes
    with pytest.raises(InvalidGridFile, match="does not match its checksum") as info:
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert "the server's header says" in str(info.value)
    assert _cached() == [] and _partials(astropy_cache) == []
    phoenix_server.headers[rel] = {header: good(data)}
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert path.read_bytes() == data


def test_digest_survives_a_resumed_transfer(phoenix_server, astropy_cache):
    rel = "HiResFITS/" + phoenix_relpath(*SUN)
    data = phoenix_server.paths[SUN].read_bytes()
    phoenix_server.headers[rel] = {"Digest": "SHA-256=" + _b64(hashlib.sha256(b"no").digest())}
    phoenix_server.truncate[rel] = 4000
    with pytest.raises(GridDownloadError, match="resumes it"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    phoenix_server.headers[rel] = {}  # the 206 carries no digest: the first answer's counts
    with pytest.raises(InvalidGridFile, match="does not match its checksum"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False)
    assert phoenix_server.requests[-1][1]["Range"] == "bytes=4000-"
    assert _cached() == []
    assert fetch_phoenix(*SUN, base_url=phoenix_server.base).read_bytes() == data


def test_manifest_checksums_and_sizes(phoenix_server, astropy_cache, tmp_path):
    data = phoenix_server.paths[SUN].read_bytes()
    right = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    for wrong, match in [
        ({**right, "sha256": "0" * 64}, "sha256 .*expected 0000"),
        ({"size": len(data) + 1}, f"{len(data)} bytes, expected {len(data) + 1}"),
        ({"md5": "F" * 32}, "md5 .*expected ffff"),
    ]:
        with pytest.raises(InvalidGridFile, match=match):
            fetch_phoenix(*SUN, base_url=phoenix_server.base, show_progress=False, expected=wrong)
        assert _cached() == []
    with pytest.raises(ValueError, match="'size', 'sha256' and 'md5', not \\['sha1'\\]"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, expected={"sha1": "ab"})
    mirror = tmp_path / "mirror"
    path = fetch_phoenix(*SUN, base_url=phoenix_server.base, mirror=mirror, expected=right)
    assert path.read_bytes() == data
    # a file already in the mirror is checked too, and left alone when it differs
    path.write_bytes(data[:-1] + b"?")
    n = len(phoenix_server.requests)
    with pytest.raises(InvalidGridFile, match="does not match its checksum"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, mirror=mirror, expected=right)
    assert path.exists() and len(phoenix_server.requests) == n


@pytest.mark.parametrize(
    ("relpath", "match"),
    [
        ("../escape.fits", "'..' component"),
        ("a/../../escape.fits", "'..' component"),
        ("/etc/passwd", "is absolute"),
        ("C:/x.fits", "is absolute"),
        ("a\\b.fits", "backslash"),
        ("", "empty"),
    ],
)
def test_mirror_paths_stay_inside_the_mirror(phoenix_server, tmp_path, relpath, match):
    with pytest.raises(download.UnsafeDownloadError, match=match):
        download.fetch_grid_file(
            relpath, base_url=phoenix_server.base, kind="phoenix", mirror=tmp_path / "m"
        )
    assert phoenix_server.requests == []
    if not relpath.startswith("/"):  # a URL path may start with "/" (joined to the base)
        with pytest.raises(download.UnsafeDownloadError, match=match):
            grid_url(phoenix_server.base, relpath)


def test_mirror_symlink_escape_is_refused(phoenix_server, tmp_path):
    mirror, outside = tmp_path / "mirror", tmp_path / "outside"
    mirror.mkdir()
    outside.mkdir()
    (mirror / "PHOENIX-ACES-AGSS-COND-2011").symlink_to(outside, target_is_directory=True)
    with pytest.raises(download.UnsafeDownloadError, match="outside the mirror"):
        fetch_phoenix(*SUN, base_url=phoenix_server.base, mirror=mirror)
    assert phoenix_server.requests == [] and list(outside.iterdir()) == []
    # normalised: "./" and doubled slashes name the same file inside the mirror
    rel = "./" + PHOENIX_WAVE_FILENAME
    path = download.fetch_grid_file(
        rel, base_url=phoenix_server.base, kind="phoenix_wavelength", mirror=mirror
    )
    assert path == mirror.resolve() / PHOENIX_WAVE_FILENAME
