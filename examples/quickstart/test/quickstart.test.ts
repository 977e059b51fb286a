import { PoolError } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Logger, LogLevel } from "effect"
import * as EchoServer from "../src/EchoServer.js"
import { limits, program, run } from "../src/Quickstart.js"

/** The program narrates with `Effect.log`: keep the test output to failures. */
const quietly = Logger.withMinimumLogLevel(LogLevel.Warning)

describe("quickstart", () => {
  it.live("echoes every operation of the burst, times out with PoolTimeout, retires old credentials", () =>
    Effect.gen(function* () {
      const report = yield* quietly(program)
      assert.strictEqual(report.operations, 24)
      assert.strictEqual(report.echoed, report.operations)

      assert.instanceOf(report.timeout, PoolError.PoolTimeout)
      const timeout = report.timeout as PoolError.PoolTimeout
      assert.strictEqual(timeout.key, "alice")
      assert.strictEqual(timeout.limits.maxPerKey, limits.maxPerKey)
      assert.strictEqual(timeout.limits.acquireTimeoutMillis, 2_000)

      assert.strictEqual(report.rotation.oldSockets, limits.maxPerKey)
      assert.strictEqual(report.rotation.oldClosed, report.rotation.oldSockets)
      assert.isFalse(report.rotation.oldReused)
      const alice = report.stats.perKey.find((k) => k.key === "alice")!
      assert.strictEqual(alice.destroyed, limits.maxPerKey)
      assert.strictEqual(alice.timeouts, 1)
      assert.strictEqual(report.stats.created - report.stats.destroyed, report.stats.size)
    })
  )

  it.scopedLive("closes every socket when the pool closes: the server sees no open connection", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const report = yield* quietly(run(server))
      assert.strictEqual(report.socketsOpenAfter, 0)
      assert.strictEqual(report.serverConnectionsAfter, 0)
      assert.strictEqual(yield* server.connections, 0)
      assert.strictEqual(yield* server.accepted, report.socketsOpened)
    })
  )
})
