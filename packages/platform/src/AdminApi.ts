/**
 * The admin API of the pools an application runs, as an `HttpApi` description:
 * a group that mounts into any application's `HttpApi`, or the standalone
 * {@link AdminApi}.
 *
 * | endpoint | answers |
 * |---|---|
 * | `GET /pools` | every registered pool: totals, per-key counts, items with their idle time, config in force |
 * | `GET /pools/:name` | one pool, or 404 `PoolNotFound` |
 * | `POST /pools/:name/cleanup` | expires idle items now: size before and after, how many were cleaned |
 * | `GET /health` | `healthy` / `degraded` (200) or `unhealthy` (503), with reasons and the limits in force |
 * | `GET /metrics` | the Effect metrics in the Prometheus text format |
 *
 * Every endpoint needs a bearer token (see `AdminAuth`); `/health` can be made
 * public. A malformed path parameter or body, whatever its shape, is answered
 * with 400 `HttpApiDecodeError`, naming what was wrong, and changes nothing; a
 * body over {@link maxBodyBytes} with 413 `PayloadTooLarge`.
 *
 * ```ts
 * import { HttpApi } from "@effect/platform"
 * import { AdminApi } from "@cistern/platform"
 *
 * // mount the group, under a prefix, into the application's own API
 * class AppApi extends HttpApi.make("app").add(UsersGroup).add(AdminApi.AdminGroup.prefix("/admin")) {}
 * ```
 *
 * @since 0.1.0
 */
import { CleanupReport, ConfigInForce, ItemDetails, PoolStats } from "@cistern/pool/PoolStats"
import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import * as Schema from "effect/Schema"
import * as PrometheusText from "./PrometheusText.js"

const noControlCharacters = /^\P{Cc}*$/u

/**
 * A pool's name in a path: 1 to 128 characters, no control characters.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolName = Schema.String.pipe(
  Schema.minLength(1, { message: () => "a pool name has at least 1 character" }),
  Schema.maxLength(128, { message: () => "a pool name has at most 128 characters" }),
  Schema.pattern(noControlCharacters, { message: () => "a pool name has no control characters" })
).annotations({ identifier: "PoolName", description: "The name a pool was made with" })

/**
 * The path of the endpoints about one pool.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolPath = Schema.Struct({ name: PoolName })

/**
 * One pool: its stats (totals, per-key counts, config in force) and its live
 * items with their state, age and idle time.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolView = Schema.Struct({
  name: Schema.String,
  stats: PoolStats,
  items: Schema.Array(ItemDetails)
}).annotations({ identifier: "PoolView" })

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolView extends Schema.Schema.Type<typeof PoolView> {}

/**
 * Every registered pool, in registration order.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolList = Schema.Struct({
  pools: Schema.Array(PoolView)
}).annotations({ identifier: "PoolList" })

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolList extends Schema.Schema.Type<typeof PoolList> {}

/**
 * The body of a cleanup request, which may be empty: an optional reason,
 * written to the log line of the cleanup.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CleanupRequest = Schema.Struct({
  reason: Schema.optionalWith(
    Schema.String.pipe(
      Schema.maxLength(200, { message: () => "a reason has at most 200 characters" }),
      Schema.pattern(noControlCharacters, { message: () => "a reason has no control characters" })
    ),
    { exact: true }
  )
}).annotations({ identifier: "CleanupRequest" })

/**
 * @since 0.1.0
 * @category models
 */
export interface CleanupRequest extends Schema.Schema.Type<typeof CleanupRequest> {}

/**
 * What a cleanup did: the pool's size before and after, how many idle items it
 * destroyed and keys it dropped, and the stats after it.
 *
 * @since 0.1.0
 * @category schemas
 */
export const CleanupResult = Schema.Struct({
  name: Schema.String,
  ...CleanupReport.fields,
  stats: PoolStats
}).annotations({ identifier: "CleanupResult" })

/**
 * @since 0.1.0
 * @category models
 */
export interface CleanupResult extends Schema.Schema.Type<typeof CleanupResult> {}

