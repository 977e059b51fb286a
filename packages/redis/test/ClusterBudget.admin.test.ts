/**
 * A cluster budget seen through the admin API of `@cistern/platform`: two
 * instances of one budget over a real `redis-server`, registered in a
 * `PoolRegistry`, read over HTTP from a real admin server on 127.0.0.1.
 * Time is `TestClock`'s (the test build of the script reads it); only the I/O
 * is real.
 */
import * as Http from "node:http"
import { AdminApi, AdminAuth, AdminHttp } from "@cistern/platform"
import { PoolRegistry } from "@cistern/pool"
import { HttpApiClient, HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import type * as ClusterBudget from "../src/ClusterBudget.js"
import { toBudgetStats } from "../src/internal/budgetRegistry.js"
import { makeInstance } from "./budget/instances.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"

const secret = "admin-token-budget-4b1d9e27c3a8"
const token = Redacted.make(secret)

const options = (instanceId: string): ClusterBudget.Options => ({
  name: "upstream",
  total: 3,
  perTenant: 2,
  leaseTime: "3 seconds",
  acquireTimeout: "10 seconds",
  instanceId
})

/** Takes a permit in a scope of its own; closing that scope returns it. */
const hold = (budget: ClusterBudget.Service, tenant: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Scope.extend(budget.permit(tenant), scope)
    return Scope.close(scope, Exit.void)
  })

/** The standalone admin server over `registry`, on a free loopback port, for the life of the scope. */
const serveAdmin = (registry: PoolRegistry.Service) =>
  Effect.gen(function* () {
    const layer = AdminHttp.layerServer().pipe(
      Layer.provide(AdminAuth.layer({ token })),
      Layer.provide(Layer.succeed(PoolRegistry.PoolRegistry, registry)),
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 }))
    )
    const context = yield* Layer.build(layer).pipe(Effect.orDie)
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    return `http://127.0.0.1:${address.port}`
  })

/** One GET with Node's own fetch: the status and the body as sent. */
const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    return { status: response.status, body: await response.text() }
  })

const available = redisAvailable()

describe.skipIf(!available.run)("ClusterBudget in the admin API", () => {
  it.scoped("GET /budgets shows each instance's live figures while it is registered, and /metrics its gauges", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const registry = yield* PoolRegistry.make
      const registered = Effect.provideService(PoolRegistry.PoolRegistry, registry)
      // Made while a registry is provided, a budget lists itself there (once) until its scope closes.
      const a = yield* makeInstance(server.url, options("a")).pipe(registered)
      const bScope = yield* Scope.make()
      const b = yield* makeInstance(server.url, options("b")).pipe(registered, Scope.extend(bScope))
      // Made without one: it is not listed (and needs none).
      const unlisted = yield* makeInstance(server.url, options("unlisted"))
      yield* eventually(
        Effect.map(Effect.all([a.stats, b.stats, unlisted.stats]), (all) => all.every((s) => s.instances > 0)),
        "each instance's first heartbeat has registered it in Redis"
      )

      const url = yield* serveAdmin(registry)
      const admin = yield* HttpApiClient.make(AdminApi.AdminApi, {
        baseUrl: url,
        transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
      })

      const releaseA1 = yield* hold(a, "t1")
      yield* hold(a, "t1")
      yield* hold(b, "t2")
      // t1 is at its tenant limit (2): b's call for it waits, and says so.
      const waiting = yield* Effect.fork(hold(b, "t1"))
      yield* eventually(
        Effect.map(b.stats, (s) => s.waiters === 1),
        "b waits for t1"
      )

      const { budgets } = yield* admin.cistern.listBudgets()
      assert.deepStrictEqual(
        budgets.map((s) => [s.name, s.instanceId, s.limit, s.held, s.waiters, s.state, s.granted]),
        [
          ["upstream", "a", 3, 2, 0, "ok", 2],
          ["upstream", "b", 3, 1, 1, "ok", 1]
        ]
      )
      assert.strictEqual(budgets[1].used, 3, "b's last answer from Redis counted all three permits")
      assert.deepStrictEqual(budgets, [toBudgetStats(yield* a.stats), toBudgetStats(yield* b.stats)])
      assert.deepStrictEqual(
        budgets.map((s) => [s.mode, s.offline, s.instances, s.failOpen, s.reasserted]),
        [
          ["fail-closed", 0, 3, 0, 0],
          ["fail-closed", 0, 3, 0, 0]
        ],
        "every figure of the budget's stats is sent, the mode and the instances in the budget included"
      )
      // Every field of the budget's stats has its place in the registry's schema (a type error otherwise).
      const complete: [Exclude<keyof ClusterBudget.Stats, keyof PoolRegistry.BudgetStats>] extends [never]
        ? true
        : false = true
      assert.isTrue(complete)

      // the raw body is plain JSON that the API's own schema decodes, and nothing of Redis leaks into it
      const raw = yield* get(`${url}/budgets`, { authorization: `Bearer ${secret}` })
      assert.strictEqual(raw.status, 200)
      const decoded = Schema.decodeUnknownSync(AdminApi.BudgetList)(JSON.parse(raw.body))
      assert.deepStrictEqual(decoded.budgets, budgets)
      assert.notInclude(raw.body, "redis://")
      assert.strictEqual((yield* get(`${url}/budgets`)).status, 401, "the token is required")

      const metrics = yield* get(`${url}/metrics`, { authorization: `Bearer ${secret}` })
      assert.match(metrics.body, /cistern_budget_held\{[^}]*budget="upstream"[^}]*\} \d/)

      // a's release wakes b's waiter: the next look shows the permit moved
      yield* releaseA1
      yield* Fiber.join(waiting)
      const moved = yield* admin.cistern.listBudgets()
      assert.deepStrictEqual(
        moved.budgets.map((s) => [s.instanceId, s.held, s.waiters, s.released, s.granted]),
        [
          ["a", 1, 0, 1, 2],
          ["b", 2, 0, 0, 2]
        ]
      )

      // b leaves: its scope closes, and the registry forgets it
      yield* Scope.close(bScope, Exit.void)
      assert.deepStrictEqual(
        (yield* admin.cistern.listBudgets()).budgets.map((s) => s.instanceId),
        ["a"]
      )
    }).pipe(Effect.provide(NodeHttpClient.layerUndici))
  )
})
