// The dashboard's state lives in the URL (Grafana's habit): the view, the video and every
// filter, so a view can be shared and a reload restores it. Nothing else is remembered.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AnalyticsFilterSchema, PassSelection, SegmentField, type AnalyticsFilter } from "../gen/affectline/v1/analytics_pb";

export type View = "campaigns" | "video" | "ab" | "segments" | "live";
export const VIEWS: View[] = ["campaigns", "video", "ab", "segments", "live"];
export type Passes = "first" | "rewatches" | "all";
export type SegmentName = "age_band" | "gender" | "region" | "variant";

export interface DashState {
  view: View;
  video: string;
  // Filters (AnalyticsFilter); lists match any of their values.
  variants: string[];
  ages: string[];
  genders: string[];
  regions: string[];
  emotions: string[];
  startS: number | null; // video time range, whole seconds [start, end)
  endS: number | null;
  from: string; // session dates, YYYY-MM-DD, both days included
  to: string;
  minAttention: number | null; // 0..1
  passes: Passes;
  // A/B and segments views
  a: string;
  b: string;
  metric: string;
  segment: SegmentName;
}

export const AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];

const list = (p: URLSearchParams, name: string): string[] =>
  (p.get(name) ?? "").split(",").map((s) => s.trim()).filter((s, i, all) => s !== "" && all.indexOf(s) === i);
const int = (p: URLSearchParams, name: string): number | null => {
  const v = p.get(name);
  return v !== null && /^\d+$/.test(v) ? Number(v) : null;
};
const day = (p: URLSearchParams, name: string): string => (/^\d{4}-\d{2}-\d{2}$/.test(p.get(name) ?? "") ? p.get(name)! : "");

export function parseState(search: string): DashState {
  const p = new URLSearchParams(search);
  const view = p.get("view") as View;
  const share = Number(p.get("minAttention"));
  const passes = p.get("passes") as Passes;
  const segment = p.get("segment") as SegmentName;
  return {
    view: VIEWS.includes(view) ? view : p.get("video") ? "video" : "campaigns",
    video: p.get("video") ?? "",
    variants: list(p, "variant"),
    ages: list(p, "age"),
    genders: list(p, "gender"),
    regions: list(p, "region"),
    emotions: list(p, "emotions"),
    startS: int(p, "start"),
    endS: int(p, "end"),
    from: day(p, "from"),
    to: day(p, "to"),
    minAttention: p.has("minAttention") && share >= 0 && share <= 1 ? share : null,
    passes: ["first", "rewatches", "all"].includes(passes) ? passes : "first",
    a: p.get("a") ?? "",
    b: p.get("b") ?? "",
    metric: p.get("metric") ?? "",
    segment: ["age_band", "gender", "region", "variant"].includes(segment) ? segment : "age_band",
  };
}

/** The filter part of the query string: also what /api/report and /api/export are given. */
export function filterParams(s: DashState): URLSearchParams {
  const p = new URLSearchParams();
  const put = (name: string, v: string | number | null) => {
    if (v !== null && v !== "") p.set(name, String(v));
  };
  put("variant", s.variants.join(","));
  put("age", s.ages.join(","));
  put("gender", s.genders.join(","));
  put("region", s.regions.join(","));
  put("emotions", s.emotions.join(","));
  put("start", s.startS);
  put("end", s.endS);
  put("from", s.from);
  put("to", s.to);
  put("minAttention", s.minAttention);
  if (s.passes !== "first") p.set("passes", s.passes);
  return p;
}

export function toSearch(s: DashState): string {
  const p = new URLSearchParams();
  if (s.view !== "campaigns") p.set("view", s.view);
  if (s.video) p.set("video", s.video);
  for (const [k, v] of filterParams(s)) p.set(k, v);
  if (s.view === "ab") {
    if (s.a) p.set("a", s.a);
    if (s.b) p.set("b", s.b);
  }
  if ((s.view === "ab" || s.view === "segments") && s.metric) p.set("metric", s.metric);
  if (s.view === "segments") p.set("segment", s.segment);
  const q = p.toString();
  return q ? `?${q}` : "";
}

const PASSES: Record<Passes, PassSelection> = {
  first: PassSelection.FIRST, rewatches: PassSelection.REWATCHES, all: PassSelection.ALL,
};
export const SEGMENT_FIELDS: Record<SegmentName, SegmentField> = {
  age_band: SegmentField.AGE_BAND, gender: SegmentField.GENDER, region: SegmentField.REGION, variant: SegmentField.VARIANT,
};

/** The AnalyticsFilter message: a translation of the URL, no analytics. "to" is a whole day,
 *  so the exclusive upper bound is the next midnight (UTC). */
export function toFilter(s: DashState, opts: { withVariants?: boolean } = {}): AnalyticsFilter {
  const midnight = (d: string, plusDays = 0) => timestampFromDate(new Date(Date.parse(`${d}T00:00:00Z`) + plusDays * 86_400_000));
  return create(AnalyticsFilterSchema, {
    variantIds: opts.withVariants === false ? [] : s.variants,
    ageBands: s.ages,
    genders: s.genders,
    regions: s.regions,
    emotions: s.emotions,
    startS: s.startS ?? undefined,
    endS: s.endS ?? undefined,
    sessionsFrom: s.from ? midnight(s.from) : undefined,
    sessionsTo: s.to ? midnight(s.to, 1) : undefined,
    minAttentionShare: s.minAttention ?? undefined,
    passes: PASSES[s.passes],
  });
}
