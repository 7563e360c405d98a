// Formatting only: every number shown comes from the RPCs as it is; nothing is re-computed.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

export const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] as const;
export type EmotionName = (typeof EMOTIONS)[number];
// Colour per emotion (colour-blind-safe-ish Okabe-Ito order), shared by every chart and the live mix.
export const EMOTION_COLOURS: Record<string, string> = {
  angry: "#d55e00", disgust: "#009e73", fear: "#cc79a7", happy: "#e69f00",
  sad: "#0072b2", surprise: "#56b4e9", neutral: "#8c8c8c",
};
export const METRIC_LABELS: Record<string, string> = {
  engagement: "engagement", sentiment: "sentiment", attention_share: "attention share", attention: "attention share",
  expressiveness: "expressiveness", valence: "valence", confidence: "confidence",
};

export const label = (metric: string): string => METRIC_LABELS[metric] ?? metric;

/** NaN (suppressed or undefined) becomes null: uPlot draws null as a gap. */
export const gap = (v: number): number | null => (Number.isFinite(v) ? v : null);

export function num(v: number | null | undefined, digits = 2): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : v.toFixed(digits);
}

export function signed(v: number, digits = 3): string {
  return Number.isFinite(v) ? (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v).toFixed(digits) : "—";
}

export function pct(v: number | null | undefined, digits = 0): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : `${(v * 100).toFixed(digits)} %`;
}

export function pValue(p: number): string {
  if (!Number.isFinite(p)) return "—";
  return p < 0.001 ? "< 0.001" : p.toFixed(3);
}

/** Video time as m:ss. */
export function clock(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function date(ts: Timestamp | undefined): string {
  if (!ts || (ts.seconds === 0n && ts.nanos === 0)) return "—";
  return timestampDate(ts).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

/** The demo's data is synthetic: its ids and titles say so, and the dashboard flags it everywhere. */
export const isSynthetic = (...names: string[]): boolean => names.some((n) => /synthetic/i.test(n));
