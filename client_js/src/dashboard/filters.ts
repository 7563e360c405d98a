// The filter form: every AnalyticsFilter field, each with a label. Applying it rewrites the
// URL (so the view can be shared) and the view reloads its numbers from the API.
import type { Ctx } from "./context";
import { h, labelled } from "./dom";
import { EMOTIONS } from "./format";
import { AGE_BANDS, type DashState, type Passes } from "./state";

const ALL = "All viewers (no filter)";
const csv = (v: string): string[] => v.split(",").map((s) => s.trim()).filter(Boolean);
const intOrNull = (v: string): number | null => (v.trim() === "" ? null : Math.max(0, Math.floor(Number(v))));

export function filterPanel(ctx: Ctx, variants: string[]): HTMLElement {
  const s = ctx.state;
  const variant = h("select", { name: "variant", id: "f-variant" },
    h("option", { value: "" }, "all variants"),
    ...variants.map((v) => h("option", { value: v, selected: s.variants.length === 1 && s.variants[0] === v }, v || "(default)")));
  // Free text with suggestions: stores hold whatever bands their viewer pages offered.
  const ages = h("input", { name: "age", id: "f-age", value: s.ages.join(","), placeholder: "any, e.g. 25-34,35-44", size: 10, list: "age-bands" });
  const bands = h("datalist", { id: "age-bands" }, ...AGE_BANDS.map((a) => h("option", { value: a })));
  const gender = h("input", { name: "gender", id: "f-gender", value: s.genders.join(","), placeholder: "any", size: 10 });
  const region = h("input", { name: "region", id: "f-region", value: s.regions.join(","), placeholder: "any, e.g. DE,FR", size: 10 });
  const emotions = h("fieldset", { class: "checks" }, h("legend", {}, "Emotions reported (none ticked: all)"),
    ...EMOTIONS.map((e) => h("label", {}, h("input", { type: "checkbox", name: "emotions", value: e, checked: s.emotions.includes(e) }), e)));
  const start = h("input", { type: "number", name: "start", id: "f-start", min: 0, step: 1, value: s.startS ?? "", placeholder: "0" });
  const end = h("input", { type: "number", name: "end", id: "f-end", min: 1, step: 1, value: s.endS ?? "", placeholder: "end" });
  const from = h("input", { type: "date", name: "from", id: "f-from", value: s.from });
  const to = h("input", { type: "date", name: "to", id: "f-to", value: s.to });
  const minAttention = h("input", { type: "number", name: "minAttention", id: "f-min-attention", min: 0, max: 1, step: 0.05,
    value: s.minAttention ?? "", placeholder: "0" });
  const passes = h("select", { name: "passes", id: "f-passes" },
    ...([["first", "first viewing"], ["rewatches", "rewatches only"], ["all", "every viewing"]] as const)
      .map(([v, t]) => h("option", { value: v, selected: s.passes === v }, t)));

  const form = h("form", { class: "filters", id: "filters", "aria-label": "filters" },
    labelled("Variant", variant),
    labelled("Age bands", ages, "comma-separated"), bands,
    labelled("Gender", gender, "comma-separated, as viewers typed it"),
    labelled("Region", region, "comma-separated"),
    emotions,
    h("div", { class: "row" }, labelled("From second", start), labelled("to second", end)),
    h("div", { class: "row" }, labelled("Sessions from", from), labelled("to (incl.)", to)),
    labelled("Minimum attention share", minAttention, "0–1: viewers attentive at least this share of the time"),
    labelled("Viewings", passes),
    h("div", { class: "row" },
      h("button", { type: "submit", id: "apply-filters" }, "Apply filters"),
      h("button", { type: "button", id: "reset-filters", class: "secondary" }, "Reset")));

  form.addEventListener("submit", (ev) => {
    ev.preventDefault(); // the CSP forbids form submissions; the URL is the state
    const f = new FormData(form);
    const change: Partial<DashState> = {
      variants: f.get("variant") ? [String(f.get("variant"))] : [],
      ages: csv(String(f.get("age") ?? "")),
      genders: csv(String(f.get("gender") ?? "")),
      regions: csv(String(f.get("region") ?? "")),
      emotions: f.getAll("emotions").map(String),
      startS: intOrNull(String(f.get("start") ?? "")),
      endS: intOrNull(String(f.get("end") ?? "")),
      from: String(f.get("from") ?? ""),
      to: String(f.get("to") ?? ""),
      minAttention: String(f.get("minAttention") ?? "").trim() === "" ? null : Math.min(1, Math.max(0, Number(f.get("minAttention")))),
      passes: String(f.get("passes")) as Passes,
    };
    ctx.navigate(change);
  });
  form.querySelector("#reset-filters")!.addEventListener("click", () => ctx.navigate({
    variants: [], ages: [], genders: [], regions: [], emotions: [], startS: null, endS: null, from: "", to: "", minAttention: null, passes: "first",
  }));
  // Collapsed unless a filter is on: the curves matter more than the form on a small screen.
  const summary = h("summary", {}, h("h3", {}, "Filters", h("span", { class: "unit" }, ` (${filterSummary(s)})`)));
  const details = h("details", { class: "panel filters-panel", id: "filters-panel" }, summary, form);
  details.open = filterSummary(s) !== ALL || window.matchMedia("(min-width: 901px)").matches;
  return details;
}

/** One line saying which filters are on, for the panel titles' readers. */
export function filterSummary(s: DashState): string {
  const parts: string[] = [];
  if (s.variants.length) parts.push(`variant ${s.variants.join("/")}`);
  if (s.ages.length) parts.push(`age ${s.ages.join("/")}`);
  if (s.genders.length) parts.push(`gender ${s.genders.join("/")}`);
  if (s.regions.length) parts.push(`region ${s.regions.join("/")}`);
  if (s.emotions.length) parts.push(`emotions ${s.emotions.join("/")}`);
  if (s.startS !== null || s.endS !== null) parts.push(`seconds ${s.startS ?? 0}–${s.endS ?? "end"}`);
  if (s.from || s.to) parts.push(`sessions ${s.from || "…"} to ${s.to || "…"}`);
  if (s.minAttention !== null) parts.push(`attention ≥ ${s.minAttention}`);
  if (s.passes !== "first") parts.push(`viewings: ${s.passes}`);
  return parts.length ? `Filtered: ${parts.join(", ")}` : ALL;
}
