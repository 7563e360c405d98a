// The dashboard's only way to numbers: AnalyticsService and LiveService over gRPC-web, with the
// analyst's API key as a bearer header. The key is kept in sessionStorage: it lives as long as
// the tab and is never written to the URL, a cookie or localStorage.
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AnalyticsService } from "../gen/affectline/v1/analytics_pb";
import { LiveService } from "../gen/affectline/v1/live_pb";

const KEY_SLOT = "affectline.dashboard.apiKey";

export const apiKey = {
  get: (): string => sessionStorage.getItem(KEY_SLOT) ?? "",
  set: (key: string): void => sessionStorage.setItem(KEY_SLOT, key.trim()),
  clear: (): void => sessionStorage.removeItem(KEY_SLOT),
};

const bearer: Interceptor = (next) => (req) => {
  const key = apiKey.get();
  if (key) req.header.set("authorization", `Bearer ${key}`);
  return next(req);
};

export const transport = createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [bearer] });
export const analytics = createClient(AnalyticsService, transport);
export const live = createClient(LiveService, transport);

/** A sentence for the analyst, from any error an RPC or fetch raised. */
export function explain(err: unknown, what = "the server"): string {
  if (err instanceof DOMException && err.name === "AbortError") return "cancelled";
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.Unauthenticated:
      return `The API key was not accepted (${e.rawMessage}). Check it, or make one with: affectline keys create --name dashboard --scope analytics:read`;
    case Code.PermissionDenied:
      return `This API key lacks the scope needed (${e.rawMessage}); it needs analytics:read.`;
    case Code.Unimplemented:
      return `This server does not offer ${what} yet (${e.rawMessage}).`;
    case Code.NotFound:
      return `Nothing found: ${e.rawMessage}`;
    case Code.Unavailable:
      return `The server cannot be reached (${e.rawMessage}); retrying may help.`;
    default:
      return `${what} failed: ${e.rawMessage || e.message}`;
  }
}

export const isAuthError = (err: unknown): boolean => {
  const c = ConnectError.from(err).code;
  return c === Code.Unauthenticated || c === Code.PermissionDenied;
};

/** Downloads a file an HTTP endpoint makes (reports, exports), sending the key as a header
 *  (so it never lands in a URL or a server log). Returns a message for the analyst. */
export async function download(path: string, params: URLSearchParams, fallbackName: string): Promise<string> {
  const res = await fetch(`${path}?${params}`, { headers: { authorization: `Bearer ${apiKey.get()}` } });
  if (res.status === 404 || res.status === 405) return `This server has no ${path} endpoint yet: use the CLI instead.`;
  if (res.status === 401 || res.status === 403) return "The API key was not accepted for this download.";
  if (!res.ok) return `${path} answered ${res.status}: ${(await res.text()).slice(0, 200)}`;
  const name = /filename="?([^";]+)"?/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? fallbackName;
  const url = URL.createObjectURL(await res.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return `Downloaded ${name}.`;
}
