"""What the authenticated HTTP GET endpoints (`/api/report`, `/api/export`) share.

The API key travels in the `Authorization: Bearer` header (never in the URL) and is checked by
the same authorize function, and scope rule, as every RPC of the service whose data the
endpoint shows. Filters are the dashboard's URL parameters (reports/params.py). Errors are JSON
`{"code", "message"}` with the matching HTTP status.
"""

from __future__ import annotations

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from starlette.requests import Request
from starlette.responses import JSONResponse

from affectline.auth.authenticator import Authorize

HTTP_STATUS = {Code.INVALID_ARGUMENT: 400, Code.UNAUTHENTICATED: 401, Code.PERMISSION_DENIED: 403,
               Code.NOT_FOUND: 404, Code.FAILED_PRECONDITION: 409, Code.RESOURCE_EXHAUSTED: 429,
               Code.UNAVAILABLE: 503}


def error(code: Code, message: str) -> JSONResponse:
    return JSONResponse({"code": code.name, "message": message}, status_code=HTTP_STATUS.get(code, 500),
                        headers={"Cache-Control": "no-store"})


async def refused(request: Request, authorize: Authorize, service: str) -> JSONResponse | None:
    """The error answer when the request's key may not call `service`; None when it may."""
    try:
        await authorize(service, request.headers.get("authorization"))
    except ConnectError as exc:
        return error(exc.code, exc.message)
    return None


def filter_pairs(request: Request, *own: str) -> list[tuple[str, str]]:
    """The query's (key, value) pairs but `video` and the endpoint's own parameters: the filter."""
    return [(k, v) for k, v in request.query_params.multi_items() if k not in ("video", *own)]


def attachment(file_name: str) -> dict[str, str]:
    """Headers of a download: saved under `file_name` (already safe), never cached."""
    return {"Content-Disposition": f'attachment; filename="{file_name}"', "Cache-Control": "no-store"}
