// Batches frames, encrypts each batch once and sends it as a unary PushCrops over gRPC-web.
// A batch keeps its (seq, nonce, ciphertext) until acked, so a retry after a lost ack or a
// server restart is byte-identical (the server answers duplicate=true and stores nothing twice).
// Send pacing: when the server names a slot (StartSessionResponse.first_batch_in_ms, then each
// ack's next_batch_in_ms), a batch is sealed at the slot instead of every batchSize frames, so
// the server's sessions arrive spread over the period instead of together. The capture rate
// and the frames' latency do not change; only where a batch starts and ends moves.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { CropBatchSchema, CropFrameSchema, type SessionService } from "./gen/affectline/v1/session_pb";
import { encryptBatch } from "./e2ee";

export interface FrameIn {
  videoTimeMs: number;
  capturedAtMs: number;
  crop: Uint8Array | null; // null: no face
  yawDeg?: number;
  boxSize?: number;
}

interface Sealed { seq: bigint; nonce: Uint8Array; ciphertext: Uint8Array; frames: number }

const MAX_QUEUE = 600; // batches (~200 s at 30 fps): bounded, the oldest is dropped beyond it
const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.DeadlineExceeded, Code.Internal, Code.Aborted, Code.Canceled]);

export class Uploader {
  stats = { sealed: 0, acked: 0, framesAcked: 0, duplicates: 0, retries: 0, dropped: 0, backoffs: 0,
    encryptMsTotal: 0, firstAckAt: 0, pacingHints: 0, lastError: "", ackedSeqs: [] as number[] };
  private pending: FrameIn[] = [];
  private queue: Sealed[] = [];
  private seq = 0n;
  private sending = false;
  private stopped = false;
  private windowStart = performance.now();
  private windowFrames = 0;
  private slotAt = 0; // performance.now() of the server's next slot for this session; 0: not paced

  /** maxFrames: the server's limit per batch; a paced batch may grow up to it if a slot is late. */
  constructor(private client: Client<typeof SessionService>, private sessionId: string, private token: string,
              private key: CryptoKey, private batchSize: number, private fps = 30,
              private maxFrames = 2 * batchSize) {}

  /** The server's pacing hint: its next slot for this session is `inMs` from now (absent: unpaced). */
  pace(inMs: number | undefined): void {
    if (inMs === undefined) return;
    this.slotAt = performance.now() + inMs;
    this.stats.pacingHints++;
  }

  add(frame: FrameIn): void {
    if (this.stopped) return;
    this.pending.push(frame);
    this.windowFrames++;
    if (!this.slotAt) {
      if (this.pending.length >= this.batchSize) void this.seal();
      return;
    }
    const now = performance.now(), halfFrame = 500 / this.fps, period = (this.batchSize * 1000) / this.fps;
    if (now >= this.slotAt - halfFrame || this.pending.length >= this.maxFrames) {
      while (this.slotAt - halfFrame <= now) this.slotAt += period; // until the next ack names the slot again
      void this.seal();
    }
  }

  /** Seal what is pending (e.g. on pause) so no frame waits for a full batch. */
  async seal(): Promise<void> {
    if (!this.pending.length || this.stopped) return;
    const frames = this.pending;
    this.pending = [];
    const now = performance.now();
    const fps = (this.windowFrames / Math.max(1e-3, now - this.windowStart)) * 1000;
    this.windowStart = now;
    this.windowFrames = 0;
    const t0 = performance.now();
    const batch = create(CropBatchSchema, {
      achievedFps: fps,
      frames: frames.map((f) => create(CropFrameSchema, {
        videoTimeMs: BigInt(Math.max(0, Math.round(f.videoTimeMs))),
        capturedAt: timestampFromMs(Math.round(f.capturedAtMs)),
        facePresent: f.crop !== null,
        crop: f.crop ?? new Uint8Array(0),
        headYawDeg: f.yawDeg,
        faceBoxSize: f.boxSize,
      })),
    });
    const seq = this.seq++;
    const { nonce, ciphertext } = await encryptBatch(this.key, this.sessionId, seq, toBinary(CropBatchSchema, batch));
    this.stats.encryptMsTotal += performance.now() - t0;
    this.stats.sealed++;
    this.queue.push({ seq, nonce, ciphertext, frames: frames.length });
    while (this.queue.length > MAX_QUEUE) { this.queue.shift(); this.stats.dropped++; }
    void this.pump();
  }

  get backlog(): number { return this.queue.length + (this.pending.length ? 1 : 0); }

  /** Stops sending; unsent frames are discarded (withdrawal). */
  stop(): void { this.stopped = true; this.queue = []; this.pending = []; }

  /** Seals the rest and waits (bounded) until every batch is acked. */
  async drain(timeoutMs: number): Promise<boolean> {
    await this.seal();
    const end = performance.now() + timeoutMs;
    while (this.queue.length && performance.now() < end) await sleep(50);
    return this.queue.length === 0;
  }

  // One batch in flight, in seq order: simple, and 3 batches/s need no more.
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    let delay = 100;
    try {
      while (this.queue.length && !this.stopped) {
        const b = this.queue[0];
        try {
          const ack = await this.client.pushCrops(
            { sessionId: this.sessionId, sessionToken: this.token, seq: b.seq, nonce: b.nonce, ciphertext: b.ciphertext },
            { timeoutMs: 10_000 });
          if (this.queue[0] === b) this.queue.shift();
          this.stats.acked++;
          this.stats.framesAcked += b.frames;
          this.stats.ackedSeqs.push(Number(ack.seq));
          if (ack.duplicate) this.stats.duplicates++;
          this.pace(ack.nextBatchInMs);
          if (!this.stats.firstAckAt) this.stats.firstAckAt = performance.now();
          delay = 100;
        } catch (err) {
          const e = ConnectError.from(err);
          this.stats.lastError = `${Code[e.code]}: ${e.rawMessage}`;
          if (e.code === Code.ResourceExhausted) {
            this.stats.backoffs++; // server backpressure: wait longer before the same batch again
            delay = Math.min(8000, delay * 2 + 500);
          } else if (RETRYABLE.has(e.code)) {
            this.stats.retries++; // lost ack or outage: resend the byte-identical batch
            delay = Math.min(2000, delay * 2);
          } else {
            this.queue.shift(); // the server will never take this batch (bad request, session ended)
            this.stats.dropped++;
            if (e.code === Code.FailedPrecondition || e.code === Code.NotFound || e.code === Code.Unauthenticated) this.stop();
            continue;
          }
          await sleep(delay * (0.75 + Math.random() / 2));
        }
      }
    } finally {
      this.sending = false;
    }
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
