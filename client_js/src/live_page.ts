// The live page (/live.html#key=<API key>&video=<id>): what is being watched right now.
// The key sits in the URL fragment, which the browser never sends to a server or logs.
import { liveTransport, watchLive, type LiveSnapshot } from "./live";

const EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"] as const;
const params = new URLSearchParams(location.hash.slice(1));
const videoIds = params.getAll("video");
const intervalMs = Number(params.get("interval_ms") ?? 0);

// What a test (or a curious analyst) may read: aggregates only, as the server sends them.
const state = { snapshots: 0, last: null as unknown, error: "", done: false };
(window as unknown as { affectlineLive: typeof state }).affectlineLive = state;

function cell(text: string): HTMLTableCellElement {
  const td = document.createElement("td");
  td.textContent = text; // text only: ids come from clients, never parsed as HTML
  return td;
}

function render(s: LiveSnapshot): void {
  const rows = s.videos.map((v) => {
    const last = v.seconds.at(-1);
    const scores = last?.meanScores;
    const mix = scores
      ? EMOTIONS.map((e) => `${e} ${(scores[e] * 100).toFixed(0)}%`).join(" · ")
      : last?.suppressed ? `withheld (fewer than ${s.minViewers} viewers)` : "no faces";
    const tr = document.createElement("tr");
    tr.append(cell(v.videoId), cell(String(v.activeSessions)), cell(v.framesPerSecond.toFixed(1)),
      cell(String(last?.viewers ?? 0)), cell(mix));
    return tr;
  });
  document.getElementById("totals")!.textContent =
    `${s.activeSessions} active sessions, ${s.framesPerSecond.toFixed(1)} frames/s (last ${s.windowS} s)`;
  document.getElementById("videos")!.replaceChildren(...rows);
}

async function main(): Promise<void> {
  const transport = liveTransport(location.origin, params.get("key") ?? "");
  try {
    for await (const snapshot of watchLive(transport, { videoIds, intervalMs })) {
      state.snapshots += 1;
      state.last = JSON.parse(JSON.stringify(snapshot, (_k, v) => (typeof v === "bigint" ? Number(v) : v)));
      render(snapshot);
    }
  } catch (err) {
    state.error = String(err);
    document.getElementById("totals")!.textContent = `stopped: ${state.error}`;
  }
  state.done = true;
}

void main();
