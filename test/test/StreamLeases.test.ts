import { KeyedPool } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import * as Chunk from "effect/Chunk"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Ref from "effect/Ref"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as EchoServer from "../utils/EchoServer.js"
import { eventually } from "../utils/Eventually.js"
import * as LineClient from "../utils/LineClient.js"

class ReaderFailed extends Data.TaggedError("ReaderFailed")<{ readonly reader: number }> {}

/** An endless conversation on one pooled connection. */
const pings = (client: LineClient.LineClient) => Stream.repeatEffect(client.request("PING"))

describe("KeyedPool over real sockets", () => {
  it.scopedLive("streams that are cut short, fail or are interrupted leave no connection behind", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const opened = yield* Ref.make(0)
      const closed = yield* Ref.make(0)
      const poolScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const pool = yield* Scope.extend(
        KeyedPool.make({
          // The connection's own finalizer destroys its socket; this one counts.
          acquire: (_user: string) =>
            Effect.tap(LineClient.connect({ port: server.port }), () =>
              Effect.zipRight(
                Ref.update(opened, (n) => n + 1),
                Effect.addFinalizer(() => Ref.update(closed, (n) => n + 1))
              )
            ),
          maxPerKey: 4,
          maxTotal: 6
        }),
        poolScope
      )

      const reader = (i: number): Effect.Effect<void, unknown> => {
        const user = i % 2 === 0 ? "alice" : "bob"
        switch (i % 3) {
          case 0:
            return Effect.gen(function* () {
              const replies = yield* Stream.runCollect(Stream.take(pool.stream(user, pings), 5))
              assert.deepStrictEqual(Chunk.toReadonlyArray(replies), ["PONG", "PONG", "PONG", "PONG", "PONG"])
            })
          case 1:
            return Effect.gen(function* () {
              const exit = yield* Effect.exit(
                Stream.runDrain(
                  pool.stream(user, (client) =>
                    Stream.concat(Stream.take(pings(client), 3), Stream.fail(new ReaderFailed({ reader: i })))
                  )
                )
              )
              assert.deepStrictEqual(exit, Exit.fail(new ReaderFailed({ reader: i })))
            })
          default:
            return Effect.gen(function* () {
              const midFlight = yield* Deferred.make<void>()
              const fiber = yield* Effect.fork(
                Stream.runDrain(
                  pool.stream(user, pings).pipe(
                    Stream.zipWithIndex,
                    Stream.tap(([, n]) => (n === 2 ? Deferred.succeed(midFlight, undefined) : Effect.void))
                  )
                )
              )
              yield* Deferred.await(midFlight)
              yield* Fiber.interrupt(fiber)
            })
        }
      }

      yield* Effect.forEach(
        Array.from({ length: 20 }, (_, i) => i),
        reader,
        {
          concurrency: "unbounded",
          discard: true
        }
      )

      const stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0, "every lease came back")
      assert.strictEqual(stats.waiting, 0)
      assert.isAtMost(stats.size, 6)
      assert.strictEqual(stats.created - stats.destroyed, stats.size)
      assert.strictEqual(stats.created, yield* Ref.get(opened))
      assert.strictEqual(yield* pool.use("alice", (client) => client.request("PING")), "PONG")

      const created = (yield* pool.stats).created
      yield* Scope.close(poolScope, Exit.void)
      assert.strictEqual(yield* Ref.get(closed), yield* Ref.get(opened), "every connection's finalizer ran")
      yield* eventually(server.connections, (n) => n === 0, { label: "connections open at the server" })
      assert.strictEqual(yield* server.accepted, created)
    })
  )
})
