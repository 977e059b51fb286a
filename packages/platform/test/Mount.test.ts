import * as Http from "node:http"
import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { HttpApi, HttpApiBuilder, HttpApiClient, HttpApiEndpoint, HttpApiGroup, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, type Duration, Effect, Layer, Option, Redacted, Schema, TestClock } from "effect"
import { AdminApi, AdminAuth, AdminHttp } from "../src/index.js"
import { captureLogs, makeResources, settle } from "./utils/fixtures.js"
import { httpClient, raw } from "./utils/http.js"

const secret = "mount-token-5e2a9c4b1d"
const token = Redacted.make(secret)
const bearer = { authorization: `Bearer ${secret}` }

/** The multi-user MCP gateway's documented example bodies, verbatim. */
const gatewayPoolStatus = {
  success: true,
  data: {
    totalConnections: 5,
    userConnectionCounts: { user1: 2, user2: 3 },
    connectionDetails: [
      {
        key: "user1:github-mcp",
        name: "github-mcp",
        userId: "user1",
        lastUsed: "2024-01-01T10:00:00.000Z",
        createTime: "2024-01-01T09:00:00.000Z",
        idleMinutes: 30
      }
    ],
    config: {
      maxConnectionsPerUser: 10,
      maxTotalConnections: 100,
      connectionTimeout: 1800000,
      cleanupInterval: 300000
    }
  }
}
const gatewayCleanup = {
  success: true,
  data: {
    message: "Cleanup completed",
    before: { totalConnections: 10, userConnectionCounts: { user1: 5, user2: 5 } },
    after: { totalConnections: 6, userConnectionCounts: { user1: 3, user2: 3 } },
    cleanedConnections: 4
  }
}

/** An application's own API: its own group, the MCP gateway's two endpoints, and the admin group under /admin. */
class HelloGroup extends HttpApiGroup.make("hello").add(
  HttpApiEndpoint.get("hello", "/hello").addSuccess(Schema.String)
) {}

class McpGroup extends HttpApiGroup.make("mcp")
  .add(HttpApiEndpoint.get("poolStatus", "/api/mcp/pool-status").addSuccess(AdminHttp.PoolStatusResponse))
  .add(
    HttpApiEndpoint.post("cleanupConnections", "/api/mcp/cleanup-connections").addSuccess(
      AdminHttp.CleanupConnectionsResponse
    )
  )
  .middleware(AdminApi.Authorization) {}

class AppApi extends HttpApi.make("app").add(HelloGroup).add(McpGroup).add(AdminApi.AdminGroup.prefix("/admin")) {}

const HelloLive = HttpApiBuilder.group(AppApi, "hello", (handlers) =>
  handlers.handle("hello", () => Effect.succeed("hi"))
)

const McpLive = HttpApiBuilder.group(AppApi, "mcp", (handlers) =>
  Effect.gen(function* () {
    const registry = yield* PoolRegistry.PoolRegistry
    const mcp = registry
      .get("mcp")
      .pipe(
        Effect.flatMap(
          Option.match({ onNone: () => Effect.die("the mcp pool is not running"), onSome: Effect.succeed })
        )
      )
    return handlers
      .handle("poolStatus", () => Effect.flatMap(mcp, (entry) => AdminHttp.poolStatusResponse(entry)))
      .handle("cleanupConnections", () => Effect.flatMap(mcp, (entry) => AdminHttp.cleanupConnectionsResponse(entry)))
  })
)

