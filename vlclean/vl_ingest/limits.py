"""Hard bounds on what an export may make us hold or do, enforced while reading (linear time, bounded memory).

A Visual Layer export is untrusted input: a 60 kB JSON file nested 30,000 deep, a 300 MB caption in a
300 kB ZIP or a ZIP bomb must fail fast with an error naming the file, the item and the limit, not
exhaust memory or run for minutes. :class:`IngestLimits` holds the bounds (params
``ingest_vl.limits``); :class:`JsonGuard` enforces the JSON ones on the raw bytes *before* the parser
sees them (the C parser's own costs grow with the square of a string's length and of the nesting
depth, so a limit checked after parsing would come too late).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from vlclean.errors import ExportFormatError

_OPEN = (ord("["), ord("{"))
_CLOSE = (ord("]"), ord("}"))


class LimitExceededError(ExportFormatError):
    """An export passes one of :class:`IngestLimits` (names the file, the item and the limit)."""


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on one export file (params ``ingest_vl.limits``; defaults fit ImageNet-21k-sized exports).

    ``max_depth``           nesting of JSON objects and lists (a VL media item is about 8 deep)
    ``max_string_bytes``    one JSON string (UTF-8 bytes as written, escapes included), CSV cell or parquet
                            string (also inside lists, structs and maps)
    ``max_item_bytes``      one element of a top-level JSON list (one media item), as written
    ``max_items``           media items (JSON) or rows (parquet, CSV) in one export file
    ``max_extract_bytes``   bytes decompressed from one ZIP (metadata, and images when extracted)
    ``max_compression_ratio``  uncompressed / compressed size of one ZIP member (a bomb is 1000x or more)
    """

    max_depth: int = 64
    max_string_bytes: int = 2**20
    max_item_bytes: int = 16 * 2**20
    max_items: int = 50_000_000
    max_extract_bytes: int = 256 * 2**30
    max_compression_ratio: float = 1000.0

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_string_bytes", "max_item_bytes", "max_items", "max_extract_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        ratio = self.max_compression_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 1.0 <= ratio < float("inf"):
            raise ValueError(f"max_compression_ratio must be a finite number >= 1, got {ratio!r}")


