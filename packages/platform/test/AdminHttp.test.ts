import { KeyedPool, PoolError, PoolRegistry } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Redacted, Ref, Schema, Scope, TestClock } from "effect"
import { AdminApi } from "../src/index.js"
import { captureLogs, makeResources, settle } from "./utils/fixtures.js"
import { client, httpClient, raw, serve } from "./utils/http.js"

const secret = "admin-token-7c4f1e0b9a2d4c6e8f10"
const token = Redacted.make(secret)
const bearer = { authorization: `Bearer ${secret}` }

/** A key carrying a credential, shown as `user:server` only. */
interface Key {
  readonly user: string
  readonly server: string
  readonly apiKey: string
}

const describeKey = (key: Key) => `${key.user}:${key.server}`

const makePool = (
  registry: PoolRegistry.Service,
  acquire: (key: Key) => Effect.Effect<{ readonly id: number }, never, Scope.Scope>,
  options: Partial<KeyedPool.Options<Key, { readonly id: number }, never, never>> & { readonly name: string }
) =>
  KeyedPool.make<Key, { readonly id: number }, never, Scope.Scope>({
    acquire,
    keyId: describeKey,
    describeKey,
    ...options
  }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))

describe("AdminHttp", () => {
  it.scoped(
    "status shapes decode with the API's own schemas while keys, leases, waiters and timeouts are in flight",
    () =>
      Effect.gen(function* () {
        const registry = yield* PoolRegistry.make
        const resources = yield* makeResources
        const pool = yield* makePool(registry, resources.acquire, {
          name: "mcp",
          maxPerKey: 1,
          maxTotal: 10,
          acquireTimeout: "5 seconds",
          idleTimeout: "10 minutes"
        })
        const server = yield* serve(registry, { token })
        const alice: Key = { user: "alice", server: "github", apiKey: "sk-alice" }
        const bob: Key = { user: "bob", server: "slack", apiKey: "sk-bob" }

        const release = yield* Deferred.make<void>()
        yield* Effect.forkScoped(pool.use(alice, () => Deferred.await(release)))
        yield* pool.use(bob, () => Effect.void)
        const late = yield* Effect.fork(Effect.exit(pool.use(alice, () => Effect.void)))
        yield* settle
        yield* TestClock.adjust("5 seconds")
        const timedOut = yield* Fiber.join(late)
        assert.isTrue(Exit.isFailure(timedOut) && timedOut.cause._tag === "Fail")
        assert.instanceOf(
          Exit.isFailure(timedOut) && timedOut.cause._tag === "Fail" && timedOut.cause.error,
          PoolError.PoolTimeout
        )
        const waiter = yield* Effect.fork(pool.use(alice, () => Effect.void))
        yield* settle
        yield* TestClock.adjust("3 seconds")

        const admin = yield* client(server, token)
        const { pools } = yield* admin.cistern.listPools()
        assert.strictEqual(pools.length, 1)
        const [mcp] = pools
        assert.strictEqual(mcp.name, "mcp")
        assert.deepStrictEqual(
          [mcp.stats.keys, mcp.stats.size, mcp.stats.idle, mcp.stats.inUse, mcp.stats.waiting, mcp.stats.timeouts],
          [2, 2, 1, 1, 1, 1]
        )
        const aliceStats = mcp.stats.perKey.find((k) => k.key === "alice:github")!
        assert.deepStrictEqual(
          [aliceStats.inUse, aliceStats.waiting, aliceStats.timeouts, aliceStats.max],
          [1, 1, 1, 1]
        )
        assert.deepStrictEqual(mcp.items.map((item) => [item.key, item.state, item.idleMillis]).sort(), [
          ["alice:github", "leased", 0],
          ["bob:slack", "idle", 8000]
        ])
        assert.deepStrictEqual([mcp.stats.config.maxPerKey, mcp.stats.config.maxTotal], [1, 10])
        assert.strictEqual(mcp.stats.config.acquireTimeoutMillis, 5000)

        const one = yield* admin.cistern.getPool({ path: { name: "mcp" } })
        assert.deepStrictEqual(one.stats.perKey.length, 2)

        // the raw bodies decode with the API's own schemas
        const listed = yield* raw(server, { path: "/pools", headers: bearer })
        assert.strictEqual(listed.headers["content-type"], "application/json")
        const decoded = Schema.decodeUnknownSync(AdminApi.PoolList)(JSON.parse(listed.body))
        assert.deepStrictEqual(decoded.pools[0].stats.waiting, 1)
        Schema.decodeUnknownSync(AdminApi.PoolView)(
          JSON.parse((yield* raw(server, { path: "/pools/mcp", headers: bearer })).body)
        )

        const health = yield* admin.cistern.health()
        assert.strictEqual(health.status, "degraded")
        assert.deepStrictEqual(
          health.pools[0].reasons.map((r) => r.kind),
          ["key-at-limit", "waiting", "timeouts"]
        )
        assert.deepStrictEqual(health.pools[0].reasons[0].keys, ["alice:github"])
        assert.deepStrictEqual(health.pools[0].timeouts, { total: 1, sincePreviousCheck: 1 })
        assert.include(health.reasons.join("\n"), "pool mcp had 1 acquire timeout since the previous check")
        const rawHealth = yield* raw(server, { path: "/health", headers: bearer })
        assert.strictEqual(rawHealth.status, 200)
        const again = Schema.decodeUnknownSync(AdminApi.HealthReport)(JSON.parse(rawHealth.body))
        assert.deepStrictEqual(
          again.pools[0].reasons.map((r) => r.kind),
          ["key-at-limit", "waiting"],
          "no new timeout since the previous look"
        )

        yield* Deferred.succeed(release, undefined)
        yield* Fiber.join(waiter)
        const after = yield* admin.cistern.health()
        assert.deepStrictEqual([after.status, after.reasons], ["healthy", []])
      }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped(
    "a pool with tenant groups shows each group's counts and limit; a pool without groups has no perGroup",
    () =>
      Effect.gen(function* () {
        const registry = yield* PoolRegistry.make
        const resources = yield* makeResources
        const pool = yield* makePool(registry, resources.acquire, {
          name: "grouped",
          group: (key) => key.user,
          maxPerGroup: (user) => (user === "alice" ? 3 : 1)
        })
        yield* makePool(registry, resources.acquire, { name: "plain" })
        const server = yield* serve(registry, { token })
        const hold = yield* Deferred.make<void>()
        yield* Effect.forkScoped(
          pool.use({ user: "alice", server: "github", apiKey: "sk-a1" }, () => Deferred.await(hold))
        )
        yield* pool.use({ user: "alice", server: "slack", apiKey: "sk-a2" }, () => Effect.void)
        yield* pool.use({ user: "bob", server: "github", apiKey: "sk-b1" }, () => Effect.void)
        yield* settle

        const admin = yield* client(server, token)
        const grouped = yield* admin.cistern.getPool({ path: { name: "grouped" } })
        assert.deepStrictEqual(
          grouped.stats.perGroup?.map((g) => [g.group, g.max, g.size, g.idle, g.keys]),
          [
            ["alice", 3, 2, 1, 2],
            ["bob", 1, 1, 1, 1]
          ]
        )
        const body = JSON.parse((yield* raw(server, { path: "/pools/grouped", headers: bearer })).body)
        assert.deepStrictEqual(Schema.decodeUnknownSync(AdminApi.PoolView)(body).stats.perGroup, grouped.stats.perGroup)
        assert.notInclude(JSON.stringify(body), "sk-a1", "groups show the group, never the key's credential")

        const plain = JSON.parse((yield* raw(server, { path: "/pools/plain", headers: bearer })).body)
        assert.notProperty(plain.stats, "perGroup")
        assert.isUndefined((yield* admin.cistern.getPool({ path: { name: "plain" } })).stats.perGroup)
        yield* Deferred.succeed(hold, undefined)
      }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("cleanup really destroys the idle items past idleTimeout, and only those", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const pool = yield* makePool(registry, resources.acquire, {
        name: "expiring",
        maxPerKey: 5,
        idleTimeout: "1 minute",
        cleanupInterval: "1 hour"
      })
      const server = yield* serve(registry, { token })
      const key = (user: string): Key => ({ user, server: "db", apiKey: `sk-${user}` })
      yield* Effect.forEach(["a", "b", "c"], (user) => pool.use(key(user), () => Effect.void), {
        concurrency: "unbounded"
      })
      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(pool.use(key("d"), () => Deferred.await(hold)))
      yield* settle
      yield* TestClock.adjust("2 minutes")
      assert.strictEqual(yield* Ref.get(resources.alive), 4)

      const admin = yield* client(server, token)
      const result = yield* admin.cistern.cleanupPool({ path: { name: "expiring" }, payload: { reason: "test" } })
      assert.deepStrictEqual([result.before, result.after, result.cleaned], [4, 1, 3])
      assert.strictEqual(result.keysDropped, 3)
      assert.deepStrictEqual([result.stats.idle, result.stats.inUse, result.stats.keys], [0, 1, 1])
      assert.strictEqual(yield* Ref.get(resources.alive), 1, "the finalizers of the cleaned items ran")
      const again = yield* admin.cistern.cleanupPool({ path: { name: "expiring" }, payload: {} })
      assert.strictEqual(again.cleaned, 0)
      const empty = yield* raw(server, { method: "POST", path: "/pools/expiring/cleanup", headers: bearer })
      assert.strictEqual(empty.status, 200, "an empty body is an empty request")
      yield* Deferred.succeed(hold, undefined)
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("bad input gets 400 with a typed error saying what was wrong, and nothing changes", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const pool = yield* makePool(registry, resources.acquire, {
        name: "guarded",
        maxPerKey: 5,
        idleTimeout: "1 minute",
        cleanupInterval: "1 hour"
      })
      const server = yield* serve(registry, { token })
      yield* Effect.forEach(
        ["a", "b", "c"],
        (user) => pool.use({ user, server: "db", apiKey: "k" }, () => Effect.void),
        {
          concurrency: "unbounded"
        }
      )
      yield* TestClock.adjust("2 minutes")
      const long = "n".repeat(129)
      const cases: ReadonlyArray<readonly [string, string, string | undefined, string]> = [
        ["POST", "/pools/guarded/cleanup", "{", "JSON"],
        ["POST", "/pools/guarded/cleanup", '{"reason": 5}', "reason"],
        ["POST", "/pools/guarded/cleanup", JSON.stringify({ reason: "r".repeat(201) }), "at most 200 characters"],
        ["POST", "/pools/guarded/cleanup", JSON.stringify({ reason: "line\nbreak" }), "no control characters"],
        ["POST", "/pools/guarded/cleanup", "[]", "Expected"],
        ["POST", `/pools/${long}/cleanup`, "{}", "at most 128 characters"],
        ["POST", "/pools/gua%00rded/cleanup", "{}", "no control characters"],
        ["GET", `/pools/${long}`, undefined, "at most 128 characters"]
      ]
      for (const [method, path, body, expected] of cases) {
        const response = yield* raw(server, {
          method,
          path,
          headers: { ...bearer, "content-type": "application/json" },
          ...(body === undefined ? {} : { body })
        })
        assert.strictEqual(response.status, 400, `${method} ${path.slice(0, 40)} ${body}`)
        const error = JSON.parse(response.body)
        assert.strictEqual(error._tag, "HttpApiDecodeError")
        assert.include(error.message, expected)
      }
      const stats = yield* pool.stats
      assert.deepStrictEqual([stats.idle, stats.size, yield* Ref.get(resources.alive)], [3, 3, 3], "nothing cleaned")

      const unknown = yield* raw(server, { path: "/pools/nope", headers: bearer })
      assert.strictEqual(unknown.status, 404)
      assert.deepStrictEqual(JSON.parse(unknown.body), { _tag: "PoolNotFound", name: "nope" })
      const admin = yield* client(server, token)
      const missing = yield* Effect.flip(admin.cistern.cleanupPool({ path: { name: "nope" }, payload: {} }))
      assert.instanceOf(missing, AdminApi.PoolNotFound)
      assert.strictEqual((yield* pool.stats).idle, 3)

      const result = yield* admin.cistern.cleanupPool({ path: { name: "guarded" }, payload: {} })
      assert.strictEqual(result.cleaned, 3, "the items were there to clean all along")
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("the registry forgets a pool whose scope closed", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const server = yield* serve(registry, { token })
      const admin = yield* client(server, token)
      const scope = yield* Scope.make()
      const pool = yield* makePool(registry, resources.acquire, { name: "short-lived" }).pipe(Scope.extend(scope))
      yield* makePool(registry, resources.acquire, { name: "long-lived" })
      yield* pool.use({ user: "a", server: "s", apiKey: "k" }, () => Effect.void)
      assert.deepStrictEqual(
        (yield* admin.cistern.listPools()).pools.map((p) => p.name),
        ["short-lived", "long-lived"]
      )
      assert.strictEqual((yield* admin.cistern.getPool({ path: { name: "short-lived" } })).stats.idle, 1)
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(yield* Ref.get(resources.alive), 0)
      assert.deepStrictEqual(
        (yield* admin.cistern.listPools()).pools.map((p) => p.name),
        ["long-lived"]
      )
      const gone = yield* Effect.flip(admin.cistern.getPool({ path: { name: "short-lived" } }))
      assert.deepStrictEqual(gone, new AdminApi.PoolNotFound({ name: "short-lived" }))
      assert.strictEqual((yield* raw(server, { path: "/pools/short-lived", headers: bearer })).status, 404)
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("/health: 503 with the reasons when a pool is closed or every circuit is open, 200 when degraded", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const server = yield* serve(registry, { token })
      const admin = yield* client(server, token)
      assert.deepStrictEqual(yield* admin.cistern.health(), { status: "healthy", reasons: [], pools: [] })

      const full = yield* makePool(registry, resources.acquire, { name: "full", maxPerKey: 2, maxTotal: 2 })
      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(full.use({ user: "a", server: "s", apiKey: "k" }, () => Deferred.await(hold)))
      yield* Effect.forkScoped(full.use({ user: "b", server: "s", apiKey: "k" }, () => Deferred.await(hold)))
      yield* settle
      const degraded = yield* admin.cistern.health()
      assert.strictEqual(degraded.status, "degraded")
      assert.deepStrictEqual(
        degraded.pools[0].reasons.map((r) => [r.kind, r.message]),
        [["pool-at-limit", "is at its limit: 2 of 2 items"]]
      )
      assert.deepStrictEqual(degraded.pools[0].occupancy, {
        keys: 2,
        size: 2,
        idle: 0,
        inUse: 2,
        creating: 0,
        waiting: 0
      })
      assert.strictEqual(degraded.pools[0].limits.maxTotal, 2)

      // a pool that reports itself closed (a real one leaves the registry before it closes)
      const stats = yield* full.stats
      yield* registry.register({
        name: "closing",
        stats: Effect.succeed({ ...stats, name: "closing", closed: true }),
        items: Effect.succeed([]),
        cleanup: Effect.succeed({ before: 0, after: 0, cleaned: 0, keysDropped: 0 })
      })
      const unhealthy = yield* admin.cistern.health()
      assert.strictEqual(unhealthy.status, "unhealthy")
      assert.include(unhealthy.reasons, "pool closing is closed: it hands nothing out")
      const response = yield* raw(server, { path: "/health", headers: bearer })
      assert.strictEqual(response.status, 503)
      Schema.decodeUnknownSync(AdminApi.UnhealthyReport)(JSON.parse(response.body))
      yield* Deferred.succeed(hold, undefined)
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("/budgets lists each registered budget's live figures while its scope is open, behind the token", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const server = yield* serve(registry, { token })
      const admin = yield* client(server, token)
      assert.deepStrictEqual(yield* admin.cistern.listBudgets(), { budgets: [] })

      const figures = (instanceId: string, held: number): PoolRegistry.BudgetStats => ({
        name: "upstream",
        instanceId,
        limit: 100,
        used: 12,
        held,
        waiters: 0,
        wantsElsewhere: 3,
        over: 0,
        state: "ok",
        granted: held,
        released: 0,
        exhausted: 0,
        unavailable: 0,
        reclaimed: 0,
        leasesLost: 0,
        pendingReleases: 0
      })
      // the stats effect is read at each request: the route shows what the budget holds now
      const held = yield* Ref.make(2)
      const scope = yield* Scope.make()
      yield* registry
        .registerBudget({
          name: "upstream",
          instanceId: "here",
          stats: Effect.map(Ref.get(held), (n) => ({ ...figures("here", n), state: "learning" as const }))
        })
        .pipe(Scope.extend(scope))
      yield* registry.registerBudget({
        name: "upstream",
        instanceId: "also-here",
        stats: Effect.succeed(figures("also-here", 5))
      })

      const first = yield* admin.cistern.listBudgets()
      assert.deepStrictEqual(
        first.budgets.map((b) => [b.name, b.instanceId, b.held, b.state]),
        [
          ["upstream", "here", 2, "learning"],
          ["upstream", "also-here", 5, "ok"]
        ]
      )
      yield* Ref.set(held, 4)
      const response = yield* raw(server, { path: "/budgets", headers: bearer })
      assert.strictEqual(response.status, 200)
      assert.strictEqual(response.headers["content-type"], "application/json")
      const decoded = Schema.decodeUnknownSync(AdminApi.BudgetList)(JSON.parse(response.body))
      assert.deepStrictEqual(decoded.budgets[0], { ...figures("here", 4), state: "learning" })

      for (const headers of [{}, { authorization: "Bearer wrong" }]) {
        const refused = yield* raw(server, { path: "/budgets", headers })
        assert.strictEqual(refused.status, 401)
        assert.notInclude(refused.body, "upstream")
      }

      yield* Scope.close(scope, Exit.void)
      assert.deepStrictEqual(
        (yield* admin.cistern.listBudgets()).budgets.map((b) => b.instanceId),
        ["also-here"]
      )
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("the OpenAPI document and the docs page are served from the API definition", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const server = yield* serve(registry, { token })
      const openapi = yield* raw(server, { path: "/openapi.json" })
      assert.strictEqual(openapi.status, 200)
      const spec = JSON.parse(openapi.body)
      assert.includeMembers(Object.keys(spec.paths), [
        "/pools",
        "/pools/{name}",
        "/pools/{name}/cleanup",
        "/budgets",
        "/health",
        "/metrics"
      ])
      assert.deepStrictEqual(
        Object.keys(spec.paths["/health"].get.responses).sort(),
        ["200", "400", "401", "503"].sort()
      )
      assert.includeMembers(Object.keys(spec.paths["/pools/{name}"].get.responses), ["200", "400", "401", "404"])
      assert.deepStrictEqual(spec.components.securitySchemes.bearer, { type: "http", scheme: "bearer" })
      const docs = yield* raw(server, { path: "/docs" })
      assert.strictEqual(docs.status, 200)
      assert.include(docs.headers["content-type"], "text/html")
      assert.include(docs.body, "swagger-ui")
      assert.include(docs.body, "/pools/{name}/cleanup")
    }).pipe(Effect.provide(captureLogs().layer))
  )
})
