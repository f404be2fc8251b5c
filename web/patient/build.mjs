// Bundles the patient's browser client (web/patient/src) with esbuild into lib/web/static/build/ (ES modules), which
// the app serves under /api/static/build/. Run by ./dev setup and scripts/deploy.sh (never by hand).
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

await build({
  // The page loads a small entry; the Calling SDK (about 7 MB) is a separate chunk loaded on Join.
  entryPoints: { patient: join(root, "web/patient/src/main.js") },
  outdir: join(root, "lib/web/static/build"),
  entryNames: "[name]",
  chunkNames: "chunks/[name]-[hash]",
  bundle: true,
  splitting: true,
  minify: true,
  format: "esm",
  target: ["chrome100", "edge100", "firefox100", "safari15"],
  legalComments: "linked",
  logLevel: "warning",
});
