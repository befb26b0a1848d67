import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The central service serves dist/ at /, so asset URLs are absolute from the root.
// `npm run dev` proxies the API to a central running on CENTRAL_URL (default 127.0.0.1:8080).
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 800 },
  server: {
    proxy: { "/api": process.env.CENTRAL_URL ?? "http://127.0.0.1:8080" },
  },
  test: {
    environment: "jsdom",
    globals: true,
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
