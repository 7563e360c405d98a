// Offline build: protos -> TypeScript (buf + protoc-gen-es from node_modules), bundle with
// esbuild, and copy the face detector's models and wasm files next to the bundle, into
// server/affectline/static/app/ (git-ignored; served by `affectline serve`, no CDN).
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(root, "..", "server", "affectline", "static", "app");
const nm = join(root, "node_modules");

execFileSync(join(nm, ".bin", "buf"), ["generate"], { cwd: root, stdio: "inherit" });
rmSync(out, { recursive: true, force: true });
// The viewer page's bundle, the live page's (/live.html: WatchLive over gRPC-web) and the
// analyst's dashboard (/dashboard: uPlot charts; its stylesheet is copied next to it).
for (const [entry, bundle] of [["viewer.ts", "viewer.js"], ["live_page.ts", "live.js"], ["dashboard/main.ts", "dashboard.js"]]) {
  await esbuild.build({
    entryPoints: [join(root, "src", entry)],
    bundle: true, format: "esm", target: "es2022", minify: true,
    outfile: join(out, bundle), logLevel: "warning",
  });
}
copyFileSync(join(nm, "uplot/dist/uPlot.min.css"), join(out, "uPlot.min.css"));
mkdirSync(join(out, "models"), { recursive: true });
for (const f of ["blazeface.json", "blazeface.bin"]) copyFileSync(join(nm, "@vladmandic/human/models", f), join(out, "models", f));
mkdirSync(join(out, "wasm"), { recursive: true });
for (const f of ["tfjs-backend-wasm.wasm", "tfjs-backend-wasm-simd.wasm", "tfjs-backend-wasm-threaded-simd.wasm"]) {
  copyFileSync(join(nm, "@tensorflow/tfjs-backend-wasm/dist", f), join(out, "wasm", f));
}
console.log(`client_js: built ${out}`);
