"""RunMap: a {second: value} mapping stored as runs of consecutive seconds with one value.

The seek state of a session (analytics.rollup.SeekState) maps every second watched so far to a
count. As a dict it grows with the session, and ingest copied, encoded and decoded all of it on
every batch (1.5 ms a batch an hour into a session). A session that plays on without seeking
keeps one run per map, so its state stays a few numbers: a lookup is a bisect, the next second
extends the last run, a copy and an encoding cost O(runs).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence


def to_runs(mapping: Mapping[int, int]) -> list[list[int]]:
    """{second: value} as sorted [first, last, value] runs of consecutive seconds with one value."""
    if isinstance(mapping, RunMap):
        return mapping.runs()
    runs: list[list[int]] = []
    for sec in sorted(mapping):
        value = mapping[sec]
        if runs and runs[-1][1] == sec - 1 and runs[-1][2] == value:
            runs[-1][1] = sec
        else:
            runs.append([sec, sec, value])
    return runs


class RunMap(Mapping[int, int]):
    __slots__ = ("_firsts", "_runs")

    def __init__(self, runs: Iterable[Sequence[int]] = ()) -> None:
        """`runs`: sorted, disjoint [first, last, value] triples (as to_runs makes them)."""
        self._runs = [[int(f), int(last), int(v)] for f, last, v in runs]
        self._firsts = [r[0] for r in self._runs]

    @classmethod
    def of(cls, mapping: Mapping[int, int]) -> RunMap:
        """A RunMap with the items of `mapping` (a copy; cheap for a RunMap)."""
        return cls(to_runs(mapping))

    def _find(self, key: int) -> int:
        i = bisect_right(self._firsts, key) - 1
        return i if i >= 0 and self._runs[i][1] >= key else -1

    def __getitem__(self, key: int) -> int:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        return self._runs[i][2]

    def get(self, key: int, default: int | None = None) -> int | None:  # type: ignore[override]
        i = self._find(key)
        return default if i < 0 else self._runs[i][2]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self._find(key) >= 0

    def __iter__(self) -> Iterator[int]:
        for first, last, _ in self._runs:
            yield from range(first, last + 1)

    def __len__(self) -> int:
        return sum(last - first + 1 for first, last, _ in self._runs)

    def __repr__(self) -> str:
        return f"RunMap({self._runs})"

    def runs(self) -> list[list[int]]:
        return [list(r) for r in self._runs]

    def set(self, key: int, value: int) -> None:
        """self[key] = value: O(1) past the last second, O(n) elsewhere (after a seek back)."""
        if not self._runs or key > self._runs[-1][1]:
            last = self._runs[-1] if self._runs else None
            if last is not None and last[1] == key - 1 and last[2] == value:
                last[1] = key
            else:
                self._runs.append([key, key, value])
                self._firsts.append(key)
            return
        merged = dict(self.items())
        merged[key] = value
        self.__init__(to_runs(merged))  # type: ignore[misc]
