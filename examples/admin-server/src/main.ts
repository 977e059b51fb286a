/**
 * `pnpm example:admin`: runs the service until SIGINT or SIGTERM, then stops
 * the admin server and the workers, drains both pools and exits 0.
 *
 * Without `CISTERN_ADMIN_TOKEN` it refuses to start, says why, and exits 1.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Layer } from "effect"
import * as App from "./App.js"

const refuse = (why: ReadonlyArray<string>) =>
  Effect.zipRight(
    Console.error(["cannot start the admin server:", ...why].join("\n")),
    Effect.sync(() => {
      process.exitCode = 1
    })
  )

const program = Effect.gen(function* () {
  const config = yield* App.readConfig
  return yield* Layer.launch(App.layer(config))
})

program.pipe(
  Effect.catchTags({
    MissingToken: () =>
      refuse([
        "CISTERN_ADMIN_TOKEN is not set, or is empty. The admin API answers only requests that carry it",
        "as a bearer token, so it does not start without one. For example:",
        "  CISTERN_ADMIN_TOKEN=$(openssl rand -hex 32) npx -y pnpm@10 example:admin"
      ]),
    InvalidSettings: (error) => refuse([error.message])
  }),
  NodeRuntime.runMain
)
