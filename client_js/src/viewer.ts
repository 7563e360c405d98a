// The viewer page (/watch/<video id>): notice and consent first, then playback; with consent,
// camera -> face detection -> eye-aligned crop -> encrypted batches, timed by the video's clock.
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { Human } from "@vladmandic/human";
import { SessionService, StartSessionRequestSchema } from "./gen/affectline/v1/session_pb";
import { sessionAffinity } from "./affinity";
import { deriveBatchKey, newKeyPair } from "./e2ee";
import { Cropper, DEFAULT_CROP, detect, loadDetector, type Face } from "./face";
import { Uploader, sleep } from "./uploader";

export const NOTICE_VERSION = "2026-12-06"; // bump with every change to the notice text in watch.html
const TARGET_FPS = 30;
const FRAMES_PER_BATCH = 10; // one batch per ~333 ms at 30 fps
const ASSETS = "/app";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const film = $<HTMLVideoElement>("film");
const cam = $<HTMLVideoElement>("cam");
const client = createClient(SessionService, createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true, interceptors: [sessionAffinity] }));
const videoId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() ?? "");
const variantId = new URLSearchParams(location.search).get("variant") ?? "";

// Everything a test or a curious viewer may read (never the crops or the key).
const stats = {
  state: "notice", sessionId: "", framesCaptured: 0, framesWithFace: 0, detectMsAvg: 0, cropMsAvg: 0,
  cropEncryptMsPerFrame: 0, detectEvery: 1, consentAt: 0, firstAckMs: -1, fps: 0, error: "",
  uploader: null as Uploader["stats"] | null,
  trackStates: () => (stream ? stream.getTracks().map((t) => t.readyState) : []),
};
(window as unknown as { affectline: typeof stats }).affectline = stats;

let human: Promise<Human> | null = null;
let stream: MediaStream | null = null;
let uploader: Uploader | null = null;
let session: { id: string; token: string } | null = null;
let capturing = false;
let cropSize = DEFAULT_CROP; // the server's CropSpec (the model's input size) replaces it on start
let buffering = false;

function show(state: string, message = ""): void {
  stats.state = state;
  document.body.dataset.state = state;
  $("status").textContent = message;
}

async function loadVideo(): Promise<void> {
  const res = await fetch(`/api/videos/${encodeURIComponent(videoId)}`);
  if (!res.ok) throw new Error(`unknown video ${videoId}`);
  const info = await res.json();
  $("title").textContent = info.title || videoId;
  film.src = info.mediaUrl;
}

async function startCamera(): Promise<void> {
  stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: { width: 640, height: 480, frameRate: TARGET_FPS } });
  cam.srcObject = stream;
  await cam.play();
}

function stopCamera(): void {
  stream?.getTracks().forEach((t) => t.stop()); // the camera light goes off
  capturing = false;
}

async function consent(): Promise<void> {
  stats.consentAt = performance.now();
  show("starting", "Starting the camera…");
  human ??= loadDetector(ASSETS);
  const form = new FormData($<HTMLFormElement>("demographics"));
  const demo = { ageBand: String(form.get("age") ?? ""), gender: String(form.get("gender") ?? ""), region: String(form.get("region") ?? "") };
  const shareDemo = !!(demo.ageBand || demo.gender || demo.region);
  const scopes = ["emotion", "attention", ...(shareDemo ? ["demographics"] : [])];
  try {
    const [kp] = await Promise.all([newKeyPair(), startCamera()]);
    const started = await client.startSession(create(StartSessionRequestSchema, {
      videoId, variantId, clientPublicKey: kp.publicRaw, captureFps: TARGET_FPS, framesPerBatch: FRAMES_PER_BATCH,
      viewer: {
        viewerId: viewerId(),
        consent: { noticeVersion: NOTICE_VERSION, consentedAt: timestampNow(), scopes },
        demographics: shareDemo ? demo : undefined,
      },
    }));
    const key = await deriveBatchKey(kp, started.serverPublicKey, started.hkdfSalt);
    session = { id: started.sessionId, token: started.sessionToken };
    stats.sessionId = session.id;
    const maxFrames = started.cropSpec?.maxFramesPerBatch || FRAMES_PER_BATCH;
    const perBatch = Math.min(FRAMES_PER_BATCH, maxFrames);
    cropSize = started.cropSpec?.width || DEFAULT_CROP;
    uploader = new Uploader(client, session.id, session.token, key, perBatch, TARGET_FPS, Math.min(maxFrames, 2 * perBatch));
    uploader.pace(started.firstBatchInMs); // send pacing: the server's slot for this session
    stats.uploader = uploader.stats;
    await human;
    show("measuring", "Measuring. You can pause or withdraw at any time.");
    void film.play();
    void captureLoop();
  } catch (err) {
    stopCamera();
    show("error", `Could not start measuring (${(err as Error).message}). You can still watch.`);
    stats.error = String(err);
    void film.play();
  }
}

