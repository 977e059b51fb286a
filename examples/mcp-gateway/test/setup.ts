/**
 * Compiles the stdio MCP server once for all test files (each would otherwise
 * spend a second or more of CPU on its own copy), into a temporary folder
 * removed after the run.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import type { TestProject } from "vitest/node"
import * as StdioBundle from "../src/servers/StdioBundle.js"

declare module "vitest" {
  export interface ProvidedContext {
    stdioScript: string
  }
}

export default async function setup(project: TestProject) {
  const dir = await mkdtemp(join(tmpdir(), "mcp-gateway-test-"))
  const script = await Effect.runPromise(Effect.orDie(StdioBundle.buildTo(join(dir, "stdio-server.mjs"))))
  project.provide("stdioScript", script)
  return () => rm(dir, { recursive: true, force: true })
}
