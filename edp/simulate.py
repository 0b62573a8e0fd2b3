"""`edp simulate`: play an event stream through the real store and print what would be published.

The input is streamed: JSON lines, one JSON array (spread over any lines), or JSON objects
pretty-printed over several lines, in any mix; only the messages of the current chunk and the
store's open state are held, never the whole file.
"""

from __future__ import annotations

import codecs
import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from edp.core import Emission
from edp.counters import ACCEPTED, DUPLICATE, STALE, by_reason
from edp.emitter import Emitter
from edp.errors import BadEventError
from edp.events import Parsed, parse_message
from edp.publisher import eventbridge_json

CHUNK_EVENTS = 1000  # events per store transaction; chunking does not change the output
DEFAULT_STORE = "memory://"  # without --db: the run's own store, gone when it ends
# Dedupe state past its window is purged (as `edp run`'s sweeps do) whenever the simulated clock
# has moved on by this fraction of the window since the last purge: the store then remembers
# about one window of events (two at most: a chunk may span almost one), however long the stream.
PURGES_PER_WINDOW = 8
FAR_FUTURE = datetime.max.replace(tzinfo=UTC)  # "after the last event": every batch falls due
READ_SIZE = 1 << 16  # bytes read at a time from a JSON array
# A message pretty-printed over several lines is looked for over at most this many lines; past
# that its first line is reported as not JSON (a JSON lines file cannot swallow its next lines).
MAX_MESSAGE_LINES = 10_000

Message = tuple[int, Any]  # (line number, decoded JSON, or a BadEventError: what was wrong with it)


# --- reading ----------------------------------------------------------------------------------
def read_messages(source: str | IO[bytes]) -> Iterator[Message]:
    """(line number, decoded message) pairs, streamed: JSON lines, JSON arrays, pretty-printed JSON.

    A message that cannot be read (not UTF-8, not JSON) comes as a BadEventError, so the caller
    reports it with its line number and goes on.
    """
    stream = (
        io.BytesIO(source.encode("utf-8", "surrogatepass")) if isinstance(source, str) else source
    )
    lines = _numbered_lines(stream)
    for number, line in lines:
        if not line.strip():
            continue
        if line.lstrip()[:1] == b"[" and _opens_array(line):
            # An array spread over lines: read item by item. (An array on one line is a message of
            # its own, as in JSON lines, and a line that is not JSON is reported alone.)
            yield from _array(number, line, stream)
        else:
            yield from _json_lines(number, line, lines)
        return


def _opens_array(line: bytes) -> bool:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _loads(text) is _INCOMPLETE


def _numbered_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    return enumerate(stream, start=1)


def _decode(number: int, line: bytes) -> str | BadEventError:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as err:
        return BadEventError(
            f"not UTF-8 text (byte 0x{line[err.start]:02x} at column {err.start + 1})"
        )


def _loads(text: str) -> Any:
    """The JSON value of ``text``; _INCOMPLETE when it stops short (it may go on on the next
    lines); a BadEventError naming what is wrong otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()) and text.lstrip()[:1] in ("{", "["):
            return _INCOMPLETE
        return _not_json(text)
    except (RecursionError, ValueError):
        return _not_json(text)


def _not_json(text: str) -> BadEventError:
    """The parser's own one-line reason for text that is not a JSON message."""
    try:
        parse_message(text)
    except BadEventError as err:
        return err
    return BadEventError("message: not JSON")


_INCOMPLETE = object()
_DECODER = json.JSONDecoder()
_DECODE = _DECODER.decode  # json.loads with its default decoder, minus the checks
# What decode() runs, without its Python layers: the C scanner, (value, end) of the JSON value
# starting at index 0 (StopIteration when none does; it clears its key memo after every call).
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_LINE_ENDS = frozenset(("\n", "", "\r\n"))  # what may follow the value: decode()'s result then
# Lines the scanner reads alone: nested at most half as deep as they are long, far below the
# recursion limit, so that decode()'s two Python frames fewer cannot change a line's fate (a longer
# line, nested just deep enough to fail inside decode(), would not fail without it).
_SCAN_BYTES = 1600


