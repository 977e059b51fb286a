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
 * | `GET /budgets` | every shared budget this process belongs to: limit, used, held here, waiters, state, counters |
 * | `GET /health` | `healthy` / `degraded` (200) or `unhealthy` (503), with reasons and the limits in force |
 * | `GET /metrics` | the Effect metrics in the Prometheus text format |
 * | `GET /livez` | 200 while the process serves: no details, no token |
 *
 * and the live dashboard ({@link DashboardGroup}): `GET /dashboard`, fed by
 * the server-sent events of `GET /dashboard/events`.
 *
 * Every endpoint needs a bearer token (see `AdminAuth`); `/health` can be made
 * public. A malformed path parameter or body, whatever its shape, is answered
 * with 400 `HttpApiDecodeError`, naming what was wrong, and changes nothing; a
 * body over {@link maxBodyBytes} with 413 `PayloadTooLarge`.
 *
 * ```ts
 * import { HttpApi, HttpApiEndpoint, HttpApiGroup } from "@effect/platform"
 * import { AdminApi } from "@cistern/platform"
 * import { Schema } from "effect"
 *
 * // the application's own endpoints
 * class UsersGroup extends HttpApiGroup.make("users").add(HttpApiEndpoint.get("me", "/me").addSuccess(Schema.String)) {}
 *
 * // mount the group, under a prefix, into the application's own API
 * class AppApi extends HttpApi.make("app").add(UsersGroup).add(AdminApi.AdminGroup.prefix("/admin")) {}
 * ```
 *
 * @since 0.1.0
 */
import { BudgetStats } from "@cistern/pool/PoolRegistry"
import { CleanupReport, ConfigInForce, GroupStats, ItemDetails, PoolStats } from "@cistern/pool/PoolStats"
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
 * One pool: its stats (totals, per-key counts, config in force; per-group
 * counts and limits in `stats.perGroup` when the pool has tenant groups) and
 * its live items with their state, age and idle time.
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
 * A pool as `GET /pools/:name` answers it, decoded: what the typed client's
 * `getPool` returns, and what to read a pool's stats and items from in a test.
 *
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
 * The body of `GET /pools`, decoded: every registered pool as a {@link PoolView}.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolList extends Schema.Schema.Type<typeof PoolList> {}

/**
 * Every shared budget this process belongs to (a connection budget kept in
 * Redis, say), in registration order: one entry per instance of a budget this
 * process runs, each with its limit, what is used across all instances, what
 * this instance holds and waits for, its state and its counters.
 *
 * @since 0.1.0
 * @category schemas
 */
export const BudgetList = Schema.Struct({
  budgets: Schema.Array(BudgetStats)
}).annotations({ identifier: "BudgetList" })

/**
 * The body of `GET /budgets`, decoded: each budget's figures as this
 * instance sees them.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetList extends Schema.Schema.Type<typeof BudgetList> {}

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
 * The body a client sends to `POST /pools/:name/cleanup`: at most a `reason`,
 * which the server logs with the cleanup so an operator can tell why it ran.
 *
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
 * What `POST /pools/:name/cleanup` answers, decoded: sizes before and after,
 * what was cleaned and dropped, and the pool's stats once it is done.
 *
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
 * `healthy`, `degraded` or `unhealthy`: the verdict on one pool and on the whole
 * process; only `unhealthy` turns `/health` into a 503.
 *
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
 * One reason a pool is not healthy, decoded: its `kind` (to switch on in an
 * alert rule), its `status`, a message for people, and some of the keys
 * concerned.
 *
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
 * One pool's part of the `/health` answer, decoded: its status and reasons,
 * its occupancy, its acquire timeouts and the limits in force.
 *
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
    HttpApiEndpoint.get("listBudgets", "/budgets")
      .addSuccess(BudgetList)
      .middleware(Authorization)
      .annotate(
        OpenApi.Summary,
        "Every shared budget this process belongs to: limit, used, held here, waiters, state, counters"
      )
  )
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(HealthReport)
      .addSuccess(UnhealthyReport, { status: 503 })
      .middleware(HealthAuthorization)
      .annotate(OpenApi.Summary, "healthy / degraded (200) or unhealthy (503), with reasons and limits")
  )
  .add(
    HttpApiEndpoint.get("livez", "/livez")
      .addSuccess(HttpApiSchema.Text())
      .annotate(OpenApi.Summary, "Liveness for orchestrators: 200 while the process serves, no details, no token")
  )
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(MetricsText)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "Effect metrics in the Prometheus text format")
  )
  .annotate(OpenApi.Title, "Cistern pools")
  .annotate(
    OpenApi.Description,
    "Status, cleanup, health and metrics of the pools this service runs, and the shared budgets it belongs to"
  ) {}

/**
 * One key as the dashboard shows it: its counts, health and circuit.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardKey = Schema.Struct({
  key: Schema.String,
  max: Schema.Number,
  size: Schema.Number,
  idle: Schema.Number,
  inUse: Schema.Number,
  creating: Schema.Number,
  waiting: Schema.Number,
  failures: Schema.Number,
  timeouts: Schema.Number,
  health: Schema.Literal("healthy", "degraded", "open"),
  breaker: Schema.Literal("closed", "open", "half-open"),
  consecutiveFailures: Schema.Number,
  retryAt: Schema.NullOr(Schema.Number)
}).annotations({ identifier: "DashboardKey" })

/**
 * One row of the dashboard's key table, decoded: a key's counts, health and
 * circuit state, and when an open circuit lets a call through again.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardKey extends Schema.Schema.Type<typeof DashboardKey> {}

/**
 * One sample of a pool for the charts: occupancy at `at`, and what happened
 * since the previous sample (acquire-wait quantiles of the callers that
 * waited or created, timeouts and failed creations).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardPoint = Schema.Struct({
  at: Schema.Number,
  idle: Schema.Number,
  inUse: Schema.Number,
  creating: Schema.Number,
  waiting: Schema.Number,
  /** Callers that waited or created since the previous sample. */
  waited: Schema.Number,
  /** Upper bounds of the histogram buckets holding the median and 99th percentile; null when nobody waited. */
  waitP50Millis: Schema.NullOr(Schema.Number),
  waitP99Millis: Schema.NullOr(Schema.Number),
  timeouts: Schema.Number,
  failures: Schema.Number
}).annotations({ identifier: "DashboardPoint" })

