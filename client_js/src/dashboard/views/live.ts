// The live panel (WatchLive): active sessions, frames/s and each watched video's emotion mix,
// redrawn on every snapshot (one a second); the stream reconnects by itself with backoff.
import type { LiveSnapshot } from "../../gen/affectline/v1/live_pb";
import { explain, isAuthError, transport } from "../api";
import { plain, type Ctx } from "../context";
import { h, panel } from "../dom";
import { EMOTIONS, EMOTION_COLOURS, isSynthetic, num, pct } from "../format";
import { watchLive } from "../../live";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

function mixBar(scores: Record<string, number>): HTMLElement[] {
  const bar = h("div", { class: "mix", role: "img", "aria-label": EMOTIONS.map((e) => `${e} ${pct(scores[e])}`).join(", ") });
  for (const e of EMOTIONS) {
    const part = h("span", { title: `${e} ${pct(scores[e])}` });
    part.style.width = `${scores[e] * 100}%`; // CSSOM: allowed under the CSP
    part.style.background = EMOTION_COLOURS[e];
    bar.append(part);
  }
  // The three largest shares in words too: a bar alone is hard to read on a phone.
  const top = [...EMOTIONS].sort((a, b) => scores[b] - scores[a]).slice(0, 3).map((e) => `${e} ${pct(scores[e])}`);
  return [bar, h("p", { class: "mix-text" }, top.join(" · "))];
}

function render(s: LiveSnapshot, totals: HTMLElement, list: HTMLElement): void {
  totals.replaceChildren(
    h("div", { class: "stat" }, h("strong", { id: "live-active" }, String(s.activeSessions)), " active sessions"),
    h("div", { class: "stat" }, h("strong", { id: "live-fps" }, num(s.framesPerSecond, 1)), " frames/s"),
    h("div", { class: "stat" }, h("small", {}, `rates over the last ${s.windowS} s; mixes need ≥ ${s.minViewers} viewers`)));
  list.replaceChildren(...(s.videos.length ? s.videos.map((v) => {
    const last = [...v.seconds].reverse().find((x) => x.meanScores) ?? v.seconds.at(-1);
    const mix = last?.meanScores
      ? mixBar(last.meanScores as unknown as Record<string, number>)
      : [h("p", { class: "note" }, last?.suppressed ? `emotion mix withheld: fewer than ${s.minViewers} viewers` : "no faces in the last seconds")];
    return h("li", { class: "live-video", "data-video": v.videoId },
      h("h4", {}, v.videoId, isSynthetic(v.videoId) ? h("span", { class: "badge synthetic" }, "synthetic data") : null),
      h("p", {}, `${v.activeSessions} sessions (${v.variants.map((x) => `${x.variantId || "default"}: ${x.activeSessions}`).join(", ")}) · ${num(v.framesPerSecond, 1)} frames/s · ${last?.viewers ?? 0} viewers with a face`),
      mix);
  }) : [h("li", { class: "note" }, "Nobody is watching right now.")]));
}

export function liveView(ctx: Ctx, root: HTMLElement): Promise<void> {
  const status = h("p", { class: "note", role: "status", id: "live-status" }, "connecting…");
  const totals = h("div", { class: "stats", id: "live-totals" });
  const list = h("ul", { class: "live-videos", id: "live-videos" });
  const legend = h("p", { class: "legend" }, ...EMOTIONS.map((e) => {
    const sw = h("span", { class: "swatch", "aria-hidden": "true" });
    sw.style.background = EMOTION_COLOURS[e];
    return h("span", { class: "entry" }, sw, e);
  }));
  root.append(panel("Live", "sessions now, frames per second, emotion mix of the last second", status, totals, list, legend));
  const live = ctx.surface.live;
  const videoIds: string[] = []; // every video being watched, whichever one the analyst had open
  // Runs until the view is left: each stream ends by error or by the server; then wait and retry.
  void (async () => {
    let attempt = 0;
    while (!ctx.signal.aborted) {
      try {
        for await (const snap of watchLive(transport, { videoIds, signal: ctx.signal })) {
          attempt = 0;
          live.snapshots += 1;
          live.last = plain(snap);
          live.status = "connected";
          status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
          render(snap, totals, list);
        }
      } catch (err) {
        if (ctx.signal.aborted) return;
        if (isAuthError(err)) {
          status.textContent = explain(err, "the live feed");
          live.status = "unauthorized";
          return;
        }
        status.textContent = `disconnected (${explain(err, "the live feed")})`;
      }
      if (ctx.signal.aborted) return;
      const wait = BACKOFF_MS[Math.min(attempt++, BACKOFF_MS.length - 1)];
      live.reconnects += 1;
      live.status = "reconnecting";
      status.textContent = `${status.textContent}; reconnecting in ${wait / 1000} s`;
      await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return Promise.resolve();
}
