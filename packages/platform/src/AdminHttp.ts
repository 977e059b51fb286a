/**
 * Serves the admin API from the `PoolRegistry`: handlers for the `cistern`
 * group (mounted into an application's own `HttpApi` or served on their own),
 * an access log that never writes headers or query strings, and a mapping to
 * the `pool-status` / `cleanup-connections` JSON of a multi-user MCP gateway,
 * for one that keeps those endpoints while its pool moves to Cistern.
 *
 * A dedicated admin server:
 *
 * ```ts
 * import { PoolRegistry } from "@cistern/pool"
 * import { AdminAuth, AdminHttp } from "@cistern/platform"
 * import { NodeHttpServer, NodeRuntime } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { createServer } from "node:http"
 *
 * const AdminLive = AdminHttp.layerServer().pipe(
 *   Layer.provide(AdminAuth.layerConfig()), // CISTERN_ADMIN_TOKEN
 *   Layer.provide(NodeHttpServer.layer(createServer, { host: "127.0.0.1", port: 8787 }))
 * )
 * // provide the same PoolRegistry.layer to the pools and to AdminLive
 * ```
 *
 * Mounted into an existing API (see the package README):
 *
 * ```ts
 * import { AdminApi, AdminAuth, AdminHttp } from "@cistern/platform"
 * import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
 * import { Effect, Layer, Schema } from "effect"
 *
 * // the application's own endpoints
 * class UsersGroup extends HttpApiGroup.make("users").add(HttpApiEndpoint.get("me", "/me").addSuccess(Schema.String)) {}
 *
 * class AppApi extends HttpApi.make("app").add(UsersGroup).add(AdminApi.AdminGroup.prefix("/admin")) {}
 *
 * const UsersLive = HttpApiBuilder.group(AppApi, "users", (handlers) => handlers.handle("me", () => Effect.succeed("ada")))
 *
 * const ApiLive = HttpApiBuilder.api(AppApi).pipe(
 *   Layer.provide(UsersLive),
 *   Layer.provide(AdminHttp.layerGroup(AppApi)),
 *   Layer.provide(AdminAuth.layerConfig())
 * )
 * ```
 *
 * @since 0.1.0
 */
import type * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import type * as HttpApp from "@effect/platform/HttpApp"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import type * as HttpServer from "@effect/platform/HttpServer"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { Authorization, HealthAuthorization } from "./AdminApi.js"
import type * as AdminDashboard from "./AdminDashboard.js"
import * as internal from "./internal/adminHttp.js"
import * as status from "./internal/poolStatus.js"

const ConnectionCountsSchema = Schema.Struct({
  totalConnections: Schema.Number,
  userConnectionCounts: Schema.Record({ key: Schema.String, value: Schema.Number })
})

const ConnectionDetailSchema = Schema.Struct({
  key: Schema.String,
  name: Schema.String,
  userId: Schema.String,
  lastUsed: Schema.String,
  createTime: Schema.String,
  idleMinutes: Schema.Number
})

/**
 * The handlers of the `cistern` group, for any `HttpApi` that contains
 * `AdminApi.AdminGroup` (prefixed or not). Needs the `PoolRegistry` the pools
 * register in and the two auth middlewares (`AdminAuth.layer`).
 *
 * `/health` remembers each pool's acquire timeouts between checks, per layer.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerGroup: <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups, E, R> &
    ("cistern" extends HttpApiGroup.HttpApiGroup.Name<Groups> ? unknown : "the API must contain AdminApi.AdminGroup")
) => Layer.Layer<
  HttpApiGroup.ApiGroup<ApiId, "cistern">,
  never,
  PoolRegistry.PoolRegistry | Authorization | HealthAuthorization
> = internal.layerGroup

/**
 * The handlers of the standalone `AdminApi`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<
  HttpApiGroup.ApiGroup<"cistern-admin", "cistern">,
  never,
  PoolRegistry.PoolRegistry | Authorization | HealthAuthorization
> = internal.layer

/**
 * Options of the standalone server ({@link layerServer}): where its OpenAPI
 * document and docs page are served, or that they are not, and how its
 * dashboard samples the pools. Every field has a default.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerOptions {
  /** Where the OpenAPI document is served (`false`: not at all). Default `/openapi.json`. */
  readonly openApiPath?: `/${string}` | false | undefined
  /** Where the Swagger UI page is served, self-contained (`false`: not at all). Default `/docs`. */
  readonly docsPath?: `/${string}` | false | undefined
  /** How the dashboard (`/dashboard`) samples the pools and what it keeps. */
  readonly dashboard?: AdminDashboard.Options | undefined
}

