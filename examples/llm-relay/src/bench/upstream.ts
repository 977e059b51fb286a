/**
 * The benchmark's stand-in upstream in a process of its own. Argument: the
 * upstream's options as JSON (`tokens`, `delayMs`). Ready with its URL;
 * `stats` answers the tokens it sent, the completions it sent whole, its
 * open sockets, the connections it accepted and its CPU time.
 */

import { NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import * as Upstream from "../Upstream.js"
import { cpuMicros, serve } from "./processes.js"

const options = JSON.parse(process.argv[2] ?? "{}") as Upstream.UpstreamOptions

Effect.gen(function* () {
  const up = yield* Upstream.start(options)
  return yield* serve(
    { url: up.url },
    {
      stats: () =>
        Effect.sync(() => ({
          tokensSent: up.tokensSent(),
          openSockets: up.openSockets(),
          accepted: up.accepted(),
          completed: up.completed(),
          cpuMicros: cpuMicros()
        }))
    }
  )
}).pipe(Effect.scoped, NodeRuntime.runMain)
