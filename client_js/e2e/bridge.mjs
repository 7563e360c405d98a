// A tiny line protocol so pytest can drive Debian's Chromium through playwright-core:
// one JSON command per stdin line -> one JSON reply per stdout line.
// {"cmd":"launch","y4m":PATH} {"cmd":"goto","url":U} {"cmd":"click","sel":S} {"cmd":"clickAt","x":X,"y":Y}
// {"cmd":"viewport","width":W,"height":H}
// {"cmd":"eval","js":EXPR} {"cmd":"wait","js":EXPR,"timeout":MS} {"cmd":"shot","path":P,"fullPage":false} {"cmd":"close"}
// {"cmd":"rpcs"}: the API calls the page made so far, with the session-affinity header each carried
import { createInterface } from "node:readline";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

let ctx, page;
const rpcs = [];
const handlers = {
  async launch({ y4m, executable = "/usr/bin/chromium" }) {
    ctx = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "affectline-chromium-")), {
      executablePath: executable, headless: true, viewport: { width: 1000, height: 900 },
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream", `--use-file-for-fake-video-capture=${y4m}`,
        "--autoplay-policy=no-user-gesture-required"],
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on("console", (m) => process.stderr.write(`[page ${m.type()}] ${m.text()}\n`));
    page.on("pageerror", (e) => process.stderr.write(`[page error] ${e}\n`));
    page.on("request", (r) => {
      const method = new URL(r.url()).pathname.match(/^\/affectline\.v1\.\w+\/(\w+)$/)?.[1];
      if (method) rpcs.push({ method, session: r.headers()["x-affectline-session"] ?? null });
    });
  },
  goto: ({ url }) => page.goto(url).then(() => null),
  click: ({ sel }) => page.click(sel),
  clickAt: ({ x, y }) => page.mouse.click(x, y), // a real mouse click at page coordinates
  viewport: ({ width, height }) => page.setViewportSize({ width, height }),
  eval: ({ js }) => page.evaluate(js),
  // Polled from here with page.evaluate (run over CDP, outside the page's CSP): waitForFunction
  // with a string compiles it inside the page, which a CSP without 'unsafe-eval' refuses.
  async wait({ js, timeout = 30000 }) {
    const end = Date.now() + timeout;
    for (;;) {
      let value, error;
      try { value = await page.evaluate(js); } catch (e) { error = e; } // e.g. mid-navigation
      if (value) return value;
      if (Date.now() > end) throw new Error(`timeout ${timeout} ms waiting for ${js}${error ? ` (${error})` : ""}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  },
  rpcs: () => rpcs,
  shot: ({ path, fullPage = false }) => page.screenshot({ path, fullPage }).then(() => null),
  close: async () => { await ctx?.close(); process.exit(0); },
};
for await (const line of createInterface({ input: process.stdin })) {
  const msg = JSON.parse(line);
  try {
    const value = await handlers[msg.cmd](msg);
    process.stdout.write(JSON.stringify({ ok: true, value: value ?? null }) + "\n");
  } catch (err) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + "\n");
  }
}
