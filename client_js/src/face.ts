// In-browser face detection (Human, wasm backend, served locally) and the eye-aligned crop.
import { Human } from "@vladmandic/human";

export const DEFAULT_CROP = 64; // used only if the server's CropSpec names no size
// Where the eyes land in the square crop (fractions of its side): the median eye centres
// measured on FER2013 crops, the framing the models were trained on (docs/model-card.md).
const EYE_L = [0.3, 0.38] as const;
const EYE_R = [0.68, 0.38] as const;

export interface Face {
  eyeL: [number, number]; // image-left eye, source pixels
  eyeR: [number, number];
  nose: [number, number];
  box: [number, number, number, number]; // x, y, w, h
  yawDeg: number;
  boxSize: number; // box side / shorter frame side
}

export async function loadDetector(assetBase: string): Promise<Human> {
  const human = new Human({
    backend: "wasm",
    wasmPath: `${assetBase}/wasm/`,
    modelBasePath: `${assetBase}/models/`,
    debug: false, async: true, warmup: "none", cacheSensitivity: 0,
    filter: { enabled: false },
    face: {
      enabled: true,
      detector: { rotation: false, maxDetected: 5, skipFrames: 0, minConfidence: 0.5, return: false },
      mesh: { enabled: false }, iris: { enabled: false }, emotion: { enabled: false },
      description: { enabled: false }, antispoof: { enabled: false }, liveness: { enabled: false },
      attention: { enabled: false },
    },
    body: { enabled: false }, hand: { enabled: false }, object: { enabled: false },
    gesture: { enabled: false }, segmentation: { enabled: false },
  });
  await human.load();
  return human;
}

/** Largest face in the frame, or null. */
export async function detect(human: Human, video: HTMLVideoElement): Promise<Face | null> {
  const res = await human.detect(video);
  const faces = res.face.filter((f) => f.mesh && f.mesh.length >= 3);
  if (!faces.length) return null;
  const f = faces.reduce((a, b) => (b.box[2] * b.box[3] > a.box[2] * a.box[3] ? b : a));
  // BlazeFace keypoints: 0,1 the eyes, 2 the nose tip (3 mouth, 4,5 ears).
  const [e0, e1, nose] = f.mesh.map((p) => [p[0], p[1]] as [number, number]);
  const [eyeL, eyeR] = e0[0] <= e1[0] ? [e0, e1] : [e1, e0];
  const d = Math.hypot(eyeR[0] - eyeL[0], eyeR[1] - eyeL[1]) || 1;
  // Yaw: the nose tip sits ~0.6 eye distances in front of the eye line, so its sideways offset
  // from the eye midpoint is 0.6*D*sin(yaw) while the eye distance shrinks to D*cos(yaw).
  const ux = (eyeR[0] - eyeL[0]) / d, uy = (eyeR[1] - eyeL[1]) / d;
  const off = (nose[0] - (eyeL[0] + eyeR[0]) / 2) * ux + (nose[1] - (eyeL[1] + eyeR[1]) / 2) * uy;
  const yawDeg = (Math.atan2(off, 0.6 * d) * 180) / Math.PI;
  const short = Math.min(video.videoWidth, video.videoHeight) || 1;
  return { eyeL, eyeR, nose, box: f.box as Face["box"], yawDeg, boxSize: Math.min(1, Math.max(f.box[2], f.box[3]) / short) };
}

export class Cropper {
  private ctx: CanvasRenderingContext2D;
  /** size: the crop's side in pixels, as the server's CropSpec asks (the model's input size). */
  constructor(readonly size: number = DEFAULT_CROP) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true })!;
  }

  /** size x size gray8 crop with the eyes at EYE_L/EYE_R (rotation removed), BT.601 luma. */
  crop(video: HTMLVideoElement, face: Face): Uint8Array {
    const { ctx, size } = this;
    const [lx, ly] = face.eyeL, [rx, ry] = face.eyeR;
    const angle = Math.atan2(ry - ly, rx - lx);
    const scale = ((EYE_R[0] - EYE_L[0]) * size) / (Math.hypot(rx - lx, ry - ly) || 1);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#808080";
    ctx.fillRect(0, 0, size, size);
    // image -> crop: move the eye midpoint to the origin, unrotate, scale, place it.
    ctx.translate(((EYE_L[0] + EYE_R[0]) / 2) * size, EYE_L[1] * size);
    ctx.scale(scale, scale);
    ctx.rotate(-angle);
    ctx.translate(-(lx + rx) / 2, -(ly + ry) / 2);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(video, 0, 0);
    const rgba = ctx.getImageData(0, 0, size, size).data;
    const gray = new Uint8Array(size * size);
    for (let i = 0, j = 0; j < gray.length; i += 4, j++) {
      gray[j] = Math.round(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]);
    }
    return gray;
  }
}