/**
 * How well the pools are doing. `degraded` still serves (200); `unhealthy`
 * asks a load balancer to look elsewhere (503).
 *
 * @since 0.1.0
 * @category schemas
 */
export const HealthStatus = Schema.Literal("healthy", "degraded", "unhealthy")

/**
 * @since 0.1.0
 * @category models
 */
export type HealthStatus = Schema.Schema.Type<typeof HealthStatus>

/**
 * Why a pool is not healthy:
 *
 * - `closed` (unhealthy): its scope is closing; it hands nothing out.
 * - `breaker-open`: keys with an open circuit breaker (`keys`: some of them);
 *   unhealthy when every key's is open, degraded otherwise.
 * - `checks-failing` (degraded): keys half-open or failing their health checks.
 * - `pool-at-limit` (degraded): `maxTotal` items exist.
 * - `keys-at-limit` (degraded): `maxKeys` keys are live.
 * - `key-at-limit` (degraded): keys at their `maxPerKey` with callers waiting (`keys`: some of them).
 * - `waiting` (degraded): callers are waiting for an item.
 * - `timeouts` (degraded): callers gave up after `acquireTimeout` since the previous check.
 *
 * @since 0.1.0
 * @category schemas
 */
export const HealthReason = Schema.Struct({
  kind: Schema.Literal(
    "closed",
    "breaker-open",
    "checks-failing",
    "pool-at-limit",
    "keys-at-limit",
    "key-at-limit",
    "waiting",
    "timeouts"
  ),
  status: Schema.Literal("degraded", "unhealthy"),
  message: Schema.String,
  keys: Schema.optional(Schema.Array(Schema.String))
}).annotations({ identifier: "HealthReason" })

/**
 * @since 0.1.0
 * @category models
 */
export interface HealthReason extends Schema.Schema.Type<typeof HealthReason> {}

/**
 * One pool's health, its occupancy and the limits in force.
 *
 * @since 0.1.0
 * @category schemas
 */
export const PoolHealth = Schema.Struct({
  name: Schema.String,
  status: HealthStatus,
  reasons: Schema.Array(HealthReason),
  occupancy: Schema.Struct({
    keys: Schema.Number,
    size: Schema.Number,
    idle: Schema.Number,
    inUse: Schema.Number,
    creating: Schema.Number,
    waiting: Schema.Number
  }),
  /** Acquire timeouts since the pool started, and since the previous check. */
  timeouts: Schema.Struct({ total: Schema.Number, sincePreviousCheck: Schema.Number }),
  limits: ConfigInForce
}).annotations({ identifier: "PoolHealth" })

/**
 * @since 0.1.0
 * @category models
 */
export interface PoolHealth extends Schema.Schema.Type<typeof PoolHealth> {}

const healthFields = {
  /** The messages of every pool's reasons, prefixed with the pool's name. */
  reasons: Schema.Array(Schema.String),
  pools: Schema.Array(PoolHealth)
}

/**
 * The health answer with status 200.
 *
 * @since 0.1.0
 * @category schemas
 */
export const HealthReport = Schema.Struct({
  status: Schema.Literal("healthy", "degraded"),
  ...healthFields
}).annotations({ identifier: "HealthReport" })

/**
 * The health answer with status 503.
 *
 * @since 0.1.0
 * @category schemas
 */
export const UnhealthyReport = Schema.Struct({
  status: Schema.Literal("unhealthy"),
  ...healthFields
}).annotations({ identifier: "UnhealthyReport" })

/**
 * Either health answer.
 *
 * @since 0.1.0
 * @category models
 */
export type Health = Schema.Schema.Type<typeof HealthReport> | Schema.Schema.Type<typeof UnhealthyReport>

/**
 * The `/metrics` body.
 *
 * @since 0.1.0
 * @category schemas
 */
export const MetricsText = HttpApiSchema.Text({ contentType: PrometheusText.contentType }).annotations({
  description: "Prometheus text exposition format 0.0.4"
})