/**
 * Serves the standalone `AdminApi` on the provided `HttpServer`, with its
 * OpenAPI document and docs page, the live dashboard (`/dashboard`, whose
 * sampler it also provides as `AdminDashboard.Dashboard`), `/livez`, an
 * access log ({@link logger}), and query strings dropped before routing (no
 * admin endpoint reads one).
 *
 * The OpenAPI document and the docs page describe the API only, never pool
 * data, and are served without a token so a browser can open them; switch them
 * off with `openApiPath: false` / `docsPath: false`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServer: (
  options?: ServerOptions
) => Layer.Layer<
  AdminDashboard.Dashboard,
  never,
  | HttpServer.HttpServer
  | HttpRouter.HttpRouter.DefaultServices
  | PoolRegistry.PoolRegistry
  | Authorization
  | HealthAuthorization
> = internal.layerServer

/**
 * An access log: one `Effect.log` per response with `http.method`,
 * `http.path` (the URL without its query string) and `http.status`, and the
 * cause of a failure. It never writes a header, so no `Authorization`, and no
 * query string, so no token someone put there.
 *
 * Use it instead of `HttpMiddleware.logger`, which writes the full URL.
 *
 * @since 0.1.0
 * @category middleware
 */
export const logger: <E, R>(app: HttpApp.Default<E, R>) => HttpApp.Default<E, R> = internal.logger

/**
 * Drops the query string of every request before routing, so no error message
 * or log line further in can repeat it.
 *
 * @since 0.1.0
 * @category middleware
 */
export const withoutQuery: <E, R>(app: HttpApp.Default<E, R>) => HttpApp.Default<E, R> = internal.withoutQuery

/**
 * A pool key split the way a multi-user MCP gateway reports it: the user who
 * owns the connection and the name of the MCP server it reaches.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyParts {
  readonly userId: string
  readonly name: string
}

/**
 * Splits a key, as `describeKey` shows it, at its first `:`, the gateway's
 * `userId:mcpName` form (`"user1:github-mcp"` is user `user1`, server
 * `github-mcp`); a key without one is both the user and the name.
 *
 * @since 0.1.0
 * @category mapping
 */
export const splitAtColon: (key: string) => KeyParts = status.splitAtColon

/**
 * The schema of the `config` block of the `pool-status` body: the per-user
 * and total connection limits, the idle timeout (`connectionTimeout`) and the
 * cleanup interval, in milliseconds, `null` where unbounded.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolStatusConfig = Schema.Struct({
  maxConnectionsPerUser: Schema.NullOr(Schema.Number),
  maxTotalConnections: Schema.NullOr(Schema.Number),
  connectionTimeout: Schema.NullOr(Schema.Number),
  cleanupInterval: Schema.NullOr(Schema.Number)
})

/**
 * The `config` block of the `pool-status` body: the limits and intervals the
 * pool runs with, in milliseconds, `null` where unbounded.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolStatusConfig extends Schema.Schema.Type<typeof PoolStatusConfig> {}

/**
 * How many connections a pool holds, in all and per user, as the
 * `cleanup-connections` body reports them before and after a cleanup.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionCounts {
  readonly totalConnections: number
  readonly userConnectionCounts: { readonly [userId: string]: number }
}

/**
 * One live connection in the `pool-status` body: its key, the user and server
 * name the key splits into, when it was last used and created (ISO strings),
 * and how many whole minutes it has been idle.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionDetail {
  readonly key: string
  readonly name: string
  readonly userId: string
  readonly lastUsed: string
  readonly createTime: string
  readonly idleMinutes: number
}

/**
 * How {@link poolStatusResponse} and {@link cleanupConnectionsResponse} read
 * a pool: how a key splits into user and server name, and which `config`
 * values to report instead of the pool's own (a per-user limit that is not
 * the per-key one, for instance).
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolStatusOptions {
  /** Splits a key into user and server name. Default {@link splitAtColon}. */
  readonly splitKey?: ((key: string) => KeyParts) | undefined
  /**
   * Replaces fields of the `config` block. By default it is the pool's config
   * in force: `maxPerKey`, `maxTotal`, `idleTimeout` and `cleanupInterval` in
   * milliseconds (`null` where unbounded).
   */
  readonly config?: Partial<PoolStatusConfig> | undefined
}

