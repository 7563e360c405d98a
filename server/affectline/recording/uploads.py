"""Recordings on their way in: one private temporary file per upload, written at byte offsets.

Privacy: every upload lives in one directory made with mkdtemp (mode 0700) for this server,
each file mode 0600. A file is deleted when its analysis ends (done, failed or cancelled), when
the upload is abandoned (no chunk for `ttl_s`), and the whole directory when the server stops.
Neither the bytes nor the client's file name are ever logged.

Resuming: `received` is the length of the prefix that has arrived. A chunk may start anywhere
at or before it; the part already held is skipped (a repeated or overlapping chunk is
idempotent), and a chunk that would leave a gap is refused with the offset to resume from.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from affectline.recording.decode import RecordingError, too_large


class UploadNotFound(KeyError):
    """Unknown, expired or already finished upload."""


class OffsetGap(RecordingError):
    """A chunk that starts past the bytes received so far."""

    def __init__(self, offset: int, received: int) -> None:
        super().__init__(f"the chunk starts at byte {offset} but only {received} bytes have arrived; "
                         f"resume from {received}")
        self.received = received


class UploadSealed(RecordingError):
    """Chunks for an upload whose analysis has started."""


@dataclass(eq=False)
class Upload:
    recording_id: str
    path: Path
    total_bytes: int
    touched: float  # clock time of the last chunk (or of the creation)
    received: int = 0
    sealed: bool = False  # analysis started: the file is read, never written again
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def complete(self) -> bool:
        return self.received == self.total_bytes


def _write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


class UploadStore:
    def __init__(self, *, max_bytes: int, ttl_s: float, parent: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._parent = parent
        self._clock = clock
        self._root: Path | None = None
        self._uploads: dict[str, Upload] = {}

    @property
    def root(self) -> Path:
        """The private directory, made on first use (mode 0700)."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="affectline-uploads-", dir=self._parent))
        return self._root

    def create(self, total_bytes: int) -> Upload:
        """A new empty upload; RecordingTooLarge past max_bytes, RecordingError for 0 bytes."""
        self.sweep()
        if total_bytes > self.max_bytes:
            raise too_large(self.max_bytes)
        if total_bytes <= 0:
            raise RecordingError("total_bytes must be the recording's size in bytes (> 0)")
        rid = secrets.token_hex(16)  # unguessable: the id names the upload's URL
        path = self.root / rid
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        upload = Upload(rid, path, total_bytes, self._clock())
        self._uploads[rid] = upload
        return upload

    def get(self, recording_id: str) -> Upload:
        self.sweep()
        upload = self._uploads.get(recording_id)
        if upload is None:
            raise UploadNotFound(recording_id)
        return upload

    async def write(self, recording_id: str, offset: int, data: bytes) -> Upload:
        """Writes the part of data[offset:] not yet held; returns the upload (see `received`)."""
        upload = self.get(recording_id)
        async with upload.lock:
            if upload.sealed:
                raise UploadSealed("the analysis of this recording has started; it takes no more bytes")
            if offset < 0 or offset > upload.received:
                raise OffsetGap(offset, upload.received)
            end = offset + len(data)
            if end > upload.total_bytes:
                if end > self.max_bytes:
                    raise too_large(self.max_bytes)
                raise RecordingError(f"the chunk ends at byte {end}, past the announced total of "
                                     f"{upload.total_bytes} bytes")
            fresh = data[upload.received - offset:]
            if fresh:
                await asyncio.to_thread(_write_at, upload.path, upload.received, fresh)
                if recording_id not in self._uploads:  # discarded (cancelled) meanwhile
                    upload.path.unlink(missing_ok=True)
                    raise UploadNotFound(recording_id)
                upload.received += len(fresh)
            upload.touched = self._clock()
            return upload

    async def seal(self, recording_id: str) -> Upload:
        """Marks the upload as taken by its analysis: no more writes, no expiry."""
        upload = self.get(recording_id)
        async with upload.lock:
            upload.sealed = True
        return upload

    def discard(self, recording_id: str) -> None:
        """Deletes the upload's file (no-op for an unknown id)."""
        upload = self._uploads.pop(recording_id, None)
        if upload is not None:
            upload.path.unlink(missing_ok=True)

    def sweep(self) -> list[str]:
        """Discards uploads without a chunk for ttl_s (not those being analysed); returns their ids."""
        cutoff = self._clock() - self.ttl_s
        stale = [rid for rid, u in self._uploads.items() if not u.sealed and u.touched < cutoff]
        for rid in stale:
            self.discard(rid)
        return stale

    def close(self) -> None:
        """Deletes every upload and the private directory."""
        self._uploads.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