function decline(): void {
  show("declined", "No camera, no measurement. Enjoy the video.");
  void film.play();
}

async function withdraw(): Promise<void> {
  stopCamera();
  uploader?.stop(); // unsent frames are discarded: withdrawal means stop, now
  show("withdrawn", "Withdrawn: the camera is off and the session has ended.");
  if (session) await client.endSession({ sessionId: session.id, sessionToken: session.token, reason: "withdrawn" }).catch(() => {});
  session = null;
}

async function togglePause(): Promise<void> {
  if (stats.state === "measuring") {
    stopCamera();
    await uploader?.seal();
    show("paused", "Measurement paused; the camera is off.");
  } else if (stats.state === "paused") {
    await startCamera();
    show("measuring", "Measuring. You can pause or withdraw at any time.");
    void captureLoop();
  }
}

async function finish(): Promise<void> {
  if (!session || !uploader) return;
  stopCamera();
  await uploader.drain(15_000);
  await client.endSession({ sessionId: session.id, sessionToken: session.token, reason: "completed" }).catch(() => {});
  session = null;
  show("done", "Thank you. The session has ended and the camera is off.");
}

// Frames are taken only while the film really plays: none while paused, seeking, buffering
// or ended, so every frame's video_time_ms is a moment the viewer actually saw.
const filmPlaying = () => !film.paused && !film.ended && !film.seeking && !buffering && film.readyState >= 3;

async function captureLoop(): Promise<void> {
  if (capturing) return;
  capturing = true;
  const h = await human!;
  const cropper = new Cropper(cropSize);
  let n = 0, last: Face | null = null, detectEma = 0, cropEma = 0;
  const started = performance.now();
  while (capturing && uploader) {
    const t0 = performance.now();
    if (filmPlaying() && cam.readyState >= 2) {
      const videoTimeMs = film.currentTime * 1000, capturedAtMs = Date.now();
      // Detect every k-th frame and hold the last landmarks in between when detection is slower than capture.
      if (n % stats.detectEvery === 0) {
        last = await detect(h, cam);
        detectEma = detectEma ? 0.9 * detectEma + 0.1 * (performance.now() - t0) : performance.now() - t0;
        stats.detectEvery = Math.min(4, 1 + Math.floor(detectEma / (1000 / TARGET_FPS)));
      }
      const c0 = performance.now();
      const crop = last ? cropper.crop(cam, last) : null;
      if (crop) cropEma = cropEma ? 0.9 * cropEma + 0.1 * (performance.now() - c0) : performance.now() - c0;
      if (!capturing) break; // withdrawn during detection
      uploader.add({ videoTimeMs, capturedAtMs, crop, yawDeg: last?.yawDeg, boxSize: last?.boxSize });
      if (n === 0) void uploader.seal(); // the first frame goes out at once
      n++;
      stats.framesCaptured++;
      if (crop) stats.framesWithFace++;
      stats.detectMsAvg = detectEma;
      stats.cropMsAvg = cropEma;
      const u = uploader.stats;
      stats.cropEncryptMsPerFrame = cropEma + (u.sealed ? u.encryptMsTotal / stats.framesCaptured : 0);
      stats.fps = (n * 1000) / (performance.now() - started);
      if (u.firstAckAt && stats.firstAckMs < 0) stats.firstAckMs = u.firstAckAt - stats.consentAt;
      drawPreview(last);
    }
    await sleep(Math.max(0, 1000 / TARGET_FPS - (performance.now() - t0)));
  }
}

function drawPreview(face: Face | null): void {
  const canvas = $<HTMLCanvasElement>("preview");
  if (!$<HTMLInputElement>("show-preview").checked) { canvas.hidden = true; return; }
  canvas.hidden = false;
  const ctx = canvas.getContext("2d")!;
  const s = canvas.width / (cam.videoWidth || 640);
  ctx.drawImage(cam, 0, 0, canvas.width, canvas.height);
  if (face) {
    ctx.strokeStyle = "#3f3";
    ctx.lineWidth = 2;
    ctx.strokeRect(face.box[0] * s, face.box[1] * s, face.box[2] * s, face.box[3] * s);
  }
}

function viewerId(): string {
  // Pseudonymous and local to this browser; never a name or an email.
  let id = localStorage.getItem("affectline.viewer");
  if (!id) localStorage.setItem("affectline.viewer", (id = `v-${crypto.randomUUID()}`));
  return id;
}

film.addEventListener("waiting", () => { buffering = true; });
film.addEventListener("playing", () => { buffering = false; });
film.addEventListener("pause", () => { void uploader?.seal(); });
film.addEventListener("ended", () => { void finish(); });
$("consent").addEventListener("click", () => void consent());
$("decline").addEventListener("click", decline);
$("withdraw").addEventListener("click", () => void withdraw());
$("pause").addEventListener("click", () => void togglePause());
loadVideo().then(() => {
  human = loadDetector(ASSETS); // models and wasm load while the notice is read: no camera, no data
  show("notice");
}).catch((err) => show("error", String(err)));
