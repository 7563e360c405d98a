"""The HTTP side of resumable recording uploads: `/v1/recordings/{recording_id}`.

An upload is made with the CreateRecordingUpload RPC (Connect, gRPC-web or JSON-RPC); its bytes
come here, then StartRecordingAnalysis starts it (docs/recordings.md, "Over HTTP").

- `PATCH` or `PUT` with the chunk as the body and its place as `Content-Range: bytes A-B/TOTAL`
  or `Upload-Offset: A` (no header: 0). A chunk may repeat or overlap what has arrived (that part
  is skipped); one that would leave a gap gets 409 with the offset to resume from.
- `HEAD` (headers only) or `GET` (JSON): the offset to resume from (`Upload-Offset`) and the size.

Every answer carries `Upload-Offset` and `Upload-Length`; JSON bodies are
{"recording_id", "offset", "total_bytes", "complete"} or {"code", "message"}. The API key
check is the RecordingService's (sessions:write).
"""

from __future__ import annotations

import re
from typing import Protocol

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from affectline.auth.authenticator import Authorize
from affectline.recording.uploads import OffsetGap, Upload, UploadNotFound
from affectline.services.recording_service import UPLOAD_PATH, as_connect_error
from affectline.serving.jsonrpc import BodyTooLarge, read_body

SERVICE = "affectline.v1.RecordingService"
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400, Code.UNAUTHENTICATED: 401, Code.PERMISSION_DENIED: 403, Code.NOT_FOUND: 404,
    Code.FAILED_PRECONDITION: 409, Code.RESOURCE_EXHAUSTED: 413, Code.UNAVAILABLE: 503,
}


class UploadTarget(Protocol):
    """RecordingService as the route sees it."""

    max_chunk_bytes: int

    def upload(self, recording_id: str) -> Upload: ...

    async def write_chunk(self, recording_id: str, offset: int, data: bytes) -> Upload: ...


def _offset_headers(upload: Upload) -> dict[str, str]:
    return {"Upload-Offset": str(upload.received), "Upload-Length": str(upload.total_bytes), "Cache-Control": "no-store"}


def _state(upload: Upload, status: int = 200) -> JSONResponse:
    return JSONResponse({"recording_id": upload.recording_id, "offset": upload.received,
                         "total_bytes": upload.total_bytes, "complete": upload.complete},
                        status_code=status, headers=_offset_headers(upload))


def _error(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    err = as_connect_error(exc)
    return JSONResponse({"code": err.code.name, "message": err.message},
                        status_code=_HTTP_STATUS.get(err.code, 500), headers=headers)


def _chunk_offset(request: Request, length: int) -> int:
    """The chunk's first byte from Content-Range or Upload-Offset (ConnectError when malformed)."""
    content_range = request.headers.get("content-range")
    if content_range is not None:
        m = _RANGE.fullmatch(content_range.strip())
        if m is None or int(m[2]) - int(m[1]) + 1 != length:
            raise ConnectError(Code.INVALID_ARGUMENT, "Content-Range must be 'bytes FIRST-LAST/TOTAL' and match "
                                                      "the body's length")
        return int(m[1])
    offset = request.headers.get("upload-offset", "0")
    if not offset.isdigit():
        raise ConnectError(Code.INVALID_ARGUMENT, "Upload-Offset must be a byte offset")
    return int(offset)


def upload_routes(target: UploadTarget, authorize: Authorize) -> list[BaseRoute]:
    async def offset(request: Request) -> Response:
        try:
            await authorize(SERVICE, request.headers.get("authorization"))
            upload = target.upload(request.path_params["recording_id"])
        except (ConnectError, UploadNotFound) as exc:
            return _error(exc)
        if request.method == "HEAD":
            return Response(status_code=200, headers=_offset_headers(upload))
        return _state(upload)

    async def chunk(request: Request) -> Response:
        rid = request.path_params["recording_id"]
        try:
            await authorize(SERVICE, request.headers.get("authorization"))
            target.upload(rid)  # an unknown id is refused before its body is read
            data = await read_body(request, target.max_chunk_bytes)
            upload = await target.write_chunk(rid, _chunk_offset(request, len(data)), data)
        except BodyTooLarge:
            return _error(ConnectError(Code.RESOURCE_EXHAUSTED, f"a chunk may carry at most "
                                                                f"{target.max_chunk_bytes} bytes"))
        except ClientDisconnect:  # gone mid-chunk: it resumes from HEAD's offset
            return Response(status_code=400)
        except OffsetGap as exc:
            return _error(exc, headers={"Upload-Offset": str(exc.received)})
        except Exception as exc:  # noqa: BLE001 - as_connect_error maps and never leaks internals
            return _error(exc)
        return _state(upload)

    path = UPLOAD_PATH.replace("{recording_id}", "{recording_id:str}")
    return [Route(path, offset, methods=["GET", "HEAD"]), Route(path, chunk, methods=["PATCH", "PUT"])]
