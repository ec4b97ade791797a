"""``dnsieve stream``: live detection from Kafka or growing logs (ARCHITECTURE §3 ``stream``).

* :mod:`~dnsieve.stream.sources` -- Kafka (consumer groups, manual commits) and
  followed files (rotation, truncation);
* :mod:`~dnsieve.stream.checkpoint` -- hourly state, positions and scoring
  progress checkpointed atomically, and the closed hours' aggregates;
* :mod:`~dnsieve.stream.runner` -- the loop: micro-batches → lake + state →
  closed windows scored by :func:`dnsieve.jobs.score_period` → offsets committed;
* :mod:`~dnsieve.stream.replay` -- publish logs to Kafka in their time order;
* :mod:`~dnsieve.stream.spark` -- the same runner driven by a Spark Structured
  Streaming query (``--engine spark``; imported on demand, it needs pyspark).
"""

from __future__ import annotations

from dnsieve.stream.checkpoint import AggregateStore, Checkpoint, StreamCheckpoint
from dnsieve.stream.runner import StreamEngine, StreamRunner, StreamStatus, decode_chunk
from dnsieve.stream.sources import Chunk, FollowSource, KafkaSource, Source

__all__ = [
    "AggregateStore",
    "Checkpoint",
    "Chunk",
    "FollowSource",
    "KafkaSource",
    "Source",
    "StreamCheckpoint",
    "StreamEngine",
    "StreamRunner",
    "StreamStatus",
    "decode_chunk",
]
