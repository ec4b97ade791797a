"""``dnsieve stream`` (live detection) and ``dnsieve replay`` (publish logs to Kafka).

Both are thin over the library: :class:`dnsieve.stream.StreamRunner` and
:func:`dnsieve.ingest.kafka.replay`.  See docs/streaming.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dnsieve.commands.console import ConfigOpt, console, err_console, fail, settings_or_exit

__all__ = ["register", "source_from_options", "spark_source_from_options"]


def source_from_options(
    kafka: str | None, topic: str | None, group: str, follow: Path | None, pattern: str
) -> Any:
    """The stream source the options name (exactly one of ``--kafka`` and ``--follow``)."""
    from dnsieve.stream import FollowSource, KafkaSource

    if (kafka is None) == (follow is None):
        raise fail("give either --kafka HOST:PORT --topic T or --follow PATH", 2)
    if kafka is not None:
        if not topic:
            raise fail("--kafka needs --topic", 2)
        try:
            return KafkaSource(kafka, topic, group)
        except ImportError:
            raise fail("Kafka needs confluent-kafka: pip install 'dnsieve[kafka]'", 2) from None
        except Exception as exc:
            raise fail(f"kafka {kafka}: {exc}", 2) from None
    assert follow is not None
    if not follow.exists():
        raise fail(f"no such file or directory: {follow}", 2)
    return FollowSource(follow, pattern)


def spark_source_from_options(
    kafka: str | None,
    topic: str | None,
    group: str,
    follow: Path | None,
    pattern: str,
    connector: str = "python",
) -> Any:
    """The Spark stream's view of the source the options name (see :mod:`dnsieve.stream.spark`)."""
    if (kafka is None) == (follow is None):
        raise fail("give either --kafka HOST:PORT --topic T or --follow PATH", 2)
    try:
        from dnsieve.engines.spark import require_pyspark

        require_pyspark()
        from dnsieve.stream.spark import SparkFileView, SparkKafkaView
    except ImportError:
        raise fail("the spark engine needs: pip install 'dnsieve[spark]'", 2) from None
    except Exception as exc:  # EngineUnavailableError: the install hint
        raise fail(str(exc), 2) from None
    if kafka is not None:
        if not topic:
            raise fail("--kafka needs --topic", 2)
        try:
            return SparkKafkaView(kafka, topic, group, connector=connector)
        except ImportError:
            raise fail("Kafka needs confluent-kafka: pip install 'dnsieve[kafka]'", 2) from None
        except Exception as exc:
            raise fail(f"kafka {kafka}: {exc}", 2) from None
    assert follow is not None
    if not follow.exists():
        raise fail(f"no such file or directory: {follow}", 2)
    try:
        return SparkFileView(follow, pattern)
    except ValueError as exc:
        raise fail(str(exc), 2) from None


