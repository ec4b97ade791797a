"""Stream sources: a Kafka topic (consumer group, manual commits) or followed log files.

A source hands out :class:`Chunk` s: the raw records of one *partition* (a
Kafka partition, or one followed file) with their positions (Kafka offsets,
byte offsets), so the runner can drop what the lake already holds and
checkpoint exactly where it stopped.  Positions are "next to read": a
checkpoint of ``{"p0": 10}`` means records 0..9 are in.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Chunk", "FollowSource", "KafkaSource", "Source"]


@dataclass
class Chunk:
    """Records of one partition: ``records`` are ``(position, payload)`` in order."""

    partition: str
    records: list[tuple[int, bytes]] = field(default_factory=list)
    #: position after the last record
    end: int = 0
    #: bytes the adapter needs before the records (a Zeek TSV header)
    prefix: bytes = b""
    #: records the source could not read, by reason (counted as rejects)
    rejects: dict[str, int] = field(default_factory=dict)

    def after(self, pos: int) -> Chunk:
        """The part of this chunk at or after position ``pos`` (records cut at ``pos``)."""
        if pos >= self.end:
            return Chunk(self.partition, [], self.end, self.prefix)
        out: list[tuple[int, bytes]] = []
        for p, data in self.records:
            if p >= pos:
                out.append((p, data))
            elif p + len(data) > pos and self.partition.startswith("file:"):
                # a byte range that straddles pos (files only: pos is a line boundary)
                out.append((pos, data[pos - p :]))
        return Chunk(self.partition, out, self.end, self.prefix)

    def payload(self) -> bytes:
        """The records joined into one newline-separated byte string."""
        body = b"\n".join(d.rstrip(b"\n") for _, d in self.records if d)
        return self.prefix + body + b"\n" if body else b""


class Source(Protocol):
    """What the runner needs from a source."""

    name: str

    def poll(self, max_records: int, timeout: float) -> list[Chunk]:
        """New records (at most about ``max_records``), waiting up to ``timeout`` seconds."""
        ...

    def seek(self, positions: dict[str, int]) -> None:
        """Resume every known partition at its checkpointed position."""
        ...

    def positions(self) -> dict[str, int]:
        """The next position to read of every partition seen."""
        ...

    def lag(self) -> dict[str, int]:
        """Records (or bytes) not read yet, per partition."""
        ...

    def caught_up(self) -> bool:
        """True when every partition has been read to its end."""
        ...

    def partitions(self) -> list[str]:
        """Every partition this reader is responsible for (read or not yet)."""
        ...

    def at_end(self, partition: str) -> bool:
        """True when ``partition`` has been read to its current end."""
        ...

    def commit(self, positions: dict[str, int]) -> None:
        """Acknowledge ``positions`` to the source (Kafka: commit the group's offsets)."""
        ...

    def close(self) -> None: ...


class KafkaSource:
    """A Kafka topic read by a consumer group with manual offset commits (confluent-kafka).

    ``config`` is merged into the consumer settings (e.g. security options).
    Partitions are named ``"<topic>/<partition>"``.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str = "dnsieve",
        config: dict[str, Any] | None = None,
        own_all: bool = True,
    ) -> None:
        from confluent_kafka import Consumer

        self.own_all = own_all
        self.name = f"kafka:{topic}"
        self.topic = topic
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            # a topic created after the stream started is found within seconds
            "topic.metadata.refresh.interval.ms": 5000,
        }
        conf.update(config or {})
        self._incremental = conf.get(
            "group.protocol", "classic"
        ) == "consumer" or "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        if conf.get("group.protocol", "classic") == "classic":
            # a stale member must not stall the group for long (classic protocol)
            conf.setdefault("session.timeout.ms", 6000)
            conf.setdefault("heartbeat.interval.ms", 500)
        self._seek_to: dict[str, int] = {}
        self._pos: dict[str, int] = {}
        self._eof: dict[str, bool] = {}
        self._high: dict[str, int] = {}
        self._consumer = Consumer(conf)
        md = self._consumer.list_topics(topic, timeout=10).topics.get(topic)
        self._all = sorted(self._key(p) for p in (md.partitions if md is not None else {}))
        self._consumer.subscribe([topic], on_assign=self._on_assign)

    def _key(self, partition: int) -> str:
        return f"{self.topic}/{partition}"

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            key = self._key(tp.partition)
            if key in self._seek_to:
                tp.offset = self._seek_to[key]
            self._eof.setdefault(key, False)
        if self._incremental:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    def seek(self, positions: dict[str, int]) -> None:
        self._seek_to = {k: int(v) for k, v in positions.items() if k.startswith(self.topic + "/")}
        self._pos.update(self._seek_to)

    def poll(self, max_records: int, timeout: float) -> list[Chunk]:
        from confluent_kafka import KafkaError

        chunks: dict[str, Chunk] = {}
        n = 0
        deadline = time.monotonic() + timeout
        while n < max_records:
            wait = max(0.0, deadline - time.monotonic())
            msgs = self._consumer.consume(min(max_records - n, 10_000), timeout=wait)
            if not msgs:
                break
            for m in msgs:
                err = m.error()
                key = self._key(m.partition() or 0)
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        self._eof[key] = True
                        self._high[key] = int(m.offset() or 0)
                        continue
                    raise RuntimeError(f"kafka: {err}")
                self._eof[key] = False
                off = int(m.offset() or 0)
                ch = chunks.setdefault(key, Chunk(key))
                ch.records.append((off, m.value() or b""))
                ch.end = off + 1
                self._pos[key] = off + 1
                n += 1
            if time.monotonic() >= deadline:
                break
        return list(chunks.values())

    def positions(self) -> dict[str, int]:
        return dict(self._pos)

    def lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for tp in self._consumer.assignment():
            key = self._key(tp.partition)
            try:
                _, high = self._consumer.get_watermark_offsets(tp, timeout=1.0, cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            out[key] = max(0, int(high) - self._pos.get(key, 0))
        return out

    def caught_up(self) -> bool:
        """Every partition assigned here is read to its end.

        A drain (``own_all``, the default: one stream per group) also waits
        until the group has assigned it every partition of the topic.
        """
        assigned = {self._key(tp.partition) for tp in self._consumer.assignment()}
        if not assigned or (self.own_all and set(self._all) - assigned):
            return False
        return all(self._eof.get(k, False) for k in assigned)

    def partitions(self) -> list[str]:
        if self.own_all:
            return list(self._all)
        return sorted(self._key(tp.partition) for tp in self._consumer.assignment())

    def at_end(self, partition: str) -> bool:
        return self._eof.get(partition, False)

    def commit(self, positions: dict[str, int]) -> None:
        commit_offsets(self._consumer, self.topic, positions)

    def close(self) -> None:
        self._consumer.close()


@dataclass
class _Followed:
    key: str
    path: Path
    fh: Any
    ino: int
    pos: int
    prefix: bytes = b""
    #: the file's first bytes when read: different bytes there mean it was truncated
    head: bytes = b""


class FollowSource:
    """Follow a growing log file, or every log file in a directory, like ``tail -F``.

    A file is identified by its device and inode (partition ``file:<dev>:<ino>``),
    so a rotated file is read to its end under its new name while the new file
    at the old name starts at 0, and a truncated file (size below the position)
    is read again from its start.  Only complete lines are handed out.  A Zeek
    TSV header (``#`` lines at the start) is kept and given to the adapter with
    every chunk.
    """

    def __init__(self, path: Path, pattern: str = "*") -> None:
        self.name = f"follow:{path}"
        self.root = path
        self.pattern = pattern
        self._files: dict[str, _Followed] = {}
        self._seek_to: dict[str, int] = {}
        self._idle = False

    def _paths(self) -> Iterator[Path]:
        if self.root.is_dir():
            yield from sorted(p for p in self.root.glob(self.pattern) if p.is_file())
        elif self.root.exists():
            yield self.root

    def _open(self) -> None:
        for p in self._paths():
            try:
                st = p.stat()
            except OSError:
                continue
            key = f"file:{st.st_dev}:{st.st_ino}"
            f = self._files.get(key)
            if f is not None:
                f.path = p
                continue
            try:
                fh = open(p, "rb")  # noqa: SIM115 - kept open while followed
            except OSError:
                continue
            self._files[key] = _Followed(key, p, fh, st.st_ino, self._seek_to.get(key, 0))

    def seek(self, positions: dict[str, int]) -> None:
        self._seek_to = {k: int(v) for k, v in positions.items() if k.startswith("file:")}
        for k, f in self._files.items():
            if k in self._seek_to:
                f.pos = self._seek_to[k]

    def poll(self, max_records: int, timeout: float) -> list[Chunk]:
        deadline = time.monotonic() + timeout
        while True:
            self._open()
            out = self._read(max_bytes=max(1, max_records) * 256)
            if out or time.monotonic() >= deadline:
                self._idle = not out
                return out
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _read(self, max_bytes: int) -> list[Chunk]:
        out: list[Chunk] = []
        for key, f in list(self._files.items()):
            try:
                size = os.fstat(f.fh.fileno()).st_size
            except OSError:
                continue
            if f.pos == 0 and size and _compressed(f.fh):
                # a rotated, compressed log is complete: read it whole, once
                out.append(_whole(key, f, size))
                continue
            if f.pos and f.head:
                f.fh.seek(0)
                if f.fh.read(len(f.head)) != f.head:
                    size = min(size, f.pos - 1)  # rewritten in place: a truncation
            if size < f.pos:  # truncated in place: read it again from the start
                f.pos = 0
                f.prefix = b""
                f.head = b""
                size = os.fstat(f.fh.fileno()).st_size
            if size == f.pos:
                continue
            if f.pos == 0 or not f.prefix:
                f.prefix = _header(f.fh)
            f.fh.seek(f.pos)
            data = f.fh.read(min(size - f.pos, max_bytes))
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                continue  # no complete line yet
            data = data[:cut]
            start = f.pos
            if start == 0:
                f.head = data[:64]
            f.pos += cut
            body = data
            if start == 0 and f.prefix and data.startswith(f.prefix):
                body = data[len(f.prefix) :]
                start = len(f.prefix)
            out.append(Chunk(key, [(start, body)], f.pos, f.prefix))
        # files gone from their path and read to their end are done with
        for key, f in list(self._files.items()):
            if not f.path.exists() or _ino(f.path) != f.ino:
                try:
                    if os.fstat(f.fh.fileno()).st_size <= f.pos:
                        f.fh.close()
                        del self._files[key]
                except OSError:
                    del self._files[key]
        return out

    def positions(self) -> dict[str, int]:
        return {**self._seek_to, **{k: f.pos for k, f in self._files.items()}}

    def lag(self) -> dict[str, int]:
        out = {}
        for k, f in self._files.items():
            try:
                out[k] = max(0, os.fstat(f.fh.fileno()).st_size - f.pos)
            except OSError:
                continue
        return out

    def caught_up(self) -> bool:
        return self._idle and not any(self.lag().values())

    def partitions(self) -> list[str]:
        return sorted(self._files)

    def at_end(self, partition: str) -> bool:
        return self.lag().get(partition, 0) == 0

    def commit(self, positions: dict[str, int]) -> None:
        """Files have no broker to acknowledge to: the checkpoint is the commit."""

    def close(self) -> None:
        for f in self._files.values():
            f.fh.close()
        self._files.clear()


_MAGICS = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")


def _compressed(fh: Any) -> bool:
    fh.seek(0)
    head = fh.read(6)
    return any(head.startswith(m) for m in _MAGICS)


def _whole(key: str, f: _Followed, size: int) -> Chunk:
    """A compressed file, decompressed, as one chunk (position: its compressed size)."""
    import bz2
    import gzip
    import lzma

    f.fh.seek(0)
    raw = f.fh.read(size)
    try:
        if raw.startswith(b"\x1f\x8b"):
            data = gzip.decompress(raw)
        elif raw.startswith(b"BZh"):
            data = bz2.decompress(raw)
        else:
            data = lzma.decompress(raw)
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        f.pos = size
        return Chunk(key, [], size, rejects={f"bad_archive: {type(exc).__name__}": 1})
    f.pos = size
    bio = io.BytesIO(data)
    f.prefix = _header(bio)
    body = data[len(f.prefix) :]
    return Chunk(key, [(0, body)], size, f.prefix)


def _ino(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return -1


def _header(fh: Any) -> bytes:
    """The leading ``#`` lines of a Zeek TSV log (empty for other formats)."""
    fh.seek(0)
    head = fh.read(64 * 1024)
    if not head.startswith(b"#"):
        return b""
    end = 0
    for line in head.splitlines(keepends=True):
        if not line.startswith(b"#") or not line.endswith(b"\n"):
            break
        if line.startswith(b"#close"):
            break
        end += len(line)
    return head[:end]


def commit_offsets(consumer: Any, topic: str, positions: dict[str, int]) -> None:
    """Commit ``positions`` (``"TOPIC/PARTITION" -> next offset``) of ``topic`` to the
    consumer's group, synchronously; positions of other topics are ignored."""
    from confluent_kafka import TopicPartition

    tps = [
        TopicPartition(topic, int(k.rsplit("/", 1)[1]), int(v))
        for k, v in positions.items()
        if k.startswith(topic + "/")
    ]
    if tps:
        consumer.commit(offsets=tps, asynchronous=False)
