// Time-series charts on uPlot. All charts of a view share one time axis: the same x range and
// one cursor.sync group, so hovering one moves the crosshair on all (Grafana, uPlot demos);
// the video drives the same cursor through setTime(), and a click on a chart seeks the video.
import uPlot from "uplot";
import { h } from "./dom";
import { num } from "./format";

export const SYNC_KEY = "affectline-video-time";

export interface Line {
  label: string;
  values: (number | null)[];
  // 95 % CI around values, drawn as a shaded band (uPlot bands) when given.
  low?: (number | null)[];
  high?: (number | null)[];
  colour: string;
  dash?: number[];
  show?: boolean;
  digits?: number;
}

export interface ChartSpec {
  title: string; // for the test surface and aria
  x: number[]; // video time in seconds: the middle of each second (s + 0.5), so the cursor at
  // time t lands on the second that holds t
  xRange: [number, number];
  lines: Line[];
  yRange?: [number, number];
  yFromZero?: boolean; // counts: the axis starts at 0, whatever the data's minimum
  height?: number;
  // Seconds [start, end) withheld, shaded grey (their reasons are listed under the chart).
  suppressed?: [number, number][];
  zeroLine?: boolean;
  // Key moments as ticks on the top edge (green ▲ peak, red ▼ drop) over a dotted line.
  markers?: { at: number; kind: string }[];
  toggles?: boolean; // legend entries are buttons that show/hide their line
  yLabel?: string;
}

interface Indices {
  mean: number;
  low?: number;
  high?: number;
}

export class CurveChart {
  readonly plot: uPlot;
  readonly root: HTMLElement;
  private readonly idx = new Map<string, Indices>();
  private readonly readouts = new Map<string, HTMLElement>();
  private seekHandler: ((t: number) => void) | null = null;
  private readonly resize: ResizeObserver;

