/**
 * `pnpm example:gateway`: starts the bundled MCP servers, the gateway and its
 * HTTP API on `PORT`, and prints `listening on http://127.0.0.1:<port>`.
 * Without `ADMIN_TOKEN`, or with an invalid setting or users file, it does
 * not start: it says why and exits with code 1. SIGINT or SIGTERM closes the
 * API, every pooled connection and the servers.
 */
import { NodeRuntime } from "@effect/platform-node"
import { ConfigError, Console, Effect, Layer } from "effect"
import * as App from "./App.js"
import * as Settings from "./Settings.js"

const refuse = (why: string) =>
  Effect.zipRight(
    Console.error(`cannot start the MCP gateway:\n${why}`),
    Effect.sync(() => {
      process.exitCode = 1
    })
  )

Effect.gen(function* () {
  const settings = yield* Settings.settings
  return yield* Layer.launch(App.layer(settings))
}).pipe(
  Effect.catchIf(ConfigError.isConfigError, (error) =>
    refuse(
      String(error).includes("ADMIN_TOKEN")
        ? `${String(error)}\n(set ADMIN_TOKEN to the bearer token of the admin endpoints)`
        : String(error)
    )
  ),
  Effect.catchTags({
    InvalidUsers: (error) => refuse(error.message),
    BundleFailed: (error) => refuse(error.message)
  }),
  NodeRuntime.runMain
)
