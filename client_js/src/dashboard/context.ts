// What every view is given: the URL state, a way to change it, the signed-in clients' shared
// caches, and the test surface (window.affectlineDashboard).
import type { Campaign } from "../gen/affectline/v1/analytics_pb";
import type { CurveChart } from "./charts";
import type { DashState } from "./state";

export interface Surface {
  view: string;
  state: DashState | null;
  // "loading" | "ready" | "error": a test waits for ready after each navigation
  status: string;
  message: string;
  error: string;
  signedIn: boolean;
  charts: Record<string, CurveChart>;
  // The RPC answers the view drew, as JSON (bigints as numbers), for a test to compare with.
  answers: Record<string, unknown>;
  video: HTMLVideoElement | null;
  moments: { startS: number; label: string }[];
  live: { snapshots: number; reconnects: number; status: string; last: unknown };
  cursorTimes(): (number | null)[];
  drawn(chart: string): unknown;
}

export interface Ctx {
  state: DashState;
  navigate(change: Partial<DashState>, replace?: boolean): void;
  campaigns(): Promise<Campaign[]>;
  say(message: string, kind?: "info" | "error"): void;
  surface: Surface;
  signal: AbortSignal; // aborted when the view is left
  onLeave(cleanup: () => void): void;
}

/** Protobuf messages -> plain JSON for the test surface (int64 come as bigint). */
export function plain(message: unknown): unknown {
  return JSON.parse(JSON.stringify(message, (_k, v) => (typeof v === "bigint" ? Number(v) : Number.isNaN(v) ? null : v)));
}
