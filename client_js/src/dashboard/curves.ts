// From a Curves message to chart specs: a translation of the API's arrays (NaN -> gap,
// second s plotted at s + 0.5), nothing recomputed.
import type { Curves, MetricCurve } from "../gen/affectline/v1/analytics_pb";
import type { ChartSpec, Line } from "./charts";
import { EMOTIONS, EMOTION_COLOURS, gap } from "./format";

export const xOf = (seconds: bigint[]): number[] => seconds.map((s) => Number(s) + 0.5);
export const xRangeOf = (seconds: bigint[]): [number, number] =>
  seconds.length ? [Number(seconds[0]), Number(seconds[seconds.length - 1]) + 1] : [0, 1];

export function metricLine(m: MetricCurve, label: string, colour: string, extra: Partial<Line> = {}): Line {
  return { label, colour, values: m.mean.map(gap), low: m.ciLow.map(gap), high: m.ciHigh.map(gap), ...extra };
}

export const metricOf = (c: Curves, name: string): MetricCurve | undefined => c.metrics.find((m) => m.metric === name);

export const suppressedOf = (c: Curves): [number, number][] => c.suppressed.map((s) => [Number(s.startS), Number(s.endS)]);

/** The video view's four panels: emotions, valence, engagement and attention, viewers. */
export function videoCharts(c: Curves): Record<string, { title: string; unit: string; spec: ChartSpec }> {
  const x = xOf(c.seconds), xRange = xRangeOf(c.seconds), suppressed = suppressedOf(c);
  const base = { x, xRange, suppressed };
  const emotions = EMOTIONS.map((e) => metricOf(c, e)).filter((m): m is MetricCurve => !!m)
    .map((m) => metricLine(m, m.metric, EMOTION_COLOURS[m.metric]));
  const valence = metricOf(c, "valence"), sentiment = metricOf(c, "sentiment");
  const engagement = metricOf(c, "engagement"), attention = metricOf(c, "attention");
  const expressiveness = metricOf(c, "expressiveness");
  const out: ReturnType<typeof videoCharts> = {
    emotions: { title: "Emotions", unit: "mean probability 0–1, 95 % CI shaded",
      spec: { ...base, title: "emotions", lines: emotions, yRange: [0, 1], toggles: true, height: 220 } },
    valence: { title: "Valence", unit: "−1 negative … +1 positive, 95 % CI shaded",
      spec: { ...base, title: "valence", yRange: [-1, 1], zeroLine: true, toggles: true, height: 160, lines: [
        ...(valence ? [metricLine(valence, "valence", "#6a3d9a")] : []),
        ...(sentiment ? [metricLine(sentiment, "sentiment", "#b15928", { show: false })] : []),
      ] } },
    engagement: { title: "Engagement and attention", unit: "share 0–1, 95 % CI shaded",
      spec: { ...base, title: "engagement", yRange: [0, 1], toggles: true, height: 160, lines: [
        ...(engagement ? [metricLine(engagement, "engagement", "#1f78b4")] : []),
        attention ? metricLine(attention, "attention share", "#33a02c", { dash: [6, 3] })
          : { label: "attention share", colour: "#33a02c", dash: [6, 3], values: c.attentionShare.map(gap) },
        ...(expressiveness ? [metricLine(expressiveness, "expressiveness", "#fb9a99", { show: false })] : []),
      ] } },
    viewers: { title: "Viewers", unit: "viewers present per second", spec: { ...base, title: "viewers", height: 120, yFromZero: true,
      lines: [{ label: "viewers", colour: "#444", values: c.viewers.map((v) => v), digits: 0 }] } },
  };
  return out;
}

/** "Seconds 0–4: fewer than 5 viewers" lines for the suppressed spans. */
export function suppressedText(c: Curves): string[] {
  return c.suppressed.map((s) => `Seconds ${s.startS}–${s.endS} withheld: ${s.reason}`);
}
