/**
 * `pnpm example:memory`: starts a memory service on a free port of
 * 127.0.0.1, connects the long-lived client to it (validating the API key),
 * serves the HTTP API on `PORT` and prints `listening on http://127.0.0.1:<port>`.
 * SIGINT or SIGTERM closes the API, the client's connection and the service.
 *
 * A rejected API key or an invalid setting stops it at once, saying why, with
 * exit code 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { ConfigError, Console, Effect, Layer } from "effect"
import * as App from "./App.js"

const refuse = (why: ReadonlyArray<string>) =>
  Effect.zipRight(
    Console.error(["cannot start the memory client:", ...why].join("\n")),
    Effect.sync(() => {
      process.exitCode = 1
    })
  )

Effect.gen(function* () {
  const config = yield* App.readConfig
  return yield* Layer.launch(App.layer(config))
}).pipe(
  Effect.catchIf(ConfigError.isConfigError, (error) => refuse([String(error)])),
  Effect.catchTag("InvalidApiKey", (error) =>
    refuse([error.message, "(the bundled memory service accepts MEMORY_SERVICE_API_KEY, default mem0-demo-key)"])
  ),
  NodeRuntime.runMain
)
