// The campaign video and the charts under it: playing or scrubbing moves every chart's
// crosshair; a click on a chart (or on a key moment) seeks the video.
import type { CurveChart } from "./charts";
import type { Ctx } from "./context";
import { h } from "./dom";

export interface Player {
  video: HTMLVideoElement;
  element: HTMLElement;
  mediaUrl: string;
  attach(charts: CurveChart[]): void;
  seek(t: number): void;
}

export async function mountPlayer(ctx: Ctx, videoId: string): Promise<Player> {
  // The media URL the viewer page uses (serving/pages.py): no key needed, it is the campaign's own film.
  let mediaUrl = "";
  try {
    const res = await fetch(`/api/videos/${encodeURIComponent(videoId)}`, { signal: ctx.signal });
    if (res.ok) mediaUrl = (await res.json()).mediaUrl ?? "";
  } catch {
    /* the charts still work without the film */
  }
  const video = h("video", { class: "film", controls: true, preload: "auto", playsinline: true, muted: true, "aria-label": "campaign video" });
  if (mediaUrl) video.src = mediaUrl;
  const element = h("div", { class: "player" }, video,
    mediaUrl ? null : h("p", { class: "note" }, `No media file is registered for ${videoId} (affectline videos add FILE --id ${videoId}); the curves below still use the video's time.`));
  let charts: CurveChart[] = [];
  let frame = 0;
  const follow = () => {
    for (const c of charts) c.setTime(video.currentTime);
  };
  // timeupdate fires ~4 times a second; while playing, follow every animation frame instead.
  const loop = () => {
    follow();
    frame = video.paused ? 0 : requestAnimationFrame(loop);
  };
  video.addEventListener("play", () => { if (!frame) frame = requestAnimationFrame(loop); });
  for (const ev of ["timeupdate", "seeked", "seeking", "loadedmetadata"]) video.addEventListener(ev, follow);
  ctx.onLeave(() => {
    cancelAnimationFrame(frame);
    video.pause();
    video.removeAttribute("src");
    video.load();
  });
  ctx.surface.video = video;
  const seek = (t: number) => {
    video.currentTime = Math.max(0, t);
    follow();
  };
  return {
    video, element, mediaUrl, seek,
    attach(list: CurveChart[]) {
      charts = list;
      for (const c of list) c.onSeek(seek);
      follow();
    },
  };
}

/** A still of the campaign video at time t, drawn to a canvas by a second, hidden <video>
 *  (same origin, so the canvas stays readable). Frames are taken one at a time. */
export class Thumbnailer {
  private readonly video: HTMLVideoElement;
  private queue: Promise<void> = Promise.resolve();

  constructor(mediaUrl: string) {
    this.video = h("video", { preload: "auto", muted: true, class: "offscreen", "aria-hidden": "true" });
    this.video.src = mediaUrl;
  }

  draw(canvas: HTMLCanvasElement, t: number): Promise<void> {
    this.queue = this.queue.then(() => new Promise<void>((resolve) => {
      const v = this.video;
      const done = () => {
        v.removeEventListener("seeked", done);
        const ctx = canvas.getContext("2d");
        if (ctx && v.videoWidth) ctx.drawImage(v, 0, 0, canvas.width, canvas.height);
        canvas.dataset.drawn = "1";
        resolve();
      };
      const go = () => {
        v.addEventListener("seeked", done);
        v.currentTime = Math.min(t, Math.max(0, (v.duration || t) - 0.05));
      };
      if (v.readyState >= 1) go();
      else v.addEventListener("loadedmetadata", go, { once: true });
      setTimeout(resolve, 5000); // a film that cannot seek must not hold the list
    }));
    return this.queue;
  }

  destroy(): void {
    this.video.removeAttribute("src");
    this.video.load();
  }
}
