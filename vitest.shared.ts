import type { ViteUserConfig } from "vitest/config"

/** Settings every project of the workspace shares. */
const config: ViteUserConfig = {
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    sequence: { concurrent: false }
  }
}

export default config
