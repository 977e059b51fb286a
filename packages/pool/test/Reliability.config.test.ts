/**
 * Regressions: bad configuration fails at construction, naming the option
 * (or the variable) and its value.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, ConfigProvider, Context, Effect, Exit } from "effect"
import { KeyedPool, PoolConfig, PoolError } from "../src/index.js"

class Upstreams extends Context.Tag("test/Upstreams")<Upstreams, KeyedPool.KeyedPool<string, number>>() {}

/** The defect `make` dies with for these options, if it does. */
const rejection = (options: Partial<KeyedPool.Options<string, number, never, never>>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(Effect.scoped(KeyedPool.make({ acquire: () => Effect.succeed(1), ...options })))
    return Exit.isFailure(exit) && Cause.isDie(exit.cause) ? Cause.squash(exit.cause) : undefined
  })

const fromEnv = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const pool = yield* Upstreams
    return (yield* pool.stats).config
  }).pipe(
    Effect.provide(
      KeyedPool.layerConfig(Upstreams, { acquire: () => Effect.succeed(1), config: PoolConfig.settings() })
    ),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.scoped
  )

describe("configuration", () => {
  it.effect(
    "a zero or negative healthCheckInterval or heartbeatInterval is rejected at construction (it used to freeze the process in a busy loop)",
    () =>
      Effect.gen(function* () {
        for (const interval of [0, -1, "-5 seconds"] as const) {
          const check = yield* rejection({ healthCheck: { check: () => Effect.void }, healthCheckInterval: interval })
          assert.isDefined(check, `healthCheckInterval = ${interval} is rejected`)
          assert.instanceOf(check, PoolError.InvalidOption)
          assert.strictEqual((check as PoolError.InvalidOption).option, "healthCheckInterval")
          const beat = yield* rejection({ heartbeat: { beat: () => Effect.void }, heartbeatInterval: interval })
          assert.strictEqual((beat as PoolError.InvalidOption).option, "heartbeatInterval")
          assert.include(
            (beat as Error).message,
            `heartbeatInterval = ${typeof interval === "string" ? `"${interval}"` : interval}`
          )
        }
      })
  )

  it.effect(
    "a negative or NaN drainTimeout or validateAfter is rejected, zero is not (they used to be read as 0)",
    () =>
      Effect.gen(function* () {
        for (const option of ["drainTimeout", "validateAfter"] as const) {
          for (const value of [-1, Number.NaN, "-5 seconds"] as const) {
            const error = yield* rejection({ [option]: value })
            assert.isDefined(error, `${option} = ${value} is rejected`)
            assert.instanceOf(error, PoolError.InvalidOption)
            assert.deepInclude(error, { option, expected: "a duration of zero or more" })
          }
          assert.isUndefined(yield* rejection({ [option]: 0 }))
        }
      })
  )

  it.effect(
    "zero or negative durations from the environment fail as a ConfigError naming the variable and value (they used to pass and die later with a RangeError)",
    () =>
      Effect.gen(function* () {
        for (const [name, value] of [
          ["ACQUIRE_TIMEOUT", "0"],
          ["ACQUIRE_TIMEOUT", "-1 seconds"],
          ["IDLE_TIMEOUT", "0 seconds"],
          ["CLEANUP_INTERVAL", "0"],
          ["CREATE_TIMEOUT", "0 millis"],
          ["HEALTH_CHECK_INTERVAL", "0"],
          ["DRAIN_TIMEOUT", "-1"]
        ] as const) {
          const exit = yield* Effect.exit(fromEnv({ [name]: value }))
          assert.isTrue(Exit.isFailure(exit) && !Cause.isDie(exit.cause), `${name}=${value} is a typed failure`)
          const message = String(Exit.isFailure(exit) ? exit.cause : "")
          assert.include(message, name)
          assert.include(message, JSON.stringify(value))
        }
        assert.strictEqual((yield* fromEnv({ DRAIN_TIMEOUT: "0" })).drainTimeoutMillis, 0, "no drain wait is allowed")
      })
  )

  it.effect(
    "a string maxPerKey is rejected at construction with a message naming it (it used to be taken for a function)",
    () =>
      Effect.gen(function* () {
        const error = yield* rejection({ maxPerKey: "10" as unknown as number })
        assert.isDefined(error, "rejected")
        assert.instanceOf(error, PoolError.InvalidOption)
        assert.include((error as Error).message, 'option maxPerKey = "10" is invalid')
      })
  )
})
