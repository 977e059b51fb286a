import { KeyedPool, PoolRegistry, type PoolStats } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted, Schema } from "effect"
import { AdminApi, AdminHealth } from "../src/index.js"
import { captureLogs } from "./utils/fixtures.js"
import { client, httpClient, raw, serve } from "./utils/http.js"

const config: PoolStats.ConfigInForce = {
  maxPerKey: 2,
  maxTotal: 10,
  maxKeys: 5,
  minIdlePerKey: 0,
  idleTimeoutMillis: 600_000,
  maxLifetimeMillis: null,
  acquireTimeoutMillis: 30_000,
  cleanupIntervalMillis: 60_000,
  drainTimeoutMillis: 10_000,
  createTimeoutMillis: null,
  createConcurrency: null
} as PoolStats.ConfigInForce

const key = (
  name: string,
  counts: Partial<PoolStats.KeyStats> = {},
  health: Partial<PoolStats.KeyHealth> = {}
): PoolStats.KeyStats =>
  ({
    key: name,
    max: 2,
    size: 1,
    idle: 1,
    inUse: 0,
    creating: 0,
    waiting: 0,
    created: 1,
    destroyed: 0,
    timeouts: 0,
    failures: 0,
    createdAt: 0,
    lastUsed: 0,
    checking: 0,
    ...counts,
    health: {
      state: "healthy",
      breaker: "closed",
      consecutiveFailures: 0,
      retryAt: null,
      lastCheck: null,
      history: [],
      transitions: [],
      ...health
    }
  }) as PoolStats.KeyStats

const pool = (name: string, perKey: ReadonlyArray<PoolStats.KeyStats>, rest: Partial<PoolStats.PoolStats> = {}) =>
  ({
    name,
    closed: false,
    keys: perKey.length,
    size: perKey.reduce((n, k) => n + k.size, 0),
    idle: perKey.reduce((n, k) => n + k.idle, 0),
    inUse: perKey.reduce((n, k) => n + k.inUse, 0),
    creating: 0,
    waiting: perKey.reduce((n, k) => n + k.waiting, 0),
    created: 0,
    destroyed: 0,
    timeouts: perKey.reduce((n, k) => n + k.timeouts, 0),
    failures: 0,
    perKey,
    config,
    ...rest
  }) as PoolStats.PoolStats

const kinds = (health: AdminApi.Health) => health.pools.map((p) => [p.name, p.status, p.reasons.map((r) => r.kind)])

describe("AdminHealth", () => {
  it("no pool, or pools with room and no one waiting, is healthy", () => {
    assert.deepStrictEqual(AdminHealth.evaluate([], new Map()), { status: "healthy", reasons: [], pools: [] })
    const health = AdminHealth.evaluate([pool("a", [key("k1"), key("k2", { size: 2, idle: 0, inUse: 2 })])], new Map())
    assert.deepStrictEqual(kinds(health), [["a", "healthy", []]])
    assert.deepStrictEqual(health.pools[0].limits, config)
  })

  it("a closed pool, or one whose every key has an open circuit, is unhealthy", () => {
    const open = { breaker: "open", state: "open", retryAt: 30_000 } as const
    const health = AdminHealth.evaluate(
      [pool("closed", [], { closed: true }), pool("down", [key("k1", {}, open), key("k2", {}, open)])],
      new Map()
    )
    assert.strictEqual(health.status, "unhealthy")
    assert.deepStrictEqual(kinds(health), [
      ["closed", "unhealthy", ["closed"]],
      ["down", "unhealthy", ["breaker-open"]]
    ])
    assert.deepStrictEqual(health.reasons, [
      "pool closed is closed: it hands nothing out",
      "pool down has an open circuit breaker on every key (2)"
    ])
  })

  it("some open circuits, failing checks, limits, waiters and new timeouts are degraded", () => {
    const keys = [
      key("open", {}, { breaker: "open", state: "open" }),
      key("half", {}, { breaker: "half-open", state: "degraded" }),
      key("full", { size: 2, idle: 0, inUse: 2, waiting: 3, timeouts: 4 })
    ]
    const health = AdminHealth.evaluate([pool("busy", keys, { size: 10, keys: 5 })], new Map([["busy", 1]]))
    assert.strictEqual(health.status, "degraded")
    assert.deepStrictEqual(health.pools[0].reasons, [
      {
        kind: "breaker-open",
        status: "degraded",
        message: "has 1 key with an open circuit breaker",
        keys: ["open"]
      },
      {
        kind: "checks-failing",
        status: "degraded",
        message: "has 1 key half-open or failing health checks",
        keys: ["half"]
      },
      { kind: "pool-at-limit", status: "degraded", message: "is at its limit: 10 of 10 items" },
      { kind: "keys-at-limit", status: "degraded", message: "has 5 of 5 keys live" },
      {
        kind: "key-at-limit",
        status: "degraded",
        message: "has 1 key at their limit with callers waiting",
        keys: ["full"]
      },
      { kind: "waiting", status: "degraded", message: "has 3 callers waiting for an item" },
      { kind: "timeouts", status: "degraded", message: "had 3 acquire timeouts since the previous check" }
    ])
    assert.deepStrictEqual(health.pools[0].timeouts, { total: 4, sincePreviousCheck: 3 })
  })

  it("names at most 10 keys in a reason", () => {
    const keys = Array.from({ length: 25 }, (_, i) => key(`k${i}`, { size: 2, idle: 0, inUse: 2, waiting: 1 }))
    const [reason] = AdminHealth.poolReasons(pool("many", keys, { maxTotal: null } as never), 0).filter(
      (r) => r.kind === "key-at-limit"
    )
    assert.strictEqual(reason.keys?.length, 10)
    assert.strictEqual(reason.message, "has 25 keys at their limit with callers waiting")
  })

  it.effect("a checker reports timeouts since its previous check, and counts again after a pool is replaced", () =>
    Effect.gen(function* () {
      const checker = yield* AdminHealth.makeChecker
      const since = (h: AdminApi.Health) => h.pools[0].timeouts.sincePreviousCheck
      assert.strictEqual(since(yield* checker.check([pool("p", [key("k", { timeouts: 2 })])])), 2)
      assert.strictEqual(since(yield* checker.check([pool("p", [key("k", { timeouts: 2 })])])), 0)
      assert.strictEqual(since(yield* checker.check([pool("p", [key("k", { timeouts: 5 })])])), 3)
      assert.strictEqual(since(yield* checker.check([pool("p", [key("k", { timeouts: 1 })])])), 1, "a new pool")
    })
  )

  it.scoped("a real pool whose only key's circuit opened makes /health answer 503", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const token = Redacted.make("health-token-1")
      const down = yield* KeyedPool.make({
        name: "upstream",
        acquire: (_: string) => Effect.fail(new Error("connection refused")),
        breaker: { failures: 2, reset: "1 minute" },
        createBackoff: false,
        isConnectionError: () => true
      }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
      const server = yield* serve(registry, { token, publicHealth: true })
      yield* Effect.exit(down.use("llm", () => Effect.void)).pipe(Effect.repeatN(2))
      const stats = yield* down.stats
      assert.strictEqual(stats.perKey[0]?.health.breaker, "open")
      const response = yield* raw(server, { path: "/health" })
      assert.strictEqual(response.status, 503)
      const health = Schema.decodeUnknownSync(AdminApi.UnhealthyReport)(JSON.parse(response.body))
      assert.deepStrictEqual(health.pools[0].reasons[0].kind, "breaker-open")
      const admin = yield* client(server)
      assert.strictEqual((yield* admin.cistern.health()).status, "unhealthy")
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )
})
