// The A/B view: both variants' curves of one metric, their per-second difference with its CI
// band (CompareVariants.curve_difference), the per-metric table and the verdict, as sent.
import { analytics, explain } from "../api";
import { CurveChart } from "../charts";
import { plain, type Ctx } from "../context";
import { metricLine, metricOf, suppressedOf, xOf, xRangeOf } from "../curves";
import { h, labelled, panel } from "../dom";
import { filterPanel } from "../filters";
import { EMOTIONS, gap, label, num, pValue, signed } from "../format";
import { mountPlayer } from "../player";
import { toFilter } from "../state";
import { videoHeader } from "./video";

// CompareVariants' curve metrics; the Curves message names attention_share "attention".
const CURVE_METRICS = ["engagement", "attention_share", "valence", "sentiment", "expressiveness", ...EMOTIONS];
const curvesName = (m: string) => (m === "attention_share" ? "attention" : m);

export async function abView(ctx: Ctx, root: HTMLElement): Promise<void> {
  const videoId = ctx.state.video;
  const { variants, header } = await videoHeader(ctx, videoId);
  const a = ctx.state.a || variants[0] || "", b = ctx.state.b || variants.find((v) => v !== a) || "";
  const metric = CURVE_METRICS.includes(ctx.state.metric) ? ctx.state.metric : "engagement";
  const pick = (id: string, value: string, name: "a" | "b") => {
    const s = h("select", { id }, ...variants.map((v) => h("option", { value: v, selected: v === value }, v || "(default)")));
    s.addEventListener("change", () => ctx.navigate({ [name]: s.value }));
    return s;
  };
  const metricSelect = h("select", { id: "ab-metric" }, ...CURVE_METRICS.map((m) => h("option", { value: m, selected: m === metric }, label(m))));
  metricSelect.addEventListener("change", () => ctx.navigate({ metric: metricSelect.value }));
  const main = h("div", { class: "main" }, header,
    h("div", { class: "row wrap controls" }, labelled("Variant A", pick("ab-a", a, "a")), labelled("Variant B", pick("ab-b", b, "b")),
      labelled("Curve metric", metricSelect)));
  const side = h("aside", { class: "side" }, filterPanel(ctx, variants));
  root.append(h("div", { class: "video-layout" }, main, side));
  if (!a || !b || a === b) {
    main.append(h("p", { class: "error" }, "This video needs two variants to compare."));
    return;
  }
  const filter = toFilter(ctx.state, { withVariants: false });
  const [player, cmp, curvesA, curvesB] = await Promise.all([
    mountPlayer(ctx, videoId),
    analytics.compareVariants({ videoId, variantA: a, variantB: b, filter, curveMetric: metric }, { signal: ctx.signal }),
    analytics.getVideoCurves({ videoId, filter: { ...filter, variantIds: [a] } }, { signal: ctx.signal }).catch((e) => explain(e, "curves")),
    analytics.getVideoCurves({ videoId, filter: { ...filter, variantIds: [b] } }, { signal: ctx.signal }).catch((e) => explain(e, "curves")),
  ]);
  ctx.surface.answers.compare = plain(cmp);
  ctx.surface.answers.curvesA = typeof curvesA === "string" ? curvesA : plain(curvesA);
  ctx.surface.answers.curvesB = typeof curvesB === "string" ? curvesB : plain(curvesB);
  side.prepend(panel("Video", "click a chart to seek", player.element));

  const verdict = panel("Verdict", `${label(metric)} and headline metrics, B − A`,
    cmp.suppressedReason ? h("p", { class: "warning", id: "ab-suppressed" }, `Not compared: ${cmp.suppressedReason}`) : null,
    h("p", { class: "verdict", id: "ab-verdict" }, cmp.verdict || "—"),
    cmp.sampleSizeWarning ? h("p", { class: "warning", id: "ab-warning" }, `⚠ ${cmp.sampleSizeWarning}`) : null);
  main.append(verdict);

  const charts: CurveChart[] = [];
  const addChart = (name: string, title: string, unit: string, chart: (host: HTMLElement) => CurveChart) => {
    const host = h("div", { class: "chart-host" });
    main.append(panel(title, unit, host));
    const c = chart(host);
    ctx.surface.charts[name] = c;
    charts.push(c);
  };
  const mA = typeof curvesA === "string" ? undefined : curvesA.curves;
  const mB = typeof curvesB === "string" ? undefined : curvesB.curves;
  const lineA = mA && metricOf(mA, curvesName(metric)), lineB = mB && metricOf(mB, curvesName(metric));
  if (mA && mB && lineA && lineB) {
    addChart("variants", `${label(metric)}: A and B`, "mean per second, 95 % CI shaded", (host) => new CurveChart(host, {
      title: "variants", x: xOf(mA.seconds), xRange: xRangeOf(mA.seconds), suppressed: suppressedOf(mA), toggles: true,
      yRange: ["valence", "sentiment"].includes(metric) ? [-1, 1] : [0, 1],
      lines: [metricLine(lineA, `A: ${a}`, "#1f78b4"), metricLine(lineB, `B: ${b}`, "#e31a1c", { dash: [6, 3] })],
    }));
  } else {
    main.append(h("p", { class: "error" }, typeof curvesA === "string" ? curvesA : typeof curvesB === "string" ? curvesB : `No ${metric} curve for the variants.`));
  }
  const d = cmp.curveDifference;
  if (d && d.seconds.length) {
    const suppressed: [number, number][] = [];
    d.suppressed.forEach((s, i) => { if (s) suppressed.push([Number(d.seconds[i]), Number(d.seconds[i]) + 1]); });
    addChart("difference", `Difference B − A: ${label(d.metric || metric)}`, "per second, 95 % CI band; 0 = no difference", (host) => new CurveChart(host, {
      title: "difference", x: xOf(d.seconds), xRange: mA ? xRangeOf(mA.seconds) : xRangeOf(d.seconds), suppressed, zeroLine: true,
      lines: [{ label: "B − A", colour: "#6a3d9a", values: d.difference.map(gap), low: d.ciLow.map(gap), high: d.ciHigh.map(gap), digits: 3 }],
    }));
  }
  player.attach(charts);
  ctx.onLeave(() => charts.forEach((c) => c.destroy()));

  const rows = cmp.metrics.map((m) => h("tr", {},
    h("th", { scope: "row" }, label(m.metric)), h("td", { class: "num" }, `${m.nA} / ${m.nB}`),
    h("td", { class: "num" }, num(m.meanA, 3)), h("td", { class: "num" }, num(m.meanB, 3)),
    h("td", { class: "num" }, signed(m.difference)), h("td", { class: "num" }, `${signed(m.ciLow)} … ${signed(m.ciHigh)}`),
    h("td", { class: "num" }, signed(m.hedgesG, 2)), h("td", { class: "num" }, pValue(m.holmP)),
    h("td", { class: "num" }, pValue(m.holmMannwhitneyP)),
    h("td", {}, m.reliable ? "yes" : `no${m.nNeeded ? ` (needs ~${m.nNeeded} per variant)` : ""}`)));
  main.append(panel("Per-metric comparison", "per-viewer means; difference B − A with bootstrap 95 % CI; p Holm-corrected",
    h("div", { class: "scroll" }, h("table", { class: "ab", id: "ab-table" },
      h("thead", {}, h("tr", {}, ...["metric", "n A / B", "mean A", "mean B", "difference", "95 % CI", "Hedges' g", "Welch p (Holm)", "Mann-Whitney p (Holm)", "enough viewers"]
        .map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)))));
}
