import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Data, Deferred, Effect, Exit, Fiber, Redacted, Ref, Schema, Scope, TestClock } from "effect"
import { AdminApi, AdminDashboard } from "../src/index.js"
import { captureLogs, makeResources, settle } from "./utils/fixtures.js"
import { eventually, raw, type Server, serve, sse } from "./utils/http.js"

const secret = "dashboard-token-93c1d7e5a2"
const token = Redacted.make(secret)
const bearer = { authorization: `Bearer ${secret}` }

const decodeSnapshot = Schema.decodeUnknownSync(AdminApi.DashboardSnapshot)
const decodeHistory = Schema.decodeUnknownSync(AdminApi.DashboardHistory)
const decodePage = Schema.decodeUnknownSync(AdminApi.KeyPage)

const makePool = (
  registry: PoolRegistry.Service,
  options: Partial<KeyedPool.Options<string, { readonly id: number }, unknown, never>> & { readonly name: string },
  acquire?: (key: string) => Effect.Effect<{ readonly id: number }, unknown, Scope.Scope>
) =>
  Effect.flatMap(makeResources, (resources) =>
    KeyedPool.make<string, { readonly id: number }, unknown, Scope.Scope>({
      acquire: acquire ?? resources.acquire,
      describeKey: (key) => key,
      ...options
    }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
  )

/**
 * Registers a pool that reports `count` keys: the stats of a real pool with one key, its key
 * repeated under `name(i)`. Filling a real pool with thousands of keys takes the engine seconds;
 * the dashboard reads nothing but the stats. Given `groupOf`, the keys fall into tenant groups
 * whose counts are summed from them.
 */
const registerWithKeys = (
  registry: PoolRegistry.Service,
  poolName: string,
  count: number,
  name: (i: number) => string,
  groupOf?: (key: string) => string
) =>
  Effect.gen(function* () {
    const scratch = yield* PoolRegistry.make
    const real = yield* makePool(scratch, { name: poolName })
    yield* real.use("template", () => Effect.void)
    const template = yield* real.stats
    const inUse = yield* Ref.make(new Set<string>())
    const stats = Effect.map(Ref.get(inUse), (busy) => {
      const perKey = Array.from({ length: count }, (_, i) => {
        const key = name(i)
        const leased = busy.has(key) ? 1 : 0
        return { ...template.perKey[0], key, idle: 1 - leased, inUse: leased }
      })
      const groups = new Map<string, { group: string; max: number; size: number; idle: number; keys: number }>()
      if (groupOf !== undefined) {
        for (const k of perKey) {
          const group = groupOf(k.key)
          const g = groups.get(group) ?? { group, max: 20, size: 0, idle: 0, keys: 0 }
          groups.set(group, { ...g, size: g.size + k.size, idle: g.idle + k.idle, keys: g.keys + 1 })
        }
      }
      return {
        ...template,
        keys: count,
        size: count,
        idle: count - busy.size,
        inUse: busy.size,
        perKey,
        ...(groupOf === undefined ? {} : { perGroup: Array.from(groups.values()) })
      }
    })
    yield* registry.register({ name: poolName, stats, items: Effect.succeed([]), cleanup: real.cleanup })
    return { lease: (key: string) => Ref.update(inUse, (busy) => new Set(busy).add(key)) }
  })

const viewerCount = (server: Server) => Effect.map(server.dashboard.viewers, (viewers) => viewers.length)

/** The next snapshot of a stream (the first events may be the history). */
const nextSnapshot = (client: { readonly next: Effect.Effect<{ readonly type: string; readonly data: any }> }) =>
  Effect.repeat(client.next, { until: (event) => event.type === "snapshot" }).pipe(
    Effect.map((event) => decodeSnapshot(event.data))
  )

class Down extends Data.TaggedError("Down")<{ readonly key: string }> {}

describe("AdminDashboard: routes", () => {
  it.scoped("/livez answers 200 without a token and without details; /health still needs one", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* makePool(registry, { name: "livez" })
      const server = yield* serve(registry, { token })
      const live = yield* raw(server, { path: "/livez" })
      assert.strictEqual(live.status, 200)
      assert.strictEqual(live.body, "ok")
      assert.strictEqual((yield* raw(server, { path: "/health" })).status, 401)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("the page and its assets are served without a token, under a strict CSP, and hold no data", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* makePool(registry, { name: "secret-pool-name" })
      const server = yield* serve(registry, { token })
      const page = yield* raw(server, { path: "/dashboard" })
      assert.strictEqual(page.status, 200)
      assert.include(page.headers["content-type"], "text/html")
      assert.strictEqual(page.headers["content-security-policy"], AdminDashboard.contentSecurityPolicy)
      assert.include(page.headers["content-security-policy"], "connect-src 'self'")
      assert.strictEqual(page.headers["cache-control"], "no-store")
      assert.notInclude(page.body, "secret-pool-name")
      assert.notInclude(page.body, secret)
      assert.notMatch(page.body, /<script>|\son[a-z]+=/i, "no inline script or handler")
      assert.notMatch(page.body, /https?:\/\//, "no outside address")
      for (const [file, type, marker] of [
        ["app.js", "text/javascript", "/dashboard/events"],
        ["app.css", "text/css", ".pool"],
        ["uplot.js", "text/javascript", "uPlot"],
        ["uplot.css", "text/css", ".uplot"]
      ] as const) {
        const asset = yield* raw(server, { path: `/dashboard/assets/${file}` })
        assert.strictEqual(asset.status, 200, file)
        assert.include(asset.headers["content-type"], type, file)
        assert.include(asset.body, marker, file)
      }
      assert.strictEqual((yield* raw(server, { path: "/dashboard/assets/other.js" })).status, 400)
      const spec = JSON.parse((yield* raw(server, { path: "/openapi.json" })).body)
      assert.includeMembers(Object.keys(spec.paths), ["/dashboard/events", "/dashboard/snapshot", "/dashboard/keys"])
      assert.notInclude(Object.keys(spec.paths), "/dashboard")
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("the data routes need the token; one in the query string is not read", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const server = yield* serve(registry, { token })
      for (const path of ["/dashboard/events", "/dashboard/snapshot", `/dashboard/events?token=${secret}`]) {
        const response = yield* raw(server, { path })
        assert.strictEqual(response.status, 401, path)
        assert.strictEqual(response.headers["www-authenticate"], "Bearer")
      }
      const keys = yield* raw(server, { method: "POST", path: "/dashboard/keys", body: '{"pool":"x"}' })
      assert.strictEqual(keys.status, 401)
    }).pipe(Effect.provide(captureLogs().layer))
  )
})

describe("AdminDashboard: the event stream", () => {
  it.scoped("sends the history, then the latest snapshot every interval; a client that hangs up ends its viewer", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      // Two tenants: "busy" is bob's key, every other key is alice's.
      const pool = yield* makePool(registry, {
        name: "stream",
        maxPerKey: 2,
        group: (key) => (key === "busy" ? "bob" : "alice"),
        maxPerGroup: 3
      })
      const plain = yield* makePool(registry, { name: "plain" })
      yield* plain.use("k", () => Effect.void)
      yield* pool.use("warm", () => Effect.void)
      const server = yield* serve(registry, { token })
      assert.strictEqual(yield* viewerCount(server), 0)

      const client = yield* sse(server, "/dashboard/events", bearer)
      assert.strictEqual(yield* client.status, 200)
      const history = yield* client.next
      assert.strictEqual(history.type, "history")
      assert.deepStrictEqual(
        decodeHistory(history.data).pools.map((p) => [p.name, p.points.length]),
        [
          ["stream", 1],
          ["plain", 1]
        ]
      )
      const first = yield* nextSnapshot(client)
      assert.strictEqual(first.at, 0)
      assert.deepStrictEqual(
        first.pools[0].groups?.map((g) => [g.group, g.size, g.idle, g.keys, g.max]),
        [["alice", 1, 1, 1, 3]]
      )
      assert.deepStrictEqual(
        [first.pools[1].groups, first.pools[1].groupsTotal],
        [undefined, undefined],
        "a pool without groups has none"
      )
      assert.strictEqual(yield* viewerCount(server), 1)

      const hold = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(pool.use("busy", () => Deferred.await(hold)))
      yield* settle
      yield* TestClock.adjust("1 second")
      const second = yield* nextSnapshot(client)
      assert.strictEqual(second.at, 1000)
      const busy = second.pools[0].keys.find((k) => k.key === "busy")
      assert.deepStrictEqual([busy?.inUse, second.pools[0].totals.inUse, second.pools[0].point.inUse], [1, 1, 1])
      assert.strictEqual(second.pools[0].groupsTotal, 2)
      assert.deepStrictEqual(
        second.pools[0].groups?.map((g) => [g.group, g.size, g.idle, g.keys, g.max]),
        [
          ["bob", 1, 0, 1, 3],
          ["alice", 1, 1, 1, 3]
        ],
        "the busiest group comes first"
      )
      yield* Deferred.succeed(hold, undefined)
      yield* Fiber.join(holder)
      yield* TestClock.adjust("1 second")
      const third = yield* nextSnapshot(client)
      assert.deepStrictEqual([third.at, third.pools[0].totals.inUse], [2000, 0])

      yield* client.close
      yield* eventually(viewerCount(server), (n) => n === 0)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("closing the server ends the open streams instead of waiting for their clients", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* makePool(registry, { name: "closing" })
      const scope = yield* Scope.make()
      const server = yield* Scope.extend(serve(registry, { token }), scope)
      const clients = yield* Effect.forEach([1, 2, 3], () => sse(server, "/dashboard/events", bearer))
      for (const client of clients) yield* nextSnapshot(client)
      assert.strictEqual(yield* viewerCount(server), 3)
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* eventually(
        Effect.sync(() => closing.unsafePoll()),
        (exit) => exit !== null
      )
      yield* Fiber.join(closing)
      assert.strictEqual(yield* viewerCount(server), 0)
      for (const client of clients) assert.strictEqual(yield* client.closed, undefined)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("50 concurrent streams each get every snapshot, and all end when their clients go", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* makePool(registry, { name: "fifty" })
      const server = yield* serve(registry, { token })
      const clients = yield* Effect.forEach(Array.from({ length: 50 }), () => sse(server, "/dashboard/events", bearer))
      for (const client of clients) assert.strictEqual((yield* nextSnapshot(client)).at, 0)
      assert.strictEqual(yield* viewerCount(server), 50)
      for (const at of [1000, 2000, 3000]) {
        yield* TestClock.adjust("1 second")
        const snapshots = yield* Effect.forEach(clients, nextSnapshot, { concurrency: "unbounded" })
        assert.deepStrictEqual(new Set(snapshots.map((s) => s.at)), new Set([at]))
      }
      yield* Effect.forEach(clients.slice(0, 25), (client) => client.close)
      yield* eventually(viewerCount(server), (n) => n === 25)
      yield* Effect.forEach(clients.slice(25), (client) => client.close)
      yield* eventually(viewerCount(server), (n) => n === 0)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("a reader that stops reading holds one pending snapshot, not a backlog, and gets the latest after", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      // 1,000 keys, all in each snapshot: about 300 KB a frame, so the socket's buffers fill in a few frames
      yield* registerWithKeys(registry, "slow", 1000, (i) => `tenant-${String(i).padStart(4, "0")}-with-a-longer-name`)
      const server = yield* serve(registry, { token, dashboard: { keysPerPool: 1000 } })
      const client = yield* sse(server, "/dashboard/events", bearer)
      yield* nextSnapshot(client)
      yield* client.pause
      const tick = (n: number) =>
        Effect.forEach(Array.from({ length: n }), () => TestClock.adjust("1 second"), { discard: true })
      // fill the socket's buffers, then keep producing
      yield* tick(60)
      const [full] = yield* eventually(server.dashboard.viewers, ([v]) => v !== undefined && v.dropped > 0)
      yield* tick(60)
      const [after] = yield* server.dashboard.viewers
      assert.isAtMost(after.pending, 1, "one frame waits, at most")
      assert.isAtMost(after.sent - full.sent, 2, "nothing more is written while the reader does not read")
      assert.isAtLeast(after.dropped, 120 - after.sent, "the rest were replaced by newer snapshots")

      yield* client.resume
      const latest = yield* Effect.repeat(nextSnapshot(client), { until: (s) => s.at === 120_000 })
      assert.strictEqual(latest.at, 120_000, "the reader catches up on the newest snapshot")
      const [caughtUp] = yield* server.dashboard.viewers
      assert.isBelow(caughtUp.sent, 60, "it got what was buffered and the latest, not 120 frames")
    }).pipe(Effect.provide(captureLogs().layer))
  )
})

describe("AdminDashboard: sampling", () => {
  it.scoped("nobody watching: a sample every idleInterval; a poll or a viewer gets a fresh one at once", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* makePool(registry, { name: "idle-pool" })
      const server = yield* serve(registry, { token })
      const times = Effect.map(server.dashboard.history, (h) => h.pools[0].points.map((p) => p.at))
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* times, [0])
      yield* TestClock.adjust("5 seconds")
      assert.deepStrictEqual(yield* times, [0, 10_000])
      yield* TestClock.adjust("3 seconds")
      // a poll: fresh at once, and every second while someone polls
      assert.strictEqual((yield* server.dashboard.latest).at, 13_000)
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* times, [0, 10_000, 13_000, 14_000])
      // a minute without a poll: back to every 10 seconds
      yield* TestClock.adjust("60 seconds")
      const quiet = yield* times
      assert.isBelow(quiet.length, 4 + 60)
      // a viewer: a sample at once (its first snapshot may be the stale one), then every second
      const before = quiet[quiet.length - 1]
      const client = yield* sse(server, "/dashboard/events", bearer)
      yield* nextSnapshot(client)
      const first = yield* eventually(times, (t) => t[t.length - 1] === 74_000)
      assert.isAbove(first[first.length - 1], before)
      yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* nextSnapshot(client)).at >= 74_000, true)
      assert.deepStrictEqual((yield* times).slice(-2), [74_000, 75_000])
    }).pipe(Effect.provide(captureLogs().layer))
  )
})

