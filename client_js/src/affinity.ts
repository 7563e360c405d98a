// Session affinity: a gateway in front of several servers hashes on this header
// (deploy/kubernetes, Envoy RING_HASH), so every call of one session reaches the same server
// while it lives. StartSession has no session id yet and may land anywhere.
import type { Interceptor } from "@connectrpc/connect";

export const SESSION_HEADER = "x-affectline-session";

export const sessionAffinity: Interceptor = (next) => async (req) => {
  const id = req.stream ? undefined : (req.message as { sessionId?: unknown }).sessionId;
  if (typeof id === "string" && id !== "") req.header.set(SESSION_HEADER, id);
  return next(req);
};