def _json_lines(number: int, line: bytes, rest: Iterator[tuple[int, bytes]]) -> Iterator[Message]:
    """One message per line; a line that opens an object closed on a later line is joined to them."""
    source: Iterator[tuple[int, bytes]] = itertools.chain([(number, line)], rest)
    while True:
        for number, line in source:
            # The common case first: one whole message on the line, read as json.loads reads it.
            # The scanner alone when the value starts the line and only its end follows (what
            # decode() would return); decode() itself for anything else after the value.
            try:
                whole = line.decode()
                if len(line) < _SCAN_BYTES:
                    value, end = _SCAN(whole, 0)
                    if whole[end:] not in _LINE_ENDS:
                        value = _DECODE(whole)
                else:
                    value = _DECODE(whole)
            except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
                pass  # the cases below say what it is (blank, broken, or spread over lines)
            else:
                yield number, value
                continue
            if not line.strip():
                continue
            text = _decode(number, line)
            if isinstance(text, BadEventError):
                yield number, text
                continue
            value = _loads(text)
            if value is not _INCOMPLETE:
                yield number, value
                continue
            # Perhaps one pretty-printed message: join the next lines until it parses.
            taken: list[tuple[int, bytes]] = []
            parts = [text]
            for more in source:
                taken.append(more)
                piece = _decode(*more)
                if isinstance(piece, BadEventError) or len(taken) > MAX_MESSAGE_LINES:
                    break
                parts.append(piece)
                if not piece.strip():
                    continue
                value = _loads("".join(parts))
                if value is not _INCOMPLETE:
                    break
            if value is not _INCOMPLETE and not isinstance(value, BadEventError):
                yield number, value
                continue
            # Not one message after all: report the first line, read the others on their own.
            yield number, _not_json(text)
            source = itertools.chain(taken, source)
            break
        else:
            return


def _array(number: int, first: bytes, stream: IO[bytes]) -> Iterator[Message]:
    """The items of JSON arrays (one, or several in a row), each with the line it starts on.

    Read a block at a time, so a large array is never held whole.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    buffer = ""
    pos = 0
    line = number
    at_end = False

    def more(block: bytes | None = None) -> bool:
        nonlocal buffer, pos, at_end
        if at_end:
            return False
        if block is None:
            block = stream.read(READ_SIZE)
        if not block:
            at_end = True
            buffer = buffer[pos:] + utf8.decode(b"", final=True)
            pos = 0
            return False
        buffer = buffer[pos:] + utf8.decode(block)
        pos = 0
        return True

    def skip_space() -> bool:
        """Move past whitespace, counting lines; False at the end of the input."""
        nonlocal pos, line
        while True:
            start = pos
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            line += buffer.count("\n", start, pos)
            if pos < len(buffer):
                return True
            if not more():
                return False

    try:
        more(first)
        while skip_space():
            if buffer[pos] != "[":
                break  # JSON lines after the array: read on line by line
            pos += 1
            expect_item = True
            while True:
                if not skip_space():
                    yield line, BadEventError("message: not JSON (the array is not closed)")
                    return
                if buffer[pos] == "]":
                    pos += 1
                    break
                if not expect_item:
                    if buffer[pos] != ",":
                        yield (
                            line,
                            BadEventError("message: not JSON (expected ',' or ']' in the array)"),
                        )
                        return
                    pos += 1
                    expect_item = True
                    continue
                while True:
                    try:
                        value, end = decoder.raw_decode(buffer, pos)
                    except json.JSONDecodeError as err:
                        if more():
                            continue
                        yield line, BadEventError(f"message: not JSON ({err.msg})")
                        return
                    except (RecursionError, ValueError):
                        yield line, _not_json(buffer[pos:])
                        return
                    # A number cut at the end of a block decodes too: make sure the item ended.
                    if not buffer[end:].strip() and more():
                        continue
                    break
                yield line, value
                line += buffer.count("\n", pos, end)
                pos = end
                expect_item = False
    except UnicodeDecodeError:
        yield line, BadEventError("not UTF-8 text")
        return
    if pos < len(buffer):
        # Undecoded bytes the decoder holds come after the buffer's text.
        head = buffer[pos:].encode("utf-8", "surrogatepass") + utf8.getstate()[0]
        lines = enumerate(_joined_lines(head, stream), start=line)
        first_number, first_line = next(lines)
        yield from _json_lines(first_number, first_line, lines)


def _joined_lines(head: bytes, stream: IO[bytes]) -> Iterator[bytes]:
    """The lines of ``head`` followed by the stream's (the last of head goes on in the stream)."""
    pieces = head.split(b"\n")
    for piece in pieces[:-1]:
        yield piece + b"\n"
    yield pieces[-1] + stream.readline()
    yield from stream