/**
 * The schema of a multi-user MCP gateway's `GET /api/mcp/pool-status` body,
 * exactly as its clients read it; add it to an endpoint of the application's
 * own API with `addSuccess`:
 *
 * ```json
 * { "success": true, "data": {
 *   "totalConnections": 5,
 *   "userConnectionCounts": { "user1": 2, "user2": 3 },
 *   "connectionDetails": [{ "key": "user1:github-mcp", "name": "github-mcp", "userId": "user1",
 *     "lastUsed": "2024-01-01T10:00:00.000Z", "createTime": "2024-01-01T09:00:00.000Z", "idleMinutes": 30 }],
 *   "config": { "maxConnectionsPerUser": 10, "maxTotalConnections": 100,
 *     "connectionTimeout": 1800000, "cleanupInterval": 300000 } } }
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolStatusResponse: Schema.Schema<PoolStatusResponse> = Schema.Struct({
  success: Schema.Literal(true),
  data: Schema.Struct({
    totalConnections: Schema.Number,
    userConnectionCounts: Schema.Record({ key: Schema.String, value: Schema.Number }),
    connectionDetails: Schema.Array(ConnectionDetailSchema),
    config: PoolStatusConfig
  })
}).annotations({ identifier: "PoolStatusResponse" })

/**
 * The `pool-status` body: every live connection with its user, server name,
 * times and idle minutes, the counts per user, and the config in force.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolStatusResponse {
  readonly success: true
  readonly data: {
    readonly totalConnections: number
    readonly userConnectionCounts: { readonly [userId: string]: number }
    readonly connectionDetails: ReadonlyArray<ConnectionDetail>
    readonly config: PoolStatusConfig
  }
}

/**
 * Maps a registered pool to the `pool-status` body of a multi-user MCP
 * gateway. Connections are the pool's live items (idle and leased);
 * `idleMinutes` is whole minutes idle (0 while leased); times are ISO strings
 * of the pool's clock.
 *
 * ```ts
 * import { PoolRegistry } from "@cistern/pool"
 * import { AdminHttp } from "@cistern/platform"
 * import { HttpApi, HttpApiBuilder, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
 * import { Effect, Option } from "effect"
 *
 * // an endpoint of the application's own API, answering with the gateway's shape
 * class McpGroup extends HttpApiGroup.make("mcp").add(
 *   HttpApiEndpoint.get("poolStatus", "/api/mcp/pool-status").addSuccess(AdminHttp.PoolStatusResponse)
 * ) {}
 * class AppApi extends HttpApi.make("app").add(McpGroup) {}
 *
 * // its handler, reading the pool named "mcp" from the registry
 * const McpLive = HttpApiBuilder.group(AppApi, "mcp", (handlers) =>
 *   Effect.map(PoolRegistry.PoolRegistry, (registry) =>
 *     handlers.handle("poolStatus", () =>
 *       Effect.flatMap(
 *         registry.get("mcp"),
 *         Option.match({
 *           onNone: () => Effect.die("the mcp pool is not running"),
 *           onSome: (entry) => AdminHttp.poolStatusResponse(entry)
 *         })
 *       )
 *     )
 *   )
 * )
 * ```
 *
 * @since 0.1.0
 * @category mapping
 */
export const poolStatusResponse: (
  entry: PoolRegistry.Entry,
  options?: PoolStatusOptions
) => Effect.Effect<PoolStatusResponse> = status.poolStatusResponse

/**
 * The schema of a multi-user MCP gateway's `POST /api/mcp/cleanup-connections`
 * body, exactly as its clients read it:
 *
 * ```json
 * { "success": true, "data": { "message": "Cleanup completed",
 *   "before": { "totalConnections": 10, "userConnectionCounts": { "user1": 5, "user2": 5 } },
 *   "after": { "totalConnections": 6, "userConnectionCounts": { "user1": 3, "user2": 3 } },
 *   "cleanedConnections": 4 } }
 * ```
 *
 * @since 0.1.0
 * @category schemas
 */
export const CleanupConnectionsResponse: Schema.Schema<CleanupConnectionsResponse> = Schema.Struct({
  success: Schema.Literal(true),
  data: Schema.Struct({
    message: Schema.String,
    before: ConnectionCountsSchema,
    after: ConnectionCountsSchema,
    cleanedConnections: Schema.Number
  })
}).annotations({ identifier: "CleanupConnectionsResponse" })

/**
 * The `cleanup-connections` body: the connections per user before and after
 * a cleanup, and how many it closed.
 *
 * @since 0.1.0
 * @category models
 */
export interface CleanupConnectionsResponse {
  readonly success: true
  readonly data: {
    readonly message: string
    readonly before: ConnectionCounts
    readonly after: ConnectionCounts
    readonly cleanedConnections: number
  }
}

/**
 * Runs a pool's cleanup (idle items past their timeout are closed now) and
 * maps it to the `cleanup-connections` body of a multi-user MCP gateway:
 * connections per user before and after, and how many were cleaned.
 *
 * @since 0.1.0
 * @category mapping
 */
export const cleanupConnectionsResponse: (
  entry: PoolRegistry.Entry,
  options?: Pick<PoolStatusOptions, "splitKey">
) => Effect.Effect<CleanupConnectionsResponse> = status.cleanupConnectionsResponse
