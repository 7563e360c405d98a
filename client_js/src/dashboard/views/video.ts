// The video view: the film with the emotion, valence, engagement/attention and viewer curves
// under it on one time axis, key moments (click to seek), norms, filters, reports and exports.
import type { GetKeyMomentsResponse, GetNormsResponse, KeyMoment } from "../../gen/affectline/v1/analytics_pb";
import { analytics, download, explain } from "../api";
import { CurveChart } from "../charts";
import { plain, type Ctx } from "../context";
import { videoCharts, suppressedText } from "../curves";
import { h, labelled, panel } from "../dom";
import { filterPanel, filterSummary } from "../filters";
import { EMOTION_COLOURS, clock, isSynthetic, label, num, signed } from "../format";
import { mountPlayer, Thumbnailer } from "../player";
import { filterParams, toFilter } from "../state";

export async function videoHeader(ctx: Ctx, videoId: string): Promise<{ title: string; variants: string[]; header: HTMLElement }> {
  const campaign = (await ctx.campaigns()).find((c) => c.videoId === videoId);
  const title = campaign?.title || videoId;
  const variants = campaign?.variants.map((v) => v.variantId) ?? [];
  const header = h("div", { class: "video-header" },
    h("h2", {}, title, isSynthetic(title, videoId) ? h("span", { class: "badge synthetic" }, "synthetic data") : null),
    h("p", { class: "meta" }, `video ${videoId} · ${campaign?.viewers ?? "?"} viewers · variants: ${variants.map((v) => v || "(default)").join(", ") || "—"} · `,
      h("span", { class: "filter-summary" }, filterSummary(ctx.state))));
  return { title, variants, header };
}

