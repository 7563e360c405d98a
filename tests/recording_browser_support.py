"""Runs client_js/src/face.ts' own detect() and Cropper.crop() in headless Chromium on PNG frames.

A throw-away page bundles face.ts as it is (esbuild from client_js/node_modules) and exposes its
functions on window.facecheck; the frames, the bundle and the viewer's model and wasm files are
served from a local HTTP server. Nothing is added to the shipped viewer page.
"""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
from pathlib import Path

from browser_support import CLIENT, REPO

STATIC_APP = REPO / "server" / "affectline" / "static" / "app"

ENTRY = """
import { Cropper, detect, loadDetector } from %r;
const w = window as any;
w.facecheck = {
  ready: false,
  async init() { w.facecheck.human = await loadDetector(location.origin); w.facecheck.ready = true; },
  async run(url: string, size: number, eyes: number[] | null) {
    const img = new Image();
    img.src = url;
    await img.decode();
    const face = await detect(w.facecheck.human, img as any);
    const cropper = new Cropper(size);
    const own = face ? Array.from(cropper.crop(img as any, face)) : null;
    const given = eyes ? Array.from(cropper.crop(img as any, { ...(face ?? {}), eyeL: [eyes[0], eyes[1]], eyeR: [eyes[2], eyes[3]] } as any)) : null;
    return { face: face ? { eyeL: face.eyeL, eyeR: face.eyeR, nose: face.nose } : null, own, given };
  },
};
"""

PAGE = """<!doctype html><html><body><script type="module" src="/facecheck.js"></script></body></html>"""


def build_page(workdir: Path) -> None:
    entry = workdir / "entry.ts"
    entry.write_text(ENTRY % str(CLIENT / "src" / "face.ts"))
    (workdir / "index.html").write_text(PAGE)
    subprocess.run([str(CLIENT / "node_modules" / ".bin" / "esbuild"), str(entry), "--bundle", "--format=esm",
                    "--target=es2022", f"--outfile={workdir / 'facecheck.js'}", "--log-level=warning"],
                   check=True, cwd=CLIENT)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript"}

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0]
        for prefix in ("/models/", "/wasm/"):
            if path.startswith(prefix):
                return str(STATIC_APP / path.lstrip("/"))
        return super().translate_path(path)

    def log_message(self, *args) -> None:
        pass


class PageServer:
    def __init__(self, root: Path) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
