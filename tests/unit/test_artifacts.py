import pytest

from fixstream.artifacts import ArtifactStore, sha256_hex
from fixstream.errors import ArtifactError
from fixstream.schemas import Artifact


def test_big_inline_artifact_becomes_a_claim_check_and_reads_back(tmp_path):
    store = ArtifactStore(tmp_path)
    text = "line of a very long log\n" * 2000
    checked = store.claim_check(Artifact(name="ci.log", content=text), inline_limit=1024)
    assert checked.content is None
    assert checked.uri.startswith("file://")
    assert checked.sha256 == sha256_hex(text.encode())
    assert checked.size == len(text.encode())
    assert store.get(checked.uri, checked.sha256).decode() == text


def test_small_artifact_stays_inline(tmp_path):
    artifact = Artifact(name="a.log", content="short")
    assert ArtifactStore(tmp_path).claim_check(artifact, inline_limit=1024) is artifact


def test_same_bytes_are_stored_once(tmp_path):
    store = ArtifactStore(tmp_path)
    assert store.put(b"abc") == store.put(b"abc")
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1


def test_tampered_or_missing_artifact_is_an_error(tmp_path):
    store = ArtifactStore(tmp_path)
    uri, digest = store.put(b"original")
    path = next(p for p in tmp_path.rglob("*") if p.is_file())
    path.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="does not match its sha256"):
        store.get(uri, digest)
    path.unlink()
    with pytest.raises(ArtifactError, match="cannot be read"):
        store.get(uri, digest)
    with pytest.raises(ArtifactError, match="unsupported artifact uri scheme 's3'"):
        store.get("s3://bucket/x", digest)


def test_an_artifact_needs_exactly_one_of_content_and_uri():
    with pytest.raises(ValueError, match="either inline content or a uri"):
        Artifact(name="x")
    with pytest.raises(ValueError, match="needs its sha256"):
        Artifact(name="x", uri="file:///tmp/x")
