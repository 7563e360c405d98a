// The segments view: the same curves split by a demographic field (GetSegments); segments under
// the viewer floor are named with their reason, never drawn.
import { analytics } from "../api";
import { CurveChart } from "../charts";
import { plain, type Ctx } from "../context";
import { metricLine, metricOf, xOf, xRangeOf } from "../curves";
import { h, labelled, panel } from "../dom";
import { filterPanel } from "../filters";
import { EMOTIONS, label } from "../format";
import { mountPlayer } from "../player";
import { SEGMENT_FIELDS, toFilter, type SegmentName } from "../state";
import { videoHeader } from "./video";

const METRICS = ["engagement", "attention", "valence", "sentiment", "expressiveness", ...EMOTIONS];
const PALETTE = ["#1f78b4", "#e31a1c", "#33a02c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#fb9a99", "#b2df8a", "#fdbf6f"];
const FIELD_LABELS: Record<SegmentName, string> = { age_band: "age band", gender: "gender", region: "region", variant: "variant" };

export async function segmentsView(ctx: Ctx, root: HTMLElement): Promise<void> {
  const videoId = ctx.state.video;
  const field = ctx.state.segment;
  const metric = METRICS.includes(ctx.state.metric) ? ctx.state.metric : "engagement";
  const { variants, header } = await videoHeader(ctx, videoId);
  const fieldSelect = h("select", { id: "seg-field" }, ...Object.entries(FIELD_LABELS).map(([v, t]) => h("option", { value: v, selected: v === field }, t)));
  fieldSelect.addEventListener("change", () => ctx.navigate({ segment: fieldSelect.value as SegmentName }));
  const metricSelect = h("select", { id: "seg-metric" }, ...METRICS.map((m) => h("option", { value: m, selected: m === metric }, label(m))));
  metricSelect.addEventListener("change", () => ctx.navigate({ metric: metricSelect.value }));
  const main = h("div", { class: "main" }, header,
    h("div", { class: "row wrap controls" }, labelled("Split by", fieldSelect), labelled("Metric", metricSelect)));
  const side = h("aside", { class: "side" }, filterPanel(ctx, variants));
  root.append(h("div", { class: "video-layout" }, main, side));
  const [player, answer] = await Promise.all([
    mountPlayer(ctx, videoId),
    analytics.getSegments({ videoId, filter: toFilter(ctx.state), field: SEGMENT_FIELDS[field] }, { signal: ctx.signal }),
  ]);
  ctx.surface.answers.segments = plain(answer);
  side.prepend(panel("Video", "click a chart to seek", player.element));
  const shown = answer.segments.filter((s) => !s.suppressed && s.curves);
  const name = (v: string) => `${FIELD_LABELS[field]} ${v || "(not given)"}`;
  // Segments may cover different seconds: place each on one shared run of seconds (gaps elsewhere).
  const firsts = shown.filter((s) => s.curves!.seconds.length).map((s) => s.curves!.seconds);
  const lo = firsts.length ? Math.min(...firsts.map((x) => Number(x[0]))) : 0;
  const hi = firsts.length ? Math.max(...firsts.map((x) => Number(x[x.length - 1]))) : 0;
  const seconds = Array.from({ length: hi - lo + 1 }, (_, i) => BigInt(lo + i));
  const place = (at: bigint[], v: (number | null)[]) => {
    const out: (number | null)[] = seconds.map(() => null);
    at.forEach((s, i) => { out[Number(s) - lo] = v[i]; });
    return out;
  };
  const lines = shown.flatMap((s, i) => {
    const m = metricOf(s.curves!, metric);
    if (!m) return [];
    const line = metricLine(m, name(s.value), PALETTE[i % PALETTE.length]);
    return [{ ...line, values: place(s.curves!.seconds, line.values), low: place(s.curves!.seconds, line.low!), high: place(s.curves!.seconds, line.high!) }];
  });
  const charts: CurveChart[] = [];
  if (lines.length) {
    const host = h("div", { class: "chart-host" });
    main.append(panel(`${label(metric)} by ${FIELD_LABELS[field]}`, "mean per second, 95 % CI shaded", host));
    const chart = new CurveChart(host, {
      title: "segments", x: xOf(seconds), xRange: xRangeOf(seconds), toggles: true,
      yRange: ["valence", "sentiment"].includes(metric) ? [-1, 1] : [0, 1], lines, height: 260,
    });
    ctx.surface.charts.segments = chart;
    charts.push(chart);
  }
  player.attach(charts);
  ctx.onLeave(() => charts.forEach((c) => c.destroy()));
  main.append(panel("Segments", "viewers per segment", h("table", { class: "segments", id: "segments-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, FIELD_LABELS[field]), h("th", { scope: "col" }, "viewers"), h("th", { scope: "col" }, "shown"))),
    h("tbody", {}, answer.segments.map((s) => h("tr", {}, h("th", { scope: "row" }, s.value || "(not given)"), h("td", { class: "num" }, s.suppressed ? "—" : String(s.viewers)), // a withheld segment's size is not shown either
      h("td", {}, s.suppressed ? `withheld: ${s.reason}` : "yes")))))));
}