def register(app: typer.Typer) -> None:
    """Add ``dnsieve stream`` and ``dnsieve replay`` to the CLI."""

    @app.command()
    def stream(
        kafka: Annotated[
            str | None, typer.Option("--kafka", help="bootstrap servers HOST:PORT[,...]")
        ] = None,
        topic: Annotated[str | None, typer.Option("--topic", help="Kafka topic")] = None,
        group: Annotated[str, typer.Option("--group", help="Kafka consumer group")] = "dnsieve",
        follow: Annotated[
            Path | None,
            typer.Option("--follow", help="a growing log file, or a directory of rotating logs"),
        ] = None,
        pattern: Annotated[
            str, typer.Option("--pattern", help="file names to follow in a --follow directory")
        ] = "*",
        checkpoint: Annotated[
            Path, typer.Option("--checkpoint", help="state and offsets directory")
        ] = Path("dnsieve-stream"),
        lake_dir: Annotated[
            Path | None, typer.Option("--lake", help="lake directory (default: settings lake.path)")
        ] = None,
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="record format (default: auto)")
        ] = "",
        db: Annotated[
            str | None,
            typer.Option(
                "--db", help="alert store URL (default: $DNSIEVE_DB or the user data dir)"
            ),
        ] = None,
        stop_when_idle: Annotated[
            float | None,
            typer.Option(
                "--stop-when-idle",
                min=0.0,
                help="drain: score every window the data closes and exit after this many idle seconds",
            ),
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="print the final status as JSON")
        ] = False,
        engine: Annotated[
            str,
            typer.Option(
                "--engine",
                help="polars (embedded) or spark (a Structured Streaming query; see docs/streaming.md)",
            ),
        ] = "polars",
        spark_kafka: Annotated[
            str,
            typer.Option(
                "--spark-kafka",
                help="with --engine spark: python (no JARs) or native (spark-sql-kafka-0-10)",
            ),
        ] = "python",
        config: ConfigOpt = None,
    ) -> None:
        """Detect continuously: read Kafka or growing logs, score windows as they close, store alerts."""
        from dnsieve.ingest.sniff import FORMATS
        from dnsieve.lake import Lake
        from dnsieve.stream import StreamRunner

        settings = settings_or_exit(config)
        if engine not in ("polars", "spark"):
            raise fail(f"unknown engine {engine!r}; choose polars or spark", 2)
        fmt = fmt or settings.ingest.format
        if fmt != "auto" and fmt not in FORMATS:
            raise fail(f"unknown format {fmt!r}; choose auto or one of {', '.join(FORMATS)}", 2)
        if spark_kafka not in ("python", "native"):
            raise fail(f"unknown --spark-kafka {spark_kafka!r}; choose python or native", 2)
        if engine == "spark":
            src = spark_source_from_options(kafka, topic, group, follow, pattern, spark_kafka)
        else:
            src = source_from_options(kafka, topic, group, follow, pattern)
        lake = Lake.from_settings(settings, lake_dir)
        tty = sys.stderr.isatty() and not as_json

        def show(s: Any) -> None:
            if tty:
                err_console.print(escape(s.line()), end="\r")
            else:
                err_console.print(escape(s.line()))

        kwargs: dict[str, Any] = {
            "fmt": fmt,
            "store_url": db or True,
            "stop_when_idle": stop_when_idle,
            "on_status": None if as_json else show,
        }
        try:
            if engine == "spark":
                from dnsieve.stream.spark import SparkStreamRunner

                status = SparkStreamRunner(src, lake, checkpoint, settings, **kwargs).run()
            else:
                status = StreamRunner(src, lake, checkpoint, settings, **kwargs).run()
        except RuntimeError as exc:
            raise fail(str(exc)) from None
        finally:
            src.close()
        if as_json:
            typer.echo(json.dumps(status.to_dict(), indent=2, sort_keys=True))
        else:
            console.print(f"stream {escape(status.state)}: {escape(status.line())}")

    @app.command()
    def replay(
        paths: Annotated[list[Path], typer.Argument(help="logs to publish (any ingest format)")],
        kafka: Annotated[str, typer.Option("--kafka", help="bootstrap servers HOST:PORT[,...]")],
        topic: Annotated[str, typer.Option("--topic", help="Kafka topic")],
        fmt: Annotated[
            str, typer.Option("--format", "-f", help="input format (default: auto)")
        ] = "auto",
        rate: Annotated[
            float | None, typer.Option("--rate", min=1.0, help="events per second (at most)")
        ] = None,
        speedup: Annotated[
            float | None,
            typer.Option("--speedup", min=0.001, help="play the log this many times faster"),
        ] = None,
    ) -> None:
        """Publish logs to a Kafka topic as zeek-kafka JSON, in their own time order."""
        from dnsieve.ingest.kafka import replay as do_replay

        missing = [p for p in paths if not p.exists()]
        if missing:
            raise fail(f"no such file or directory: {missing[0]}", 2)
        try:
            rep = do_replay(paths, kafka, topic, fmt=fmt, rate=rate, speedup=speedup)
        except ImportError:
            raise fail("Kafka needs confluent-kafka: pip install 'dnsieve[kafka]'", 2) from None
        except Exception as exc:
            raise fail(f"kafka {kafka}: {exc}") from None
        rej = sum(rep.rejects.values())
        console.print(
            f"published {rep.events:,} events to {escape(topic)} in {rep.seconds:.1f} s "
            f"({rep.rate:,.0f}/s)" + (f", {rej:,} records rejected" if rej else "")
        )
