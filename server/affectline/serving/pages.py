"""The viewer pages: /watch/<video id>, the video catalogue API the page reads, and media files.

The page's script, the face detector's models and the wasm runtime are built into
static/app/ by client_js (scripts/build_client.sh) and served by the static mount, so the
page works offline: nothing comes from a CDN.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from affectline.storage.timeline_store import TimelineStore

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# Browsers refuse to stream-compile wasm served with another type.
mimetypes.add_type("application/wasm", ".wasm")


def page_routes(store: TimelineStore, static_dir: Path = STATIC_DIR) -> list[Route]:
    async def video_info(video_id: str) -> dict | None:
        # One video by its key (and its variants): the cost does not grow with the catalogue.
        return await asyncio.to_thread(store.get_video, video_id)

    async def watch(request: Request) -> Response:
        if await video_info(request.path_params["video_id"]) is None:
            return Response("unknown video\n", status_code=404, media_type="text/plain")
        # Never cached: the page and its script change together with the server.
        return FileResponse(static_dir / "watch.html", headers={"cache-control": "no-store"})

    async def dashboard(_: Request) -> Response:
        # The analyst's dashboard (client_js/src/dashboard/): the page holds no data and no key;
        # its calls carry the analyst's API key. Never cached, like the viewer page.
        return FileResponse(static_dir / "dashboard.html", headers={"cache-control": "no-store"})

    async def video_json(request: Request) -> Response:
        v = await video_info(request.path_params["video_id"])
        if v is None:
            return JSONResponse({"error": "unknown video"}, status_code=404)
        return JSONResponse({"videoId": v["video_id"], "title": v["title"], "variants": v["variants"],
                             "mediaUrl": f"/media/{v['video_id']}" if v["media_path"] else ""})

    async def media(request: Request) -> Response:
        v = await video_info(request.path_params["video_id"])
        if v is None or not v["media_path"] or not Path(v["media_path"]).is_file():
            return Response("no media\n", status_code=404, media_type="text/plain")
        # FileResponse answers Range requests, which <video> needs to seek.
        return FileResponse(v["media_path"], media_type=v["mime_type"] or None)

    return [
        Route("/watch/{video_id}", watch),
        Route("/dashboard", dashboard),
        Route("/api/videos/{video_id}", video_json),
        Route("/media/{video_id}", media),
    ]
