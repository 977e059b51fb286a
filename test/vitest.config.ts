import { defineProject, mergeConfig } from "vitest/config"
import shared from "../vitest.shared.js"

// Tests live in test/ (the shared `test/**/*.test.ts`), their tools in utils/.
export default mergeConfig(shared, defineProject({ test: { name: "@cistern/test" } }))