const serveApp = (registry: PoolRegistry.Service) =>
  Effect.gen(function* () {
    const ApiLive = HttpApiBuilder.api(AppApi).pipe(
      Layer.provide([HelloLive, McpLive, AdminHttp.layerGroup(AppApi)]),
      Layer.provide(AdminAuth.layer({ token })),
      Layer.provide(Layer.succeed(PoolRegistry.PoolRegistry, registry))
    )
    const context = yield* HttpApiBuilder.serve(AdminHttp.logger).pipe(
      Layer.provide(ApiLive),
      Layer.provideMerge(NodeHttpServer.layer(Http.createServer, { host: "127.0.0.1", port: 0 })),
      Layer.build,
      Effect.orDie
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    return { port, url: `http://127.0.0.1:${port}` }
  })

const mcpPool = (registry: PoolRegistry.Service, cleanupInterval: Duration.DurationInput) =>
  Effect.flatMap(makeResources, (resources) =>
    KeyedPool.make({
      name: "mcp",
      acquire: (key: string) => resources.acquire(key),
      maxPerKey: 10,
      maxTotal: 100,
      idleTimeout: "30 minutes",
      cleanupInterval,
      describeKey: (key) => key
    }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
  )

const at = (iso: string) => TestClock.setTime(Date.parse(iso))

describe("mounting the admin group into an application's own HttpApi", () => {
  it.scoped("serves the group under a prefix beside the app's own endpoints, with the same auth", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* mcpPool(registry, "5 minutes")
      const server = yield* serveApp(registry)
      assert.strictEqual((yield* raw(server, { path: "/hello" })).body, '"hi"')
      assert.strictEqual((yield* raw(server, { path: "/admin/pools" })).status, 401)
      assert.strictEqual((yield* raw(server, { path: "/api/mcp/pool-status" })).status, 401)
      const pools = yield* raw(server, { path: "/admin/pools", headers: bearer })
      assert.strictEqual(pools.status, 200)
      assert.deepStrictEqual(
        Schema.decodeUnknownSync(AdminApi.PoolList)(JSON.parse(pools.body)).pools.map((p) => p.name),
        ["mcp"]
      )
      assert.strictEqual((yield* raw(server, { path: "/pools", headers: bearer })).status, 404)
      const app = yield* HttpApiClient.make(AppApi, { baseUrl: server.url })
      const unauthorized = yield* Effect.flip(app.cistern.health())
      assert.instanceOf(unauthorized, AdminApi.Unauthorized)
    }).pipe(Effect.provide(httpClient), Effect.provide(captureLogs().layer))
  )

  it.scoped("answers an MCP gateway's GET /api/mcp/pool-status with its exact JSON", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* at("2024-01-01T08:59:30.000Z")
      const pool = yield* mcpPool(registry, "5 minutes")
      const server = yield* serveApp(registry)
      // user1:github-mcp: created at 09:00, held until 10:00, leased again at 10:00 and given back
      const firstLease = yield* Deferred.make<void>()
      yield* at("2024-01-01T09:00:00.000Z")
      yield* Effect.forkScoped(pool.use("user1:github-mcp", () => Deferred.await(firstLease)))
      yield* settle
      yield* at("2024-01-01T10:00:00.000Z")
      yield* Deferred.succeed(firstLease, undefined)
      yield* settle
      yield* pool.use("user1:github-mcp", () => Effect.void)
      yield* Effect.forEach(["user1:notion-mcp", "user2:github-mcp", "user2:slack-mcp", "user2:slack-mcp"], (key) =>
        Effect.forkScoped(pool.use(key, () => Effect.sleep("1 millis")))
      )
      yield* settle
      yield* TestClock.adjust("1 millis")
      yield* at("2024-01-01T10:30:00.000Z")

      const response = yield* raw(server, { path: "/api/mcp/pool-status", headers: bearer })
      assert.strictEqual(response.status, 200)
      const body = JSON.parse(response.body)
      assert.strictEqual(body.data.connectionDetails.length, 5)
      assert.deepStrictEqual(
        { ...body, data: { ...body.data, connectionDetails: body.data.connectionDetails.slice(0, 1) } },
        gatewayPoolStatus
      )
      assert.deepStrictEqual(
        body.data.connectionDetails.map((d: { key: string; userId: string; name: string }) => [d.userId, d.name]),
        [
          ["user1", "github-mcp"],
          ["user1", "notion-mcp"],
          ["user2", "github-mcp"],
          ["user2", "slack-mcp"],
          ["user2", "slack-mcp"]
        ]
      )
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("answers an MCP gateway's POST /api/mcp/cleanup-connections with its exact JSON", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      yield* at("2024-01-01T09:00:00.000Z")
      const pool = yield* mcpPool(registry, "1 hour")
      const server = yield* serveApp(registry)
      const early = yield* Deferred.make<void>()
      const late = yield* Deferred.make<void>()
      for (const user of ["user1", "user2"]) {
        for (const [i, release] of [early, early, late, late, late].entries()) {
          yield* Effect.forkScoped(pool.use(`${user}:mcp-${i}`, () => Deferred.await(release)))
        }
      }
      yield* settle
      yield* Deferred.succeed(early, undefined)
      yield* settle
      yield* TestClock.adjust("29 minutes")
      yield* Deferred.succeed(late, undefined)
      yield* settle
      yield* TestClock.adjust("2 minutes")

      const response = yield* raw(server, { method: "POST", path: "/api/mcp/cleanup-connections", headers: bearer })
      assert.strictEqual(response.status, 200)
      assert.deepStrictEqual(JSON.parse(response.body), gatewayCleanup)
      assert.strictEqual((yield* pool.stats).size, 6)
    }).pipe(Effect.provide(captureLogs().layer))
  )
})
