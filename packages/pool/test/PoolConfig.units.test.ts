/**
 * Durations read from configuration: Duration strings, and a bare number in
 * the unit each variable declares; `RETRY` is the one name for retries.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either } from "effect"
import { PoolConfig } from "../src/index.js"

const read = <A>(config: import("effect").Config.Config<A>, env: Record<string, string>) =>
  Effect.either(Effect.withConfigProvider(config, ConfigProvider.fromMap(new Map(Object.entries(env)))))

/** A memory-service client whose variables count in seconds. */
const memory = PoolConfig.settings(
  {
    healthCheckInterval: "MEM0_HEALTH_CHECK_INTERVAL",
    heartbeatInterval: "MEM0_HEARTBEAT_INTERVAL",
    createTimeout: "MEM0_CONNECTION_TIMEOUT",
    retry: "MEM0_AUTO_REBUILD"
  },
  { units: { healthCheckInterval: "seconds", heartbeatInterval: "seconds", createTimeout: "seconds" } }
)

describe("PoolConfig units", () => {
  it.effect("a bare number is read in the variable's declared unit; Duration strings work whatever the unit", () =>
    Effect.gen(function* () {
      const settings = yield* read(memory, {
        MEM0_HEALTH_CHECK_INTERVAL: "30",
        MEM0_HEARTBEAT_INTERVAL: "2 minutes",
        MEM0_CONNECTION_TIMEOUT: "1.5",
        MEM0_AUTO_REBUILD: "yes",
        IDLE_TIMEOUT: "30"
      })
      assert.isTrue(Either.isRight(settings))
      const s = Either.getOrThrow(settings)
      assert.strictEqual(Duration.toMillis(s.healthCheckInterval as Duration.Duration), 30_000, "30 means 30 seconds")
      assert.strictEqual(Duration.toMillis(s.heartbeatInterval as Duration.Duration), 120_000)
      assert.strictEqual(Duration.toMillis(s.createTimeout as Duration.Duration), 1_500)
      assert.strictEqual(Duration.toMillis(s.idleTimeout as Duration.Duration), 30, "undeclared: milliseconds")
      assert.isTrue(s.retry)
    })
  )

  it.effect("errors name the variable, its value and the unit expected", () =>
    Effect.gen(function* () {
      const bad = yield* read(memory, { MEM0_HEALTH_CHECK_INTERVAL: "soon" })
      assert.isTrue(Either.isLeft(bad))
      const message = String(Either.isLeft(bad) ? bad.left : "")
      assert.include(message, 'MEM0_HEALTH_CHECK_INTERVAL="soon"')
      assert.include(message, "a number of seconds")
      const zero = yield* read(memory, { MEM0_HEALTH_CHECK_INTERVAL: "0" })
      assert.include(
        String(Either.isLeft(zero) ? zero.left : ""),
        'MEM0_HEALTH_CHECK_INTERVAL="0": expected a positive duration'
      )
      const flag = yield* read(memory, { MEM0_AUTO_REBUILD: "maybe" })
      assert.include(String(Either.isLeft(flag) ? flag.left : ""), 'MEM0_AUTO_REBUILD="maybe"')
    })
  )

  it.effect("PoolConfig.duration takes a unit for a variable of your own", () =>
    Effect.gen(function* () {
      const minutes = yield* read(PoolConfig.duration("SESSION_TTL", { unit: "minutes", positive: true }), {
        SESSION_TTL: "15"
      })
      assert.strictEqual(Duration.toMillis(Either.getOrThrow(minutes)), 15 * 60_000)
      const ms = yield* read(PoolConfig.duration("WAIT"), { WAIT: "250" })
      assert.strictEqual(Duration.toMillis(Either.getOrThrow(ms)), 250)
    })
  )

  it.effect(
    "with only, just the named variables are read: a stray generic one set for another program is ignored",
    () =>
      Effect.gen(function* () {
        const names = { maxPerKey: "MAX_CONNECTIONS_PER_USER", retry: "GATEWAY_RETRY" } as const
        const env = { MAX_CONNECTIONS_PER_USER: "5", RETRY: "perhaps", MAX_TOTAL: "0", IDLE_TIMEOUT: "30" }
        const only = Either.getOrThrow(yield* read(PoolConfig.settings(names, { only: true }), env))
        assert.strictEqual(only.maxPerKey, 5)
        assert.deepStrictEqual([only.retry, only.maxTotal, only.idleTimeout], [undefined, undefined, undefined])
        // Without it, the generic names are read too, and their bad values stop the program.
        const all = yield* read(PoolConfig.settings(names), env)
        assert.isTrue(Either.isLeft(all))
        assert.include(String(Either.getLeft(all).pipe((e) => (e._tag === "Some" ? e.value : ""))), "MAX_TOTAL")
      })
  )
})
