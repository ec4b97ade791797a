"""Stream sources: a Kafka topic (consumer group, manual commits) or followed log files.

A source hands out :class:`Chunk` s: the raw records of one *partition* (a
Kafka partition, or one followed file) with their positions (Kafka offsets,
byte offsets), so the runner can drop what the lake already holds and
checkpoint exactly where it stopped.  Positions are "next to read": a
checkpoint of ``{"p0": 10}`` means records 0..9 are in.
"""

from __future__ import annotations

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

    def after(self, pos: int) -> Chunk:
        """The part of this chunk at or after position ``pos`` (records cut at ``pos``)."""
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
    ) -> None:
        from confluent_kafka import Consumer

        self.name = f"kafka:{topic}"
        self.topic = topic
        conf: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
        conf.update(config or {})
        self._seek_to: dict[str, int] = {}
        self._pos: dict[str, int] = {}
        self._eof: dict[str, bool] = {}
        self._high: dict[str, int] = {}
        self._consumer = Consumer(conf)
        self._consumer.subscribe([topic], on_assign=self._on_assign)

    def _key(self, partition: int) -> str:
        return f"{self.topic}/{partition}"

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            key = self._key(tp.partition)
            if key in self._seek_to:
                tp.offset = self._seek_to[key]
            self._eof.setdefault(key, False)
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
        assigned = [self._key(tp.partition) for tp in self._consumer.assignment()]
        return bool(assigned) and all(self._eof.get(k, False) for k in assigned)

    def commit(self, positions: dict[str, int]) -> None:
        from confluent_kafka import TopicPartition

        tps = [
            TopicPartition(self.topic, int(k.rsplit("/", 1)[1]), int(v))
            for k, v in positions.items()
            if k.startswith(self.topic + "/")
        ]
        if tps:
            self._consumer.commit(offsets=tps, asynchronous=False)

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
            if size < f.pos:  # truncated in place: read it again from the start
                f.pos = 0
                f.prefix = b""
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

    def commit(self, positions: dict[str, int]) -> None:
        """Files have no broker to acknowledge to: the checkpoint is the commit."""

    def close(self) -> None:
        for f in self._files.values():
            f.fh.close()
        self._files.clear()


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
