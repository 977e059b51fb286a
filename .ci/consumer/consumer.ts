// Type-checked by the consumer check against the packed .d.ts files, with
// moduleResolution NodeNext and Bundler, strict, skipLibCheck off.
import { KeyedPool, Pool, PoolConfig, type PoolError, type PoolStats } from "@cistern/pool"
import * as Subpath from "@cistern/pool/KeyedPool"
import { Context, Effect, type Layer, type Scope } from "effect"

interface Connection {
  readonly tenant: string
  readonly send: (line: string) => Effect.Effect<string, ConnectError>
}
class ConnectError extends Error {
  readonly _tag = "ConnectError"
}
declare const connect: (tenant: string) => Effect.Effect<Connection, ConnectError, Scope.Scope>

class Upstreams extends Context.Tag("app/Upstreams")<
  Upstreams,
  KeyedPool.KeyedPool<string, Connection, ConnectError>
>() {}

export const UpstreamsLive: Layer.Layer<Upstreams> = KeyedPool.layer(Upstreams, {
  acquire: connect,
  maxPerKey: 5,
  maxTotal: 50,
  idleTimeout: "5 minutes",
  acquireTimeout: "2 seconds"
})

export const FromEnv = KeyedPool.layerConfig(Upstreams, {
  acquire: connect,
  config: PoolConfig.settings({ maxPerKey: "MAX_CONNECTIONS_PER_USER" })
})

export const program: Effect.Effect<PoolStats.PoolStats, ConnectError | PoolError.PoolError, Upstreams> = Effect.gen(
  function* () {
    const pool = yield* Upstreams
    const reply: string = yield* pool.use("ada", (conn) => conn.send("PING"))
    yield* Effect.scoped(Effect.flatMap(pool.get("bob"), (conn) => conn.send(reply)))
    yield* Subpath.use(pool, "ada", (conn) => conn.send("PING"))
    return yield* pool.stats
  }
)

export const single: Effect.Effect<number, ConnectError | PoolError.PoolError, Scope.Scope> = Effect.gen(function* () {
  const pool: Pool.Pool<Connection, ConnectError> = yield* Pool.make({ acquire: connect("db"), max: 10 })
  const stats = yield* pool.stats
  return stats.size
})

// @ts-expect-error internals are not part of the published types
import("@cistern/pool/internal/keyedPool.js")
