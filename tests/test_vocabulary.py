"""One vocabulary: artifact kinds and versions, the device resolver, errors."""

from __future__ import annotations

import pytest
from xrec.artifacts import read_manifest, write_manifest
from xrec.devices import cuda_available, resolve_device
from xrec.errors import ArtifactError, DeviceError, XrecError


def test_old_format_version_says_how_to_rebuild(tmp_path):
    from xrec.ranking.persist import FORMAT_VERSION, REBUILD

    write_manifest(tmp_path, "xrec.hybrid_ranker", FORMAT_VERSION - 1, {})
    with pytest.raises(ArtifactError, match=f"format_version {FORMAT_VERSION - 1}.*refit it with HybridRanker.fit"):
        read_manifest(tmp_path, "xrec.hybrid_ranker", FORMAT_VERSION, rebuild=REBUILD)
    write_manifest(tmp_path, "hybrid-ranker", FORMAT_VERSION, {})  # an old spelling of the kind
    with pytest.raises(ArtifactError, match="holds a 'hybrid-ranker', expected a 'xrec.hybrid_ranker'"):
        read_manifest(tmp_path, "xrec.hybrid_ranker", FORMAT_VERSION)


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