function downloads(ctx: Ctx, videoId: string): HTMLElement {
  const out = h("p", { class: "note", role: "status", id: "download-status" });
  const params = (extra: Record<string, string>) => {
    const p = filterParams(ctx.state);
    p.set("video", videoId);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p;
  };
  const what = h("select", { id: "export-table" },
    h("option", { value: "curves" }, "per-second curves"), h("option", { value: "summaries" }, "per-viewer summaries"),
    h("option", { value: "timelines" }, "session timelines"));
  const button = (id: string, text: string, run: () => Promise<string>) => {
    const b = h("button", { type: "button", id, class: "secondary" }, text);
    b.addEventListener("click", async () => {
      b.disabled = true;
      out.textContent = `${text}: working…`;
      try {
        out.textContent = await run();
      } catch (err) {
        out.textContent = explain(err, text);
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };
  return panel("Reports and exports", "files, with the filters above",
    h("div", { class: "row wrap" },
      button("report-html", "Report (HTML)", () => download("/api/report", params({ format: "html" }), `${videoId}-report.html`)),
      button("report-pdf", "Report (PDF)", () => download("/api/report", params({ format: "pdf" }), `${videoId}-report.pdf`))),
    h("div", { class: "row wrap" }, labelled("Export", what),
      button("export-csv", "CSV", () => download("/api/export", params({ format: "csv", table: what.value }), `${videoId}-${what.value}.csv`)),
      button("export-parquet", "Parquet", () => download("/api/export", params({ format: "parquet", table: what.value }), `${videoId}-${what.value}.parquet`))),
    out);
}

function momentText(m: KeyMoment): string {
  return `${label(m.metric)} ${m.kind} at ${clock(Number(m.peakS))} (${m.startS}–${m.endS} s): ${num(m.value, 2)}, ` +
    `size ${signed(m.kind === "drop" ? -m.size : m.size, 2)}, ${m.viewers} viewers`;
}

function momentsPanel(ctx: Ctx, answer: GetKeyMomentsResponse | string, mediaUrl: string, seek: (t: number) => void): HTMLElement {
  if (typeof answer === "string") return panel("Key moments", "peaks and drops", h("p", { class: "error" }, answer));
  const thumbs = mediaUrl ? new Thumbnailer(mediaUrl) : null;
  if (thumbs) ctx.onLeave(() => thumbs.destroy());
  const moments = [...answer.moments].sort((a, b) => Number(a.startS - b.startS));
  ctx.surface.moments = moments.map((m) => ({ startS: Number(m.startS), label: momentText(m) }));
  const items = moments.map((m, i) => {
    const canvas = h("canvas", { width: 96, height: 54, class: "thumb", "aria-hidden": "true" });
    void thumbs?.draw(canvas, Number(m.peakS) + 0.5);
    const b = h("button", { type: "button", class: "moment", "data-index": i, "data-start": Number(m.startS) },
      canvas, h("span", { class: `kind ${m.kind}` }, m.kind === "peak" ? "▲" : "▼"), momentText(m));
    b.addEventListener("click", () => seek(Number(m.startS)));
    return h("li", {}, b);
  });
  return panel("Key moments", "video time; value and size in the metric's units",
    moments.length ? h("ol", { class: "moments" }, items) : h("p", {}, "No key moments with this filter."),
    answer.suppressed.length ? h("ul", { class: "suppressed" }, answer.suppressed.map((s) => h("li", {}, `Seconds ${s.startS}–${s.endS} withheld: ${s.reason}`))) : null);
}

function normsPanel(answer: GetNormsResponse | string): HTMLElement {
  if (typeof answer === "string") return panel("Norms", "percentile among other videos", h("p", { class: "error" }, answer));
  return panel("Norms", "percentile among the other videos",
    h("div", { class: "scroll" }, h("table", { class: "norms" }, h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", {}, "score"), h("th", {}, "percentile"), h("th", {}, "videos"))),
      h("tbody", {}, answer.norms.map((n) => h("tr", {}, h("td", {}, label(n.metric)), h("td", { class: "num" }, num(n.score, 3)),
        h("td", { class: "num" }, n.percentile === undefined ? "—" : num(n.percentile, 0)), h("td", { class: "num" }, String(n.normSize))))))));
}

export async function videoView(ctx: Ctx, root: HTMLElement): Promise<void> {
  const videoId = ctx.state.video;
  const filter = toFilter(ctx.state);
  const [{ variants, header }, player, curves, moments, norms] = await Promise.all([
    videoHeader(ctx, videoId),
    mountPlayer(ctx, videoId),
    analytics.getVideoCurves({ videoId, filter }, { signal: ctx.signal }),
    analytics.getKeyMoments({ videoId, filter }, { signal: ctx.signal }).catch((e) => explain(e, "key moments")),
    analytics.getNorms({ videoId, filter }, { signal: ctx.signal }).catch((e) => explain(e, "norms")),
  ]);
  ctx.surface.answers.curves = plain(curves);
  ctx.surface.answers.moments = typeof moments === "string" ? moments : plain(moments);
  ctx.surface.answers.norms = typeof norms === "string" ? norms : plain(norms);
  const c = curves.curves!;
  const main = h("div", { class: "main" }, header, player.element,
    h("p", { class: "meta", id: "curve-meta" }, `${c.sessions} viewers in this selection; seconds with fewer than ${c.minViewers} viewers are withheld; ` +
      `bands: ${num(c.confidenceLevel * 100, 0)} % CI.`));
  const side = h("aside", { class: "side" });
  root.append(h("div", { class: "video-layout" }, main, side));

  const specs = videoCharts(c);
  if (typeof moments !== "string") {
    // Key moments marked where their metric is drawn (emotions on the emotion chart, the rest on engagement).
    for (const m of moments.moments) {
      const spec = (specs[m.metric in EMOTION_COLOURS ? "emotions" : "engagement"] ?? specs.engagement).spec;
      (spec.markers ??= []).push({ at: Number(m.peakS) + 0.5, kind: m.kind });
    }
  }
  const charts: CurveChart[] = [];
  for (const [name, { title, unit, spec }] of Object.entries(specs)) {
    const body = h("div", { class: "chart-host" });
    main.append(panel(title, unit, body));
    const chart = new CurveChart(body, spec);
    ctx.surface.charts[name] = chart;
    charts.push(chart);
  }
  const reasons = suppressedText(c);
  if (reasons.length) main.append(panel("Withheld seconds", "why", h("ul", { class: "suppressed", id: "suppressed" }, reasons.map((r) => h("li", {}, r)))));
  ctx.onLeave(() => charts.forEach((ch) => ch.destroy()));
  player.attach(charts);
  side.append(momentsPanel(ctx, moments, player.mediaUrl, player.seek), filterPanel(ctx, variants), normsPanel(norms), downloads(ctx, videoId));
}