/**
 * One chart sample of a pool, decoded: occupancy, acquire-wait quantiles,
 * timeouts and failed creations since the previous sample.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardPoint extends Schema.Schema.Type<typeof DashboardPoint> {}

/**
 * Something that happened to a pool: a circuit transition, a failed health
 * check, failed creations, acquire timeouts, evictions, a pool registered or
 * gone. `id` grows by one per event.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardEvent = Schema.Struct({
  id: Schema.Number,
  at: Schema.Number,
  pool: Schema.String,
  kind: Schema.Literal(
    "circuit",
    "check-failed",
    "creation-failed",
    "timeout",
    "eviction",
    "pool-added",
    "pool-removed"
  ),
  key: Schema.NullOr(Schema.String),
  message: Schema.String
}).annotations({ identifier: "DashboardEvent" })

/**
 * One entry of the dashboard's recent events, decoded; `id` orders them and
 * lets a client tell which it has already shown.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardEvent extends Schema.Schema.Type<typeof DashboardEvent> {}

/**
 * One pool in a dashboard snapshot. `keys` holds at most the dashboard's
 * `keysPerPool` keys, those that need attention first (open circuits,
 * half-open, degraded, then most waiting, in use, failing); `keysTotal` says
 * how many there are, and `POST /dashboard/keys` pages through all of them.
 * A pool given tenant groups also has `groups`: at most `keysPerPool` of
 * them, the busiest first (most items leased or being created, then most
 * items), with `groupsTotal` saying how many there are; a pool without
 * groups has neither field.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardPool = Schema.Struct({
  name: Schema.String,
  closed: Schema.Boolean,
  status: HealthStatus,
  reasons: Schema.Array(Schema.String),
  totals: Schema.Struct({
    keys: Schema.Number,
    size: Schema.Number,
    idle: Schema.Number,
    inUse: Schema.Number,
    creating: Schema.Number,
    waiting: Schema.Number,
    created: Schema.Number,
    destroyed: Schema.Number,
    timeouts: Schema.Number,
    failures: Schema.Number
  }),
  circuits: Schema.Struct({ open: Schema.Number, halfOpen: Schema.Number }),
  point: DashboardPoint,
  config: ConfigInForce,
  keysTotal: Schema.Number,
  keys: Schema.Array(DashboardKey),
  groupsTotal: Schema.optional(Schema.Number),
  groups: Schema.optional(Schema.Array(GroupStats))
}).annotations({ identifier: "DashboardPool" })

/**
 * One pool in a dashboard snapshot, decoded: status and reasons, totals,
 * circuits, its latest chart sample, config, the keys needing attention and,
 * in a pool with tenant groups, the busiest groups.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardPool extends Schema.Schema.Type<typeof DashboardPool> {}

/**
 * What the dashboard pushes every interval: every registered pool, every
 * shared budget this process belongs to (as `GET /budgets` shows them), and
 * the 30 most recent events (newest last).
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardSnapshot = Schema.Struct({
  at: Schema.Number,
  intervalMillis: Schema.Number,
  pools: Schema.Array(DashboardPool),
  budgets: Schema.Array(BudgetStats),
  events: Schema.Array(DashboardEvent)
}).annotations({ identifier: "DashboardSnapshot" })

/**
 * What the dashboard's event stream and `GET /dashboard/snapshot` deliver,
 * decoded: every pool's current state, every budget's figures and the latest
 * events.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardSnapshot extends Schema.Schema.Type<typeof DashboardSnapshot> {}

/**
 * The samples each pool's charts start from: the event stream sends it once,
 * first.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardHistory = Schema.Struct({
  pools: Schema.Array(Schema.Struct({ name: Schema.String, points: Schema.Array(DashboardPoint) })),
  /** Every event the dashboard keeps (its `events` option), newest last. */
  events: Schema.Array(DashboardEvent)
}).annotations({ identifier: "DashboardHistory" })

