"""The stream worker checks its configuration before it connects to anything."""

from __future__ import annotations

import pytest

from schemas.settings import Settings
from schemas.topics import Topic
from streams.app import StreamWorker


def test_the_stream_worker_refuses_topics_that_are_not_co_partitioned() -> None:
    with pytest.raises(ValueError, match="co-partitioned"):
        StreamWorker(Settings.from_env({"LANTOA_PARTITIONS": "cms.articles=12"}))


def test_scaling_out_all_three_together_is_fine() -> None:
    settings = Settings.from_env(
        {"LANTOA_PARTITIONS": "cms.articles=12,streams.embargo.releases=12,streams.article.state=12"}
    )
    worker = StreamWorker(settings)
    assert worker.intake.process.state_topic_of  # type: ignore[attr-defined] == settings.topic(Topic.CMS_ARTICLES)
    assert settings.partitions(Topic.ARTICLE_STATE) == 12