/**
 * No pool of that name is registered (it never was, or its scope closed).
 *
 * @since 0.1.0
 * @category errors
 */
export class PoolNotFound extends Schema.TaggedError<PoolNotFound>("@cistern/platform/PoolNotFound")(
  "PoolNotFound",
  { name: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {
  override get message(): string {
    return `no pool named ${JSON.stringify(this.name)} is registered`
  }
}

/**
 * The request had no valid bearer token. Missing, empty, malformed and wrong
 * tokens all get this same answer, with `WWW-Authenticate: Bearer`.
 *
 * @since 0.1.0
 * @category errors
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>("@cistern/platform/Unauthorized")(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

/**
 * The one `Unauthorized` value every rejected request gets.
 *
 * @since 0.1.0
 * @category errors
 */
export const unauthorized: Unauthorized = new Unauthorized({
  message: "a valid bearer token is required (Authorization: Bearer <token>)"
})

/**
 * The most bytes an admin request body may have. The bodies the API reads
 * are a few hundred bytes; anything past this is refused with 413.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxBodyBytes = 8192

/**
 * The request body is larger than {@link maxBodyBytes}. A body announced
 * that large is refused before any of it is read, and the connection closed.
 *
 * @since 0.1.0
 * @category errors
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>("@cistern/platform/PayloadTooLarge")(
  "PayloadTooLarge",
  { limit: Schema.Number, message: Schema.String },
  HttpApiSchema.annotations({ status: 413 })
) {}

/**
 * Bearer authentication of the pool endpoints. Implemented by `AdminAuth`.
 *
 * @since 0.1.0
 * @category middleware
 */
export class Authorization extends HttpApiMiddleware.Tag<Authorization>()("@cistern/platform/AdminApi/Authorization", {
  failure: Unauthorized,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * Bearer authentication of `/health`, which `AdminAuth` can make public.
 *
 * @since 0.1.0
 * @category middleware
 */
export class HealthAuthorization extends HttpApiMiddleware.Tag<HealthAuthorization>()(
  "@cistern/platform/AdminApi/HealthAuthorization",
  {
    failure: Unauthorized,
    security: { bearer: HttpApiSecurity.bearer }
  }
) {}

/**
 * The admin endpoints, as a group named `cistern` that mounts into any
 * `HttpApi` (use `.prefix("/admin")` to move it).
 *
 * @since 0.1.0
 * @category groups
 */
export class AdminGroup extends HttpApiGroup.make("cistern")
  .add(
    HttpApiEndpoint.get("listPools", "/pools")
      .addSuccess(PoolList)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Every registered pool: stats, per-key counts, items, config in force")
  )
  .add(
    HttpApiEndpoint.get("getPool", "/pools/:name")
      .setPath(PoolPath)
      .addSuccess(PoolView)
      .addError(PoolNotFound)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "One pool")
  )
  .add(
    HttpApiEndpoint.post("cleanupPool", "/pools/:name/cleanup")
      .setPath(PoolPath)
      .setPayload(CleanupRequest)
      .addSuccess(CleanupResult)
      .addError(PoolNotFound)
      .addError(PayloadTooLarge)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Expire idle items now")
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(HealthReport)
      .addSuccess(UnhealthyReport, { status: 503 })
      .middleware(HealthAuthorization)
      .annotate(OpenApi.Summary, "healthy / degraded (200) or unhealthy (503), with reasons and limits")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(MetricsText)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Effect metrics in the Prometheus text format")
  )
  .annotate(OpenApi.Title, "Cistern pools")
  .annotate(OpenApi.Description, "Status, cleanup, health and metrics of the pools this service runs") {}

/**
 * The admin endpoints as an API of their own, for a dedicated admin server.
 *
 * @since 0.1.0
 * @category api
 */
export class AdminApi extends HttpApi.make("cistern-admin")
  .add(AdminGroup)
  .annotate(OpenApi.Title, "Cistern admin API")
  .annotate(OpenApi.Version, "0.1.0") {}