/**
 * The first frame of the dashboard's event stream, decoded: each pool's chart
 * samples so far and the events kept.
 *
 * @since 0.1.0
 * @category models
 */
export interface DashboardHistory extends Schema.Schema.Type<typeof DashboardHistory> {}

/**
 * How the key table is ordered. `attention`: open circuits, half-open,
 * degraded, then most waiting, in use and failing.
 *
 * @since 0.1.0
 * @category schemas
 */
export const KeySort = Schema.Literal("attention", "inUse", "waiting", "failures", "timeouts", "key")

/**
 * The orders the dashboard's key table can be sorted in (`sort` of a
 * {@link KeyQuery}); `attention` puts the keys in trouble first.
 *
 * @since 0.1.0
 * @category models
 */
export type KeySort = Schema.Schema.Type<typeof KeySort>

/**
 * A page of one pool's keys: those whose name contains `search` (any case),
 * in `sort` order, `limit` (1 to 100, default 50) from `offset`.
 *
 * @since 0.1.0
 * @category schemas
 */
export const KeyQuery = Schema.Struct({
  pool: PoolName,
  search: Schema.optionalWith(
    Schema.String.pipe(Schema.maxLength(128, { message: () => "a search has at most 128 characters" })),
    { exact: true }
  ),
  sort: Schema.optionalWith(KeySort, { exact: true }),
  offset: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 1_000_000)), { exact: true }),
  limit: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { exact: true })
}).annotations({ identifier: "KeyQuery" })

/**
 * The body of `POST /dashboard/keys`: which pool, an optional search, sort
 * order, offset and page size.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyQuery extends Schema.Schema.Type<typeof KeyQuery> {}

/**
 * A page of keys from the dashboard's latest sample (`at`).
 *
 * @since 0.1.0
 * @category schemas
 */
export const KeyPage = Schema.Struct({
  pool: Schema.String,
  at: Schema.Number,
  keysTotal: Schema.Number,
  matched: Schema.Number,
  offset: Schema.Number,
  rows: Schema.Array(DashboardKey)
}).annotations({ identifier: "KeyPage" })

/**
 * The answer to `POST /dashboard/keys`, decoded: how many keys the pool has and
 * match the search, and one page of their rows.
 *
 * @since 0.1.0
 * @category models
 */
export interface KeyPage extends Schema.Schema.Type<typeof KeyPage> {}

/**
 * The files the dashboard page loads, all served by the admin API itself.
 *
 * @since 0.1.0
 * @category schemas
 */
export const DashboardAsset = Schema.Literal("app.js", "app.css", "uplot.js", "uplot.css")

/**
 * The live dashboard of the pools, as a group named `cistern-dashboard`:
 *
 * | endpoint | answers |
 * |---|---|
 * | `GET /dashboard` | the page (no token: it holds no data, and asks for the token) |
 * | `GET /dashboard/assets/:file` | its script, style sheet and charting library |
 * | `GET /dashboard/events` | server-sent events: the history once, then a snapshot every interval (token) |
 * | `GET /dashboard/snapshot` | the latest snapshot, for polling when the stream drops (token) |
 * | `POST /dashboard/keys` | a page of one pool's keys, searched and sorted (token) |
 *
 * @since 0.1.0
 * @category groups
 */
export class DashboardGroup extends HttpApiGroup.make("cistern-dashboard")
  .add(
    HttpApiEndpoint.get("page", "/dashboard")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/html" }))
      .annotate(OpenApi.Exclude, true)
  )
  .add(
    HttpApiEndpoint.get("asset", "/dashboard/assets/:file")
      .setPath(Schema.Struct({ file: DashboardAsset }))
      .addSuccess(HttpApiSchema.Text())
      .annotate(OpenApi.Exclude, true)
  )
  .add(
    HttpApiEndpoint.get("events", "/dashboard/events")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/event-stream" }))
      .middleware(Authorization)
      .annotate(
        OpenApi.Summary,
        "Server-sent events: `history` once, then a `snapshot` every interval (a slow reader gets the latest)"
      )
  )
  .add(
    HttpApiEndpoint.get("snapshot", "/dashboard/snapshot")
      .addSuccess(DashboardSnapshot)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "The latest dashboard snapshot")
  )
  .add(
    HttpApiEndpoint.post("keys", "/dashboard/keys")
      .setPayload(KeyQuery)
      .addSuccess(KeyPage)
      .addError(PoolNotFound)
      .addError(PayloadTooLarge)
      .middleware(Authorization)
      .annotate(OpenApi.Summary, "A page of one pool's keys, searched and sorted")
  )
  .annotate(OpenApi.Title, "Cistern dashboard")
  .annotate(OpenApi.Description, "The live dashboard of the pools and its data") {}

/**
 * The admin endpoints as an API of their own, for a dedicated admin server.
 *
 * @since 0.1.0
 * @category api
 */
export class AdminApi extends HttpApi.make("cistern-admin")
  .add(AdminGroup)
  .add(DashboardGroup)
  .annotate(OpenApi.Title, "Cistern admin API")
  .annotate(OpenApi.Version, "0.1.0") {}