describe("AdminDashboard: what a snapshot says", () => {
  it.scoped("circuit transitions, failed creations, timeouts and evictions become events", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const pool = yield* makePool(
        registry,
        {
          name: "events-pool",
          maxPerKey: 1,
          maxTotal: 2,
          acquireTimeout: "1 second",
          breaker: { failures: 2, reset: "1 minute" },
          createBackoff: false,
          retry: false
        },
        (key) => (key === "down" ? Effect.fail(new Down({ key })) : Effect.succeed({ id: 1 }))
      )
      const server = yield* serve(registry, { token })
      yield* Effect.exit(pool.use("down", () => Effect.void))
      yield* Effect.exit(pool.use("down", () => Effect.void))
      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(pool.use("busy", () => Deferred.await(hold)))
      yield* settle
      const late = yield* Effect.fork(Effect.exit(pool.use("busy", () => Effect.void)))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(late)
      yield* Deferred.succeed(hold, undefined)
      // two idle items fill maxTotal; a third key evicts one
      yield* pool.use("other", () => Effect.void)
      yield* pool.use("third", () => Effect.void)
      yield* TestClock.adjust("1 second")
      const snapshot = decodeSnapshot(
        JSON.parse((yield* raw(server, { path: "/dashboard/snapshot", headers: bearer })).body)
      )
      const kinds = snapshot.events.map((e) => [e.kind, e.key])
      assert.deepInclude(kinds, ["circuit", "down"])
      assert.deepInclude(kinds, ["creation-failed", "down"])
      assert.deepInclude(kinds, ["timeout", "busy"])
      assert.deepInclude(kinds, ["eviction", null])
      assert.include(snapshot.events.find((e) => e.kind === "circuit")!.message, "closed → open")
      const [view] = snapshot.pools
      assert.deepStrictEqual(view.circuits, { open: 1, halfOpen: 0 })
      assert.strictEqual(view.keys[0].key, "down", "an open circuit comes first")
      assert.deepStrictEqual([view.keys[0].breaker, view.keys[0].health], ["open", "open"])
      assert.strictEqual(view.status, "degraded")
      assert.strictEqual(view.config.maxPerKey, 1)
      assert.isTrue(snapshot.events.every((e, i) => i === 0 || e.id > snapshot.events[i - 1].id))
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("acquire-wait quantiles and timeouts per sample come from the pool's own histogram", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const pool = yield* makePool(registry, { name: "waits-pool", maxPerKey: 1, acquireTimeout: "10 seconds" })
      // the item exists before the first sample: only the waiter below waits
      yield* pool.use("k", () => Effect.void)
      const server = yield* serve(registry, { token })
      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(pool.use("k", () => Deferred.await(hold)))
      yield* settle
      const waiter = yield* Effect.fork(pool.use("k", () => Effect.void))
      yield* settle
      yield* TestClock.adjust("300 millis")
      yield* Deferred.succeed(hold, undefined)
      yield* Fiber.join(waiter)
      yield* TestClock.adjust("700 millis")
      const { point } = (yield* server.dashboard.latest).pools[0]
      // the 300 ms wait falls in the histogram's (256 ms, 512 ms] bucket
      assert.deepStrictEqual([point.at, point.waitP50Millis, point.waitP99Millis], [1000, 512, 512])
      assert.strictEqual(point.waited, 1)
      yield* TestClock.adjust("1 second")
      const quiet = (yield* server.dashboard.latest).pools[0].point
      assert.deepStrictEqual([quiet.waited, quiet.waitP50Millis, quiet.timeouts], [0, null, 0])
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("10,000 keys: the snapshot carries the 50 that need attention most; the key search pages through all", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      // Ten keys per tenant group: "user-0424" holds user-04240…user-04249.
      const big = yield* registerWithKeys(
        registry,
        "big",
        10_000,
        (i) => `user-${String(i).padStart(5, "0")}:server`,
        (key) => key.slice(0, 9)
      )
      yield* big.lease("user-04242:server")
      const server = yield* serve(registry, { token })
      const response = yield* raw(server, { path: "/dashboard/snapshot", headers: bearer })
      const snapshot = decodeSnapshot(JSON.parse(response.body))
      const [view] = snapshot.pools
      assert.deepStrictEqual([view.keysTotal, view.keys.length, view.totals.keys], [10_000, 50, 10_000])
      assert.strictEqual(view.keys[0].key, "user-04242:server", "the key in use comes first")
      assert.deepStrictEqual([view.groupsTotal, view.groups?.length], [1000, 50], "groups are capped like keys")
      assert.deepStrictEqual(
        [view.groups?.[0], view.groups?.[1].group],
        [{ group: "user-0424", max: 20, size: 10, idle: 9, keys: 10 }, "user-0000"],
        "the group in use comes first, then by name"
      )
      assert.isBelow(Buffer.byteLength(response.body), 32 * 1024, "the snapshot is capped, whatever the keys")

      const page = (query: object) =>
        Effect.map(
          raw(server, {
            method: "POST",
            path: "/dashboard/keys",
            headers: { ...bearer, "content-type": "application/json" },
            body: JSON.stringify(query)
          }),
          (r) => ({ status: r.status, body: JSON.parse(r.body) })
        )
      const found = yield* page({ pool: "big", search: "USER-0424", limit: 100 })
      assert.strictEqual(found.status, 200)
      const decoded = decodePage(found.body)
      assert.deepStrictEqual([decoded.keysTotal, decoded.matched, decoded.rows.length], [10_000, 10, 10])
      const last = decodePage((yield* page({ pool: "big", sort: "key", offset: 9_990, limit: 25 })).body)
      assert.deepStrictEqual(
        last.rows.map((r) => r.key),
        Array.from({ length: 10 }, (_, i) => `user-0${9_990 + i}:server`)
      )
      const busiest = decodePage((yield* page({ pool: "big", sort: "inUse", limit: 1 })).body)
      assert.deepStrictEqual(
        busiest.rows.map((r) => [r.key, r.inUse]),
        [["user-04242:server", 1]]
      )
      assert.strictEqual((yield* page({ pool: "big", limit: 101 })).status, 400)
      assert.strictEqual((yield* page({ pool: "big", offset: -1 })).status, 400)
      assert.strictEqual((yield* page({ pool: "nope" })).status, 404)
      assert.strictEqual((yield* page({ pool: "big", search: "x".repeat(9000) })).status, 413)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped(
    "a snapshot carries every registered budget's figures at the sample, and drops one whose scope closed",
    () =>
      Effect.gen(function* () {
        const registry = yield* PoolRegistry.make
        const server = yield* serve(registry, { token })
        const held = yield* Ref.make(1)
        const figures = (n: number): PoolRegistry.BudgetStats => ({
          name: "upstream",
          instanceId: "gw-1",
          limit: 10,
          used: 4,
          held: n,
          waiters: n > 1 ? 1 : 0,
          wantsElsewhere: 0,
          over: 0,
          state: n > 1 ? "unavailable" : "ok",
          granted: n,
          released: 0,
          exhausted: 0,
          unavailable: n > 1 ? 1 : 0,
          reclaimed: 0,
          leasesLost: 0,
          pendingReleases: 0
        })
        const scope = yield* Scope.make()
        yield* registry
          .registerBudget({ name: "upstream", instanceId: "gw-1", stats: Effect.map(Ref.get(held), figures) })
          .pipe(Scope.extend(scope))
        const snapshot = () =>
          Effect.map(raw(server, { path: "/dashboard/snapshot", headers: bearer }), (r) =>
            decodeSnapshot(JSON.parse(r.body))
          )
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual((yield* snapshot()).budgets, [figures(1)])
        yield* Ref.set(held, 3)
        yield* TestClock.adjust("1 second")
        const later = yield* snapshot()
        assert.deepStrictEqual(later.budgets, [figures(3)])
        assert.deepStrictEqual(later.pools, [], "budgets are not pools")
        yield* Scope.close(scope, Exit.void)
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual((yield* snapshot()).budgets, [])
      }).pipe(Effect.provide(captureLogs().layer))
  )
})
