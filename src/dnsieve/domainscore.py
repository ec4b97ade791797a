"""Score a list of domain names offline: what ``dnsieve domains score`` writes.

:func:`read_domain_lines` reads one name per line from any byte stream
(escaping junk, skipping what is not a DNS name, never holding an over-long
line whole); :func:`score_table` gives each name its registered domain, its
DGA probability with the lexical features behind it, and its nearest
look-alike brand.
"""

from __future__ import annotations

import re
from typing import BinaryIO

import polars as pl

from dnsieve.domains import escape_name
from dnsieve.ingest.base import is_name_too_long

__all__ = ["read_domain_lines", "score_table"]


_MAX_LINE = 64 * 1024
_BLOCK = 1 << 20
# Anything but printable ASCII and newlines: spaces, tabs, CR, controls, bytes >= 0x80.
_NOT_PLAIN_LINES = re.compile(rb"[^\x21-\x7e\n]")


def read_domain_lines(stream: BinaryIO) -> tuple[list[str], int]:
    """Names from a one-domain-per-line byte stream, and the count of skipped lines.

    Blank lines and ``#`` comments are skipped; the first whitespace-separated
    field is the name; bytes outside printable ASCII are escaped (``\\xNN``),
    so junk is scored as the string it is instead of crashing.  Names past the
    protocol's limits (over 253 bytes, or a label over 63) are skipped (not a DNS
    name), and so are lines of 64 KiB or more, which are never read into memory
    whole: the stream is read in blocks of 1 MiB, and a line still open past
    64 KiB is dropped up to its newline.
    """
    names: list[str] = []
    skipped = 0
    pending = b""  # the start of a line that continues in the next block
    dropping = False  # inside an over-long line: discard up to its newline
    while True:
        block = stream.read(_BLOCK)
        if not block:
            break
        lines = block.split(b"\n")
        rest = lines.pop()  # after the block's last newline (the next line's start)
        if lines:
            if dropping:
                lines.pop(0)  # the over-long line's end
                dropping = False
            else:
                lines[0] = pending + lines[0]
            pending = b""
            skipped += _read_lines(lines, names)
        if not dropping:
            pending += rest
            if len(pending) > _MAX_LINE:
                skipped += 1
                pending, dropping = b"", True
    if pending and not dropping:  # a last line without a newline
        skipped += _read_lines([pending], names, terminated=False)
    return names, skipped


def _read_lines(lines: list[bytes], names: list[str], terminated: bool = True) -> int:
    """Append the names of whole lines (without their newline) to ``names``; the count skipped."""
    skipped = 0
    text = b"\n".join(lines)
    if _NOT_PLAIN_LINES.search(text) is None:
        # Every line is one field of printable ASCII (nearly every file): escape_name's
        # result is the lower-cased text, so the block converts at once.
        for name in text.decode("ascii").lower().split("\n"):
            if not name:
                continue
            if len(name) + terminated > _MAX_LINE:  # as long as a line read whole would be
                skipped += 1
                continue
            if name[0] == "#":
                continue
            if len(name) > 253 * 4:
                skipped += 1
                continue
            if len(name) > 1 and name[-1] == ".":
                name = name[:-1]
            # Escapes only shorten a name: 63 characters or fewer are within every limit.
            if name == "." or (len(name) > 63 and is_name_too_long(name)):
                skipped += 1
                continue
            names.append(name)
        return skipped
    for raw in lines:
        if len(raw) + terminated > _MAX_LINE:  # as long as a line read whole would be
            skipped += 1
            continue
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        field = line.split(None, 1)[0]
        if len(field) > 253 * 4:
            skipped += 1
            continue
        name = escape_name(field)
        if not name or name == "." or (len(name) > 63 and is_name_too_long(name)):
            skipped += 1
            continue
        names.append(name)
    return skipped


def score_table(names: list[str]) -> pl.DataFrame:
    """The output table: domain, registered_domain, dga_probability, features, look-alike."""
    from dnsieve.detectors.dga import private_registered_domains, registered_labels, score_names
    from dnsieve.detectors.lookalike import match_names

    s = pl.Series("domain", names, dtype=pl.String)
    # One ICANN split serves all three: the DGA label, the look-alike label and
    # (where no private PSL rule applies, i.e. almost always) the registered domain.
    icann = registered_labels(s)
    scored = score_names(s, labels=icann)
    look = match_names(s, labels=icann)
    table = pl.concat(
        [
            s.to_frame(),
            private_registered_domains(s, icann).to_frame(),
            scored.select(
                pl.col("label").alias("scored_label"), pl.col("dga_probability").round(6)
            ),
            scored.drop("icann_domain", "label", "dga_probability"),
            look.select("lookalike_brand", "lookalike_method", "lookalike_distance"),
        ],
        how="horizontal",
    )
    return table.with_columns(pl.col(pl.Float64).round(6))