# --- playing --------------------------------------------------------------------------------
@dataclass
class Summary:
    """What a run did, for the one line printed on stderr at the end."""

    counters: Counter[str] = field(default_factory=Counter)
    emissions: int = 0
    rejected: int = 0

    def line(self) -> str:
        dropped = by_reason(self.counters)
        reasons = ", ".join(f"{reason} {n}" for reason, n in dropped.items())
        parts = [
            f"{self.counters[ACCEPTED]} events accepted",
            f"{sum(dropped.values())} dropped" + (f" ({reasons})" if reasons else ""),
            f"{self.counters[DUPLICATE]} duplicates",
            f"{self.counters[STALE]} stale",
            f"{self.emissions} emissions",
        ]
        if self.rejected:
            parts.append(f"{self.rejected} bad lines")
        return "edp simulate: " + ", ".join(parts)


def simulate(
    source: str | IO[bytes],
    emitter: Emitter,
    out: IO[str],
    err: IO[str],
    *,
    account: str = "000000000000",
    region: str | None = None,
) -> int:
    """Play ``source`` through ``emitter``; print emissions to ``out``, rejects and a summary to ``err``.

    Returns 1 when any message was rejected, else 0.
    """
    region = region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    summary = Summary()

    def emit(ordered: list[Emission]) -> None:
        for emission in ordered:
            rule = emitter.rule_name(emission.prefix)
            out.write(eventbridge_json(emission, account=account, region=region, rule=rule) + "\n")
        summary.emissions += len(ordered)

    window = emitter.rules.dedupe_window
    purge_every = window / PURGES_PER_WINDOW
    next_purge: datetime | None = None
    for chunk, clock in chunks(parsed_messages(source, emitter, summary, err), window):
        outcome, ordered = emitter.replay(chunk, until=clock)
        summary.counters.update(outcome.counters)
        emit(ordered)
        if clock is not None and (next_purge is None or clock >= next_purge):
            if next_purge is not None:
                emitter.purge(clock)
            next_purge = clock + purge_every
    # After the last event, every open batch is emitted when it falls due.
    emit(emitter.replay([], until=FAR_FUTURE)[1])
    out.flush()
    err.write(summary.line() + "\n")
    return 1 if summary.rejected else 0


def parsed_messages(
    source: str | IO[bytes], emitter: Emitter, summary: Summary, err: IO[str]
) -> Iterator[Parsed]:
    """The messages of ``source`` that are events (:meth:`Emitter.parse`); each one that is not
    is counted in ``summary`` and reported on ``err`` with its line number."""
    parse = emitter.parse
    for number, message in read_messages(source):
        try:
            if type(message) is not dict:
                if isinstance(message, BadEventError):
                    raise message
                if isinstance(message, str):  # a JSON string, not JSON text to read again
                    raise BadEventError("message: expected a JSON object, got str")
            parsed = parse(message)
        except BadEventError as error:
            summary.rejected += 1
            err.write(f"line {number}: {error}\n")
            continue
        yield parsed


def chunks(
    messages: Iterable[Parsed], window: timedelta
) -> Iterator[tuple[list[Parsed], datetime | None]]:
    """Messages in chunks of about CHUNK_EVENTS events, each spanning less than ``window``, with
    the latest event time of each chunk (None: no events).

    Within one store transaction the batches that the chunk closes keep their identities for the
    whole chunk; a chunk shorter than the dedupe window cannot outlive any of them.
    """
    pending: list[Parsed] = []
    pending_events = 0
    chunk_end: datetime | None = None  # the chunk's first event time + window
    latest: datetime | None = None
    for parsed in messages:
        found = parsed.events
        first: datetime | None
        last: datetime | None
        if len(found) == 1:
            first = last = found[0].event_time
        elif found:
            times = [e.event_time for e in found]
            first, last = min(times), max(times)
        else:
            first = last = None
        if chunk_end is not None and last is not None and last >= chunk_end:
            if pending:
                yield pending, latest
            pending, pending_events, chunk_end, latest = [], 0, None, None
        if chunk_end is None and first is not None:
            chunk_end = first + window
        if last is not None and (latest is None or last > latest):
            latest = last
        pending.append(parsed)
        pending_events += len(found) or 1  # a chunk of messages without events ends too
        if pending_events >= CHUNK_EVENTS:
            yield pending, latest
            pending, pending_events, chunk_end, latest = [], 0, None, None
    if pending:
        yield pending, latest
