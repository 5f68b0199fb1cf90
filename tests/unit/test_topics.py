from pathlib import Path

import pytest

from fixstream.config import Settings
from fixstream.errors import UnknownNameError
from fixstream.topics import load_catalog

TOPICS = Settings().topics_file


def test_catalog_covers_the_pipeline_and_the_summaries_are_compacted():
    catalog = load_catalog(TOPICS)
    names = {spec.name for spec in catalog}
    assert {
        "bugs.reported",
        "bugs.analyzed",
        "bugs.reproduced",
        "bugs.rootcaused",
        "bugs.patched",
        "fixes",
        "chunks.tasks",
        "chunks.results",
        "bugs.summaries",
        "bugs.status",
        "bugs.dlq",
    } <= names
    assert catalog["bugs.summaries"].configs()["cleanup.policy"] == "compact"
    assert catalog["chunks.tasks"].key == "chunk_id"
    assert catalog["chunks.results"].key == "bug_id"


def test_partition_override_applies_to_every_topic():
    assert {spec.partitions for spec in load_catalog(TOPICS, partitions=3)} == {3}


def test_unknown_topic_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: .*bugs.reported"):
        load_catalog(TOPICS)["bugs.nope"]


def test_a_topic_naming_an_unknown_schema_is_refused(tmp_path: Path):
    bad = tmp_path / "topics.yaml"
    bad.write_text(
        "defaults: {partitions: 1, replication_factor: 1, retention_ms: 1,"
        " cleanup_policy: delete}\n"
        "topics:\n  - {name: x, key: bug_id, value: NoSuchEvent}\n"
    )
    with pytest.raises(UnknownNameError, match="NoSuchEvent.*known: .*BugReport"):
        load_catalog(bad)
