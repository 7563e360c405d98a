// The analyst's dashboard (/dashboard): sign-in with an API key, then views chosen by the URL.
// Every number comes from AnalyticsService / LiveService; this code only lays them out.
import type { Campaign } from "../gen/affectline/v1/analytics_pb";
import { analytics, apiKey, explain, isAuthError } from "./api";
import type { Ctx, Surface } from "./context";
import { $, clear } from "./dom";
import { parseState, toSearch, toFilter, type DashState, type View } from "./state";
import { abView } from "./views/ab";
import { campaignsView } from "./views/campaigns";
import { liveView } from "./views/live";
import { segmentsView } from "./views/segments";
import { videoView } from "./views/video";

const VIEWS: Record<View, (ctx: Ctx, root: HTMLElement) => Promise<void>> = {
  campaigns: campaignsView, video: videoView, ab: abView, segments: segmentsView, live: liveView,
};
const NEEDS_VIDEO: View[] = ["video", "ab", "segments"];

const surface: Surface = {
  view: "", state: null, status: "loading", message: "", error: "", signedIn: false,
  charts: {}, answers: {}, video: null, moments: [],
  live: { snapshots: 0, reconnects: 0, status: "", last: null },
  cursorTimes: () => Object.values(surface.charts).map((c) => c.cursorTime()),
  drawn: (chart: string) => surface.charts[chart]?.drawn() ?? null,
};
(window as unknown as { affectlineDashboard: Surface }).affectlineDashboard = surface;

const content = $("content");
const message = $("message");
let leave: (() => void)[] = [];
let abort = new AbortController();
let campaignCache: { filterKey: string; list: Promise<Campaign[]> } | null = null;

function say(text: string, kind: "info" | "error" = "info"): void {
  message.textContent = text;
  message.className = kind;
  surface.message = text;
  if (kind === "error") surface.error = text;
}

/** ListCampaigns, once per filter: the list, the headers and the variant pickers share it. */
function campaigns(state: DashState): Promise<Campaign[]> {
  const filter = toFilter({ ...state, variants: [] });
  const filterKey = JSON.stringify(filter, (_k, v) => (typeof v === "bigint" ? String(v) : v));
  if (campaignCache?.filterKey !== filterKey) {
    const list = analytics.listCampaigns({ filter }).then((r) => r.campaigns);
    list.catch(() => { campaignCache = null; });
    campaignCache = { filterKey, list };
  }
  return campaignCache.list;
}

function navigate(change: Partial<DashState>, replace = false): void {
  const next = { ...(surface.state ?? parseState(location.search)), ...change };
  const url = `${location.pathname}${toSearch(next)}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  void render();
}

function markNav(view: View, state: DashState): void {
  for (const a of document.querySelectorAll<HTMLAnchorElement>("#nav a[data-view]")) {
    const v = a.dataset.view as View;
    const needs = NEEDS_VIDEO.includes(v) && !state.video;
    a.hidden = needs;
    a.href = toSearch({ ...state, view: v }) || "?";
    if (v === view) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function render(): Promise<void> {
  // Leave the previous view: cancel its calls and streams, destroy its charts and players.
  abort.abort();
  abort = new AbortController();
  for (const f of leave.splice(0)) f();
  const state = parseState(location.search);
  const view: View = NEEDS_VIDEO.includes(state.view) && !state.video ? "campaigns" : state.view;
  Object.assign(surface, { view, state, status: "loading", error: "", charts: {}, answers: {}, video: null, moments: [] });
  markNav(view, state);
  clear(content);
  say("");
  document.title = `Affectline dashboard · ${view}${state.video ? ` · ${state.video}` : ""}`;
  const signal = abort.signal;
  const ctx: Ctx = {
    state, navigate, say, surface, signal,
    campaigns: () => campaigns(state),
    onLeave: (f) => leave.push(f),
  };
  content.setAttribute("aria-busy", "true");
  try {
    await VIEWS[view](ctx, content);
    if (signal.aborted) return;
    surface.status = "ready";
  } catch (err) {
    if (signal.aborted) return;
    surface.status = "error";
    if (isAuthError(err)) {
      signOut(explain(err));
      return;
    }
    say(explain(err, `the ${view} view`), "error");
  } finally {
    if (!signal.aborted) content.removeAttribute("aria-busy");
  }
}

function showSignIn(show: boolean): void {
  document.body.dataset.signedIn = String(!show);
  surface.signedIn = !show;
  $("signin").hidden = !show;
  $("app").hidden = show;
}

function signOut(why = ""): void {
  apiKey.clear();
  campaignCache = null;
  abort.abort();
  for (const f of leave.splice(0)) f();
  showSignIn(true);
  const out = $("signin-error");
  out.textContent = why;
  surface.error = why;
  surface.status = why ? "error" : "signed-out";
  $<HTMLInputElement>("api-key").focus();
}

async function signIn(key: string): Promise<void> {
  const out = $("signin-error");
  out.textContent = "Checking the key…";
  apiKey.set(key);
  campaignCache = null;
  try {
    // The first call doubles as the key check: UNAUTHENTICATED means a wrong key.
    await campaigns(parseState(location.search));
  } catch (err) {
    if (isAuthError(err)) {
      signOut(explain(err));
      return;
    }
  }
  out.textContent = "";
  showSignIn(false);
  await render();
}

$<HTMLFormElement>("signin-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const key = $<HTMLInputElement>("api-key").value.trim();
  if (!key) {
    $("signin-error").textContent = "Paste an API key first.";
    return;
  }
  void signIn(key);
});
$("signout").addEventListener("click", () => signOut());
$("nav").addEventListener("click", (ev) => {
  const a = (ev.target as HTMLElement).closest<HTMLAnchorElement>("a[data-view]");
  if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey) return; // new tab: a normal link
  ev.preventDefault();
  navigate({ view: a.dataset.view as View });
});
window.addEventListener("popstate", () => void render());

if (apiKey.get()) {
  showSignIn(false);
  void render();
} else {
  showSignIn(true);
  surface.status = "signed-out";
}