class JsonGuard:
    """A binary reader that checks the JSON it passes on against the limits, chunk by chunk, in linear time.

    Tracks, across chunks, whether the position is inside a string (quotes escaped by an odd run of
    backslashes do not count), the nesting depth, the length of the open string and of the open element
    of a top-level list (elements are counted, so errors name ``media_items[i]``). Raises
    :class:`LimitExceededError` before handing over the chunk that passes a limit. Malformed JSON is
    left to the parser to report.

    A chunk never ends inside a string: the guard reads on until the string closes (at most
    ``max_string_bytes`` more). yajl re-lexes a token that spans chunks from its start each time more
    bytes arrive, which made parsing quadratic in a string's length; handed whole, every string is
    lexed once, so parsing time is linear in the input size.
    """

    def __init__(self, fh: IO[bytes], display: str, limits: IngestLimits, on_read: Any = None) -> None:
        self.fh, self.display, self.limits, self.on_read = fh, display, limits, on_read
        self.pos = 0
        self._in_string = False
        self._backslashes = 0  # length of the run of backslashes that ended the previous chunk
        self._string_start = 0
        self._depth = 0
        self._list_at_2 = False  # the container at depth 2 is a list (its elements are media items)
        self._item = -1
        self._item_start = -1  # offset where the open element (a container at depth 3) began; -1: none

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson probes with read(0) whether the stream gives bytes
            return self.fh.read(0)
        size = n if n > 0 else 2**20
        chunks = [self.fh.read(size)]
        self._take(chunks[-1])
        while self._in_string and chunks[-1]:  # never end a chunk inside a string: see the class doc
            chunks.append(self.fh.read(size))
            self._take(chunks[-1])
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _take(self, data: bytes) -> None:
        if data:
            self._scan(data)
            self.pos += len(data)
            if self.on_read is not None:
                self.on_read(len(data))

    def _fail(self, what: str, at: int) -> LimitExceededError:
        item = f"media_items[{self._item}]" if self._item >= 0 else "top level"
        return LimitExceededError(f"{self.display}: {item} (byte {at}): {what}")

    def _scan(self, data: bytes) -> None:
        arr = np.frombuffer(data, dtype=np.uint8)
        base, n = self.pos, len(arr)
        quotes = np.flatnonzero(arr == 34)
        slashes = arr == 92
        if quotes.size:
            if slashes.any():  # a quote preceded by an odd run of backslashes is escaped
                last_other = np.maximum.accumulate(np.where(slashes, -1, np.arange(n)))
                before = quotes - 1
                prev = np.where(before >= 0, last_other[np.maximum(before, 0)], -1)
                run = np.where(before >= 0, before - prev, 0)
                run = np.where(prev == -1, quotes + self._backslashes, run)
                quotes = quotes[run % 2 == 0]
            elif self._backslashes % 2:
                quotes = quotes[quotes != 0]
        if slashes[-1]:
            last = np.flatnonzero(~slashes)
            self._backslashes = n - 1 - last[-1] if last.size else self._backslashes + n
        else:
            self._backslashes = 0
        started_in_string = self._in_string
        self._check_strings(quotes, base, n)
        self._check_structure(arr, quotes, base, started_in_string)

    def _check_strings(self, quotes: np.ndarray, base: int, n: int) -> None:
        limit = self.limits.max_string_bytes
        in_string = self._in_string
        opens = quotes[1::2] if in_string else quotes[0::2]
        closes = quotes[0::2] if in_string else quotes[1::2]
        starts = base + opens + 1
        if in_string:
            starts = np.concatenate([[self._string_start], starts])
        ends = base + closes
        done = min(len(starts), len(ends))
        lengths = ends[:done] - starts[:done]
        if lengths.size and lengths.max() > limit:
            at = int(starts[:done][np.argmax(lengths > limit)])
            raise self._fail(f"a string longer than {limit} bytes (limit ingest_vl.limits.max_string_bytes)", at)
        self._in_string = len(starts) > len(ends)
        if self._in_string:
            self._string_start = int(starts[-1])
            if base + n - self._string_start > limit:
                raise self._fail(f"a string longer than {limit} bytes (limit ingest_vl.limits.max_string_bytes)",
                                 self._string_start)

    def _check_structure(self, arr: np.ndarray, quotes: np.ndarray, base: int, started_in_string: bool) -> None:
        brackets = np.flatnonzero((arr == _OPEN[0]) | (arr == _OPEN[1]) | (arr == _CLOSE[0]) | (arr == _CLOSE[1]))
        if not brackets.size:
            return self._check_open_item(base + len(arr))
        inside = (np.searchsorted(quotes, brackets) % 2 == 1) != started_in_string
        brackets = brackets[~inside]
        if not brackets.size:
            return self._check_open_item(base + len(arr))
        chars = arr[brackets]
        opening = (chars == _OPEN[0]) | (chars == _OPEN[1])
        depth = self._depth + np.cumsum(np.where(opening, 1, -1))
        too_deep = int(np.argmax(depth > self.limits.max_depth)) if depth.max() > self.limits.max_depth else -1
        fail_at = base + int(brackets[too_deep]) if too_deep >= 0 else -1
        stop = too_deep if too_deep >= 0 else len(depth)  # count items up to a failure, so it names the right one
        opening, depth, chars, brackets = opening[:stop], depth[:stop], chars[:stop], brackets[:stop]
        if (opening & (depth == 2)).any():  # a top-level list or object starts (once or twice per file)
            for k in np.flatnonzero((opening & (depth <= 3)) | (~opening & (depth == 2))):
                self._item_event(bool(opening[k]), int(depth[k]), chars[k] == _OPEN[0], base + int(brackets[k]))
        elif self._list_at_2:
            self._items(base + brackets[opening & (depth == 3)], base + brackets[~opening & (depth == 2)])
        self._depth = int(depth[-1]) if len(depth) else self._depth
        if too_deep >= 0:
            raise self._fail(f"nesting deeper than {self.limits.max_depth} levels (limit ingest_vl.limits.max_depth)",
                             fail_at)
        self._check_open_item(base + len(arr))

    def _item_event(self, opening: bool, depth: int, is_list: bool, offset: int) -> None:
        if opening and depth == 2:
            self._list_at_2, self._item = is_list, -1
        elif opening and depth == 3 and self._list_at_2:
            self._item += 1
            self._item_start = offset
        elif not opening and depth == 2 and self._item_start >= 0:
            self._check_item(offset + 1)
            self._item_start = -1

    def _items(self, starts: np.ndarray, ends: np.ndarray) -> None:
        """Elements of the top-level list opened at ``starts`` and closed at ``ends`` (they alternate)."""
        if self._item_start >= 0:
            starts = np.concatenate([[self._item_start], starts])
            self._item -= 1  # the carried start was counted in an earlier chunk
        done = len(ends)
        sizes = ends + 1 - starts[:done]
        if done and sizes.max() > self.limits.max_item_bytes:
            k = int(np.argmax(sizes > self.limits.max_item_bytes))
            self._item += k + 1
            self._item_start = int(starts[k])
            self._check_item(int(ends[k]) + 1)
        self._item += len(starts)
        self._item_start = int(starts[-1]) if len(starts) > done else -1

    def _check_open_item(self, end: int) -> None:
        if self._item_start >= 0:
            self._check_item(end)

    def _check_item(self, end: int) -> None:
        limit = self.limits.max_item_bytes
        if end - self._item_start > limit:
            raise self._fail(f"a media item larger than {limit} bytes (limit ingest_vl.limits.max_item_bytes)",
                             self._item_start)
