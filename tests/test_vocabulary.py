"""One vocabulary: artifact kinds, the device resolver, errors and renamed CLI options."""

from __future__ import annotations

import pytest
from xrec.artifacts import LEGACY_KINDS, read_manifest, write_manifest
from xrec.cli.main import main
from xrec.devices import cuda_available, resolve_device
from xrec.errors import ArtifactError, DeviceError, XrecError


@pytest.mark.parametrize("old, new", sorted(LEGACY_KINDS.items()))
def test_old_artifact_kind_spellings_still_read(tmp_path, old, new):
    assert new.startswith("xrec.") and "-" not in new
    (tmp_path / "data.bin").write_bytes(b"x")
    write_manifest(tmp_path, old, 1, {"dim": 3})
    manifest = read_manifest(tmp_path, new, 1)
    assert manifest["dim"] == 3 and manifest["kind"] == new
    with pytest.raises(ArtifactError, match="expected a 'xrec.vector_index'"):
        read_manifest(tmp_path, "xrec.vector_index", 1)


def test_old_format_version_says_how_to_rebuild(tmp_path):
    write_manifest(tmp_path, "xrec.hybrid_ranker", 1, {})
    with pytest.raises(ArtifactError, match="rebuild the xrec.hybrid_ranker artifact"):
        read_manifest(tmp_path, "xrec.hybrid_ranker", 2)


def test_resolve_device_is_concrete():
    for device in (None, "auto", "AUTO"):
        assert resolve_device(device) == ("cuda" if cuda_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="expected auto, cpu, cuda"):
        resolve_device("tpu")
    if not cuda_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert issubclass(DeviceError, XrecError)


def test_encoder_accepts_auto_device(encoder):
    from xrec.encoders import load_encoder

    auto = load_encoder("bundled", device="auto")
    assert auto.fingerprint == encoder.fingerprint


@pytest.mark.parametrize("argv", [
    ["evaluate", "bitext", "--data", "d", "--json", "j", "--cache", "s"],
    ["evaluate", "parallel", "--data", "d", "--json", "j", "--cache", "s"],
    ["evaluate", "topics", "--data", "d", "--train-lang", "x", "--json", "j", "--cache", "s"],
    ["bench", "serve", "--json", "j", "--cache", "s"],
])
def test_old_cache_option_is_refused_naming_store(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "--cache was renamed: use --store" in capsys.readouterr().err


def test_renamed_options_stay_out_of_help(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "bitext", "--help"])
    out = capsys.readouterr().out
    assert "--store" in out and "--cache" not in out
