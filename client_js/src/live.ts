// The live feed client: WatchLive over gRPC-web (connect-web streams the response over fetch).
// LiveService needs an API key with the analytics:read scope; it travels as a bearer header.
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { LiveService, type LiveSnapshot } from "./gen/affectline/v1/live_pb";

export type { LiveSnapshot };

export function liveTransport(baseUrl: string, apiKey: string): Transport {
  const bearer: Interceptor = (next) => (req) => {
    if (apiKey) req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  return createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors: [bearer] });
}

export interface WatchOptions {
  videoIds?: string[];
  intervalMs?: number; // 0: the server's default
  signal?: AbortSignal; // aborting ends the stream (the server stops its side at once)
}

export function watchLive(transport: Transport, opts: WatchOptions = {}): AsyncIterable<LiveSnapshot> {
  const client = createClient(LiveService, transport);
  return client.watchLive({ videoIds: opts.videoIds ?? [], intervalMs: opts.intervalMs ?? 0 }, { signal: opts.signal });
}
