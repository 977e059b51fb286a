/**
 * `pnpm example:gateway`: starts the bundled MCP servers, the gateway and its
 * HTTP API on `PORT`, and prints `listening on http://127.0.0.1:<port>`.
 * Without `ADMIN_TOKEN`, or with an invalid setting or users file, it does
 * not start: it says why and exits with code 1. SIGINT or SIGTERM closes the
 * API, every pooled connection and the servers.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as App from "./App.js"

App.program.pipe(
  Effect.flatMap((code) =>
    Effect.sync(() => {
      process.exitCode = code
    })
  ),
  NodeRuntime.runMain
)