  constructor(parent: HTMLElement, readonly spec: ChartSpec) {
    const series: uPlot.Series[] = [{ label: "time (s)" }];
    const data: (number | null)[][] = [spec.x];
    const bands: uPlot.Band[] = [];
    for (const line of spec.lines) {
      const show = line.show !== false;
      const at: Indices = { mean: series.length };
      series.push({ label: line.label, stroke: line.colour, width: 2, dash: line.dash, show, spanGaps: false, points: { show: false } });
      data.push(line.values);
      if (line.low && line.high) {
        at.high = series.length;
        series.push({ label: `${line.label} CI high`, stroke: "transparent", width: 0, show, points: { show: false } });
        data.push(line.high);
        at.low = series.length;
        series.push({ label: `${line.label} CI low`, stroke: "transparent", width: 0, show, points: { show: false } });
        data.push(line.low);
        bands.push({ series: [at.high, at.low], fill: `${line.colour}33` });
      }
      this.idx.set(line.label, at);
    }
    const legend = h("div", { class: "legend", role: "group", "aria-label": `${spec.title}: series` });
    this.root = h("div", { class: "chart" }, legend);
    parent.append(this.root);
    for (const line of spec.lines) legend.append(this.legendEntry(line));

    const width = Math.max(280, parent.clientWidth || 600);
    const suppressed = spec.suppressed ?? [];
    this.plot = new uPlot({
      width, height: spec.height ?? 200,
      legend: { show: false }, // our own legend: buttons (keyboard-usable) with the value at the cursor
      cursor: {
        sync: { key: SYNC_KEY, setSeries: false, scales: ["x", null] },
        drag: { x: false, y: false, setScale: false },
        y: false, // a vertical crosshair only: the shared quantity is time
        points: { show: false },
      },
      scales: { x: { time: false, range: () => spec.xRange }, y: spec.yRange ? { range: () => spec.yRange! }
        : spec.yFromZero ? { range: (_u, _min, max) => [0, Math.max(1, max) * 1.1] } : { auto: true } },
      axes: [
        { label: "video time (s)", labelSize: 18, size: 36 },
        { label: spec.yLabel ?? "", labelSize: spec.yLabel ? 18 : 0, size: 48 },
      ],
      series, bands,
      hooks: {
        drawClear: [(u) => {
          // Withheld seconds: hatched grey under the lines.
          const { ctx } = u;
          ctx.save();
          ctx.fillStyle = "rgba(120,120,120,0.18)";
          for (const [a, b] of suppressed) {
            const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
            ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
          }
          if (spec.zeroLine) {
            const y = u.valToPos(0, "y", true);
            ctx.strokeStyle = "#555";
            ctx.setLineDash([4, 4]);
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
          }
          for (const m of spec.markers ?? []) {
            const x = u.valToPos(m.at, "x", true), top = u.bbox.top, size = 6 * devicePixelRatio;
            ctx.fillStyle = ctx.strokeStyle = m.kind === "drop" ? "#b3261e" : "#1a7f37";
            ctx.setLineDash([2, 3]);
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + u.bbox.height);
            ctx.stroke();
            ctx.setLineDash([]);
            ctx.beginPath();
            ctx.moveTo(x - size, top);
            ctx.lineTo(x + size, top);
            ctx.lineTo(x, top + size * 1.4);
            ctx.fill();
          }
          ctx.restore();
        }],
        setCursor: [(u) => this.showValues(u.cursor.idx ?? null)],
      },
    }, data as uPlot.AlignedData, this.root);
    this.plot.over.addEventListener("click", () => {
      const left = this.plot.cursor.left ?? -1;
      if (left >= 0 && this.seekHandler) this.seekHandler(this.plot.posToVal(left, "x"));
    });
    this.plot.over.title = "Click to seek the video to this time";
    this.resize = new ResizeObserver(() => {
      const w = Math.max(280, this.root.clientWidth);
      if (Math.abs(w - this.plot.width) > 2) this.plot.setSize({ width: w, height: this.plot.height });
    });
    this.resize.observe(this.root);
  }

  private legendEntry(line: Line): HTMLElement {
    const readout = h("span", { class: "readout" }, "");
    this.readouts.set(line.label, readout);
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = line.colour; // CSSOM, allowed under the CSP (no inline style attribute)
    if (!this.spec.toggles) return h("span", { class: "entry" }, swatch, line.label, readout);
    const button = h("button", { type: "button", class: "entry", "aria-pressed": String(line.show !== false), "data-series": line.label },
      swatch, line.label, readout);
    button.addEventListener("click", () => this.setVisible(line.label, button.getAttribute("aria-pressed") !== "true"));
    return button;
  }

  setVisible(label: string, show: boolean): void {
    const at = this.idx.get(label);
    if (!at) return;
    this.plot.batch(() => {
      for (const i of [at.mean, at.high, at.low]) if (i !== undefined) this.plot.setSeries(i, { show });
    });
    this.root.querySelector(`button[data-series="${CSS.escape(label)}"]`)?.setAttribute("aria-pressed", String(show));
  }

  visible(): string[] {
    return [...this.idx].filter(([, at]) => this.plot.series[at.mean].show).map(([label]) => label);
  }

  private showValues(i: number | null): void {
    for (const line of this.spec.lines) {
      const v = i === null ? null : line.values[i];
      this.readouts.get(line.label)!.textContent = i === null ? "" : ` ${num(v, line.digits ?? 2)}`;
    }
  }

  onSeek(handler: (t: number) => void): void {
    this.seekHandler = handler;
  }

  /** Moves the crosshair to video time t (seconds). */
  setTime(t: number): void {
    const [x0, x1] = this.spec.xRange;
    if (t < x0 || t > x1) return;
    this.plot.setCursor({ left: this.plot.valToPos(t, "x"), top: this.plot.bbox.height / devicePixelRatio / 2 });
  }

  /** The time under the crosshair (what a test compares with the video's currentTime). */
  cursorTime(): number | null {
    const left = this.plot.cursor.left ?? -1;
    return left < 0 ? null : this.plot.posToVal(left, "x");
  }

  /** The arrays the chart draws: x, and each line by label (a test compares them with the RPC's). */
  drawn(): { x: number[]; lines: Record<string, { values: (number | null)[]; low?: (number | null)[]; high?: (number | null)[] }> } {
    const lines: ReturnType<CurveChart["drawn"]>["lines"] = {};
    const d = this.plot.data as (number | null)[][];
    for (const [label, at] of this.idx) {
      lines[label] = { values: d[at.mean], ...(at.low !== undefined ? { low: d[at.low], high: d[at.high!] } : {}) };
    }
    return { x: d[0] as number[], lines };
  }

  destroy(): void {
    this.resize.disconnect();
    this.plot.destroy();
    this.root.remove();
  }
}
