// The campaign list (ListCampaigns): each video with its variants, viewers, last session,
// headline scores and where they stand among the other videos (norm percentile).
import type { Campaign, Norm } from "../../gen/affectline/v1/analytics_pb";
import { plain, type Ctx } from "../context";
import { h, panel } from "../dom";
import { date, isSynthetic, label, num } from "../format";

function normCell(n: Norm | undefined): HTMLElement {
  if (!n) return h("td", {}, "—");
  const where = n.percentile === undefined
    ? h("small", {}, "no norm yet")
    : h("small", {}, `${num(n.percentile, 0)}th pct of ${n.normSize}`);
  return h("td", { class: "num" }, num(n.score, 3), h("br"), where);
}

export async function campaignsView(ctx: Ctx, root: HTMLElement): Promise<void> {
  const campaigns = await ctx.campaigns();
  ctx.surface.answers.campaigns = plain(campaigns);
  const metrics = [...new Set(campaigns.flatMap((c) => c.scores.map((s) => s.metric)))];
  const link = (c: Campaign, view: string, text: string) => {
    const a = h("a", { href: `?view=${view}&video=${encodeURIComponent(c.videoId)}`, class: "button", "data-video": c.videoId, "data-view": view }, text);
    a.addEventListener("click", (ev) => {
      ev.preventDefault();
      ctx.navigate({ view: view as Ctx["state"]["view"], video: c.videoId });
    });
    return a;
  };
  const rows = campaigns.map((c) => h("tr", {},
    h("th", { scope: "row" }, c.title || c.videoId,
      isSynthetic(c.title, c.videoId) ? h("span", { class: "badge synthetic" }, "synthetic data") : null,
      h("br"), h("small", {}, c.videoId)),
    h("td", {}, c.variants.map((v) => h("div", {}, `${v.variantId || "(default)"}: ${v.viewers}`))),
    h("td", { class: "num" }, String(c.viewers)),
    h("td", {}, date(c.lastSessionAt)),
    ...metrics.map((m) => normCell(c.scores.find((s) => s.metric === m))),
    h("td", { class: "actions" }, link(c, "video", "Open"),
      c.variants.length >= 2 ? link(c, "ab", "A/B") : null, link(c, "segments", "Segments"))));
  const table = h("table", { class: "campaigns" },
    h("caption", {}, "Scores are means over viewers; percentile: share of the other videos scoring at or below."),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Video"), h("th", { scope: "col" }, "Variants: viewers"),
      h("th", { scope: "col" }, "Viewers"), h("th", { scope: "col" }, "Last session"),
      ...metrics.map((m) => h("th", { scope: "col" }, label(m))), h("th", { scope: "col" }, ""))),
    h("tbody", {}, rows));
  root.append(panel("Campaigns", "viewers; scores 0–1 (sentiment −1…+1) with norm percentile",
    campaigns.length ? h("div", { class: "scroll" }, table) : h("p", {}, "No videos with sessions yet.")));
}
