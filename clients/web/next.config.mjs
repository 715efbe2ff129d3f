import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** @type {import("next").NextConfig} */
const nextConfig = {
  // clients/web is its own npm project (the repository root has another lockfile).
  outputFileTracingRoot: dirname(fileURLToPath(import.meta.url)),
  // A static export served by the BFF from the same origin (no Node server at run time).
  output: "export",
  images: { unoptimized: true },
  reactStrictMode: true,
  poweredByHeader: false,
};

export default nextConfig;
