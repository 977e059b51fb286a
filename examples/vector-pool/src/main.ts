/**
 * `pnpm example:vector`: the vector store service on `127.0.0.1:${PORT:-8080}`.
 *
 * With `DATABASE_URL` it uses that PostgreSQL; without, it starts a
 * throwaway cluster of Debian's `postgresql` in a temporary directory (removed
 * on exit). SIGINT or SIGTERM stops the server, the monitor and the pool (every
 * connection ended), then the throwaway cluster.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect, Layer } from "effect"
import * as App from "./App.js"
import * as PgServer from "./PgServer.js"

const program = Effect.gen(function* () {
  const config = yield* App.config
  let url = config.databaseUrl
  if (url === undefined) {
    const server = yield* PgServer.make()
    yield* Effect.logInfo(
      `DATABASE_URL is not set: started a throwaway PostgreSQL ${server.version} at ${server.url} (files in ${server.directory}, removed on exit)`
    )
    url = server.url
  }
  return yield* Layer.launch(App.layer(url, config))
}).pipe(Effect.scoped)

program.pipe(
  // A bad variable, or a store that cannot be reached at start: say why and exit 1.
  Effect.catchAllCause((cause) =>
    Effect.zipRight(
      Console.error(`the vector store service cannot run:\n${Cause.pretty(cause)}`),
      Effect.sync(() => {
        process.exitCode = 1
      })
    )
  ),
  NodeRuntime.runMain
)
