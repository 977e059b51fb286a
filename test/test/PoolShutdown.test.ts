/**
 * Shutdown of a pool over real sockets: what a refill had opened is closed,
 * and closing does not wait for leases that do not exist.
 */
import { KeyedPool } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as EchoServer from "../utils/EchoServer.js"
import { eventually } from "../utils/Eventually.js"
import * as LineClient from "../utils/LineClient.js"

describe("KeyedPool shutdown over real sockets", () => {
  it.scopedLive(
    "a refill connecting when the pool closes has its socket closed, and close does not wait out drainTimeout (the socket used to stay open)",
    () =>
      Effect.gen(function* () {
        const server = yield* EchoServer.make
        // Once set, a new connection waits for a greeting the echo server never sends: a connect that hangs, socket open.
        const greet = yield* Ref.make(false)
        const poolScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
        const pool = yield* Scope.extend(
          KeyedPool.make({
            acquire: (_: string) =>
              Effect.tap(LineClient.connect({ port: server.port }), (client) =>
                Effect.flatMap(Ref.get(greet), (waits) => (waits ? client.readLine : Effect.void))
              ),
            minIdlePerKey: 1,
            drainTimeout: "30 seconds"
          }),
          poolScope
        )
        const done = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(pool.use("upstream", () => Deferred.await(done)))
        yield* eventually(server.connections, (n) => n === 1, { label: "the lease's connection" })
        yield* Ref.set(greet, true)
        yield* pool.cleanup // no idle item: a refill connects, and waits for its greeting
        yield* eventually(server.connections, (n) => n === 2, { label: "the refill's connection" })
        yield* Deferred.succeed(done, undefined)
        yield* Fiber.join(holder)
        const closed = yield* Scope.close(poolScope, Exit.void).pipe(Effect.timeout("5 seconds"), Effect.exit)
        assert.isTrue(Exit.isSuccess(closed), "closed well within drainTimeout: nothing was leased")
        yield* eventually(server.connections, (n) => n === 0, { label: "every socket closed" })
      })
  )
})
