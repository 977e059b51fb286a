import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Context, Effect, Exit } from "effect"
import { KeyedPool, PoolConfig } from "../src/index.js"

class Sessions extends Context.Tag("test/Sessions")<Sessions, KeyedPool.KeyedPool<string, number>>() {}

// The MCP gateway's variables (seed 001); CONNECTION_TIMEOUT there is an idle timeout.
const seedSettings = PoolConfig.settings({
  maxPerKey: "MAX_CONNECTIONS_PER_USER",
  maxTotal: "MAX_TOTAL_CONNECTIONS",
  idleTimeout: "CONNECTION_TIMEOUT",
  cleanupInterval: "CLEANUP_INTERVAL"
})

const layer = KeyedPool.layerConfig(Sessions, {
  acquire: () => Effect.succeed(1),
  acquireTimeout: "2 seconds",
  config: seedSettings
})

const configFrom = (env: Record<string, string>) =>
  Effect.gen(function* () {
    const pool = yield* Sessions
    return (yield* pool.stats).config
  }).pipe(
    Effect.provide(layer),
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env)))),
    Effect.scoped
  )

describe("PoolConfig", () => {
  it.effect("reads the seed's variables, durations in words or milliseconds", () =>
    Effect.gen(function* () {
      const config = yield* configFrom({
        MAX_CONNECTIONS_PER_USER: "5",
        MAX_TOTAL_CONNECTIONS: "50",
        CONNECTION_TIMEOUT: "1800000",
        CLEANUP_INTERVAL: "5 minutes"
      })
      assert.strictEqual(config.maxPerKey, 5)
      assert.strictEqual(config.maxTotal, 50)
      assert.strictEqual(config.idleTimeoutMillis, 1_800_000)
      assert.strictEqual(config.cleanupIntervalMillis, 300_000)
      assert.strictEqual(config.acquireTimeoutMillis, 2_000, "options given directly stay defaults")
    })
  )

  it.effect("leaves unset variables to the defaults, and `unbounded` lifts a limit", () =>
    Effect.gen(function* () {
      const config = yield* configFrom({ MAX_TOTAL_CONNECTIONS: "unbounded" })
      assert.strictEqual(config.maxPerKey, PoolConfig.defaults.maxPerKey)
      assert.isNull(config.maxTotal)
    })
  )

  it.effect("names the bad variable and its value", () =>
    Effect.gen(function* () {
      for (const [name, value] of [
        ["MAX_CONNECTIONS_PER_USER", "0"],
        ["MAX_TOTAL_CONNECTIONS", "ten"],
        ["CONNECTION_TIMEOUT", "soon"],
        ["CLEANUP_INTERVAL", "-5"]
      ] as const) {
        const exit = yield* Effect.exit(configFrom({ [name]: value }))
        assert.isTrue(Exit.isFailure(exit))
        const message = String(Exit.isFailure(exit) ? exit.cause : "")
        assert.include(message, name)
        assert.include(message, JSON.stringify(value))
      }
    })
  )

  it.effect("prefixes every variable when nested", () =>
    Effect.gen(function* () {
      const settings = yield* Config.nested(PoolConfig.settings(), "UPSTREAMS").pipe(
        Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["UPSTREAMS.MAX_PER_KEY", "3"]])))
      )
      assert.strictEqual(settings.maxPerKey, 3)
      assert.isUndefined(settings.maxTotal)
    })
  )
})
