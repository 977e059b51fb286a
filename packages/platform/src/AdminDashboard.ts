/**
 * A live dashboard of the pools, served by the admin API itself: one page
 * (`GET /dashboard`) with occupancy and acquire-wait charts, a searchable key
 * table with each key's health and circuit, recent events and the
 * configuration in force, fed by server-sent events.
 *
 * One sampler per {@link layer} reads every registered pool each `interval`
 * (default 1 second) while someone watches and each `idleInterval` (default
 * 10 seconds) while nobody does, keeps the charts' history and the recent events, and
 * encodes one snapshot, once, for every viewer. A viewer holds a queue of one
 * frame: one that reads slowly gets the latest snapshot, never a backlog, and
 * its stream (and fiber) ends when its connection closes.
 *
 * The page needs no build step and no outside network: its script, style
 * sheet and charting library (uPlot, from npm) are served by the admin API,
 * under a Content-Security-Policy that allows nothing else. It asks for the
 * admin token (or takes it from the URL fragment `#token=…`, which never
 * reaches the server), keeps it in `sessionStorage`, and sends it as a bearer
 * header, reading the event stream with `fetch`.
 *
 * The standalone server (`AdminHttp.layerServer`) includes it. To mount it
 * into an application's own API:
 *
 * ```ts
 * import { AdminApi, AdminAuth, AdminDashboard, AdminHttp } from "@cistern/platform"
 * import { HttpApi, HttpApiBuilder } from "@effect/platform"
 * import { Layer } from "effect"
 *
 * class AppApi extends HttpApi.make("app")
 *   .add(AdminApi.AdminGroup.prefix("/admin"))
 *   .add(AdminApi.DashboardGroup) {}
 *
 * const ApiLive = HttpApiBuilder.api(AppApi).pipe(
 *   Layer.provide(AdminHttp.layerGroup(AppApi)),
 *   Layer.provide(AdminDashboard.layerGroup(AppApi)),
 *   Layer.provide(AdminDashboard.layer()), // the sampler: needs the PoolRegistry
 *   Layer.provide(AdminAuth.layerConfig())
 * )
 * ```
 *
 * The page calls `/dashboard/events`, `/dashboard/snapshot` and
 * `/dashboard/keys` at the root, so the `DashboardGroup` is mounted without a
 * prefix.
 *
 * @since 0.1.0
 */
import type * as PoolRegistry from "@cistern/pool/PoolRegistry"
import type * as HttpApi from "@effect/platform/HttpApi"
import type * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type { Authorization, DashboardHistory, DashboardSnapshot, KeyPage, KeyQuery, PoolNotFound } from "./AdminApi.js"
import * as internal from "./internal/dashboard.js"
import * as http from "./internal/dashboardHttp.js"

/**
 * How the dashboard samples and what it keeps.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** How often the pools are sampled and a snapshot pushed while someone watches. Default 1 second. */
  readonly interval?: Duration.DurationInput | undefined
  /**
   * How often they are sampled while nobody watches (no stream open, no poll
   * for a minute), for the charts' history. A new viewer or poll gets a fresh
   * sample at once. Default 10 seconds (never shorter than `interval`).
   */
  readonly idleInterval?: Duration.DurationInput | undefined
  /** Keys per pool in each snapshot, those needing attention first; tenant groups are capped alike. Default 50. */
  readonly keysPerPool?: number | undefined
  /** Samples per pool the charts keep. Default 300 (5 minutes at 1 second). */
  readonly history?: number | undefined
  /** Events kept for the page. Default 100. */
  readonly events?: number | undefined
}

/**
 * What the sampler knows of one connected viewer: frames handed to its
 * connection, frames replaced by a newer one before it could take them, and
 * frames waiting (at most 1).
 *
 * @since 0.1.0
 * @category models
 */
export interface ViewerStats {
  readonly sent: number
  readonly dropped: number
  readonly pending: number
}

/**
 * The dashboard's sampler, as a service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The latest snapshot. */
  readonly latest: Effect.Effect<DashboardSnapshot>
  /** Every pool's chart samples and the events kept. */
  readonly history: Effect.Effect<DashboardHistory>
  /**
   * One viewer's server-sent events, as bytes: `history` once, then the latest
   * `snapshot` whenever there is a newer one than the viewer has taken.
   */
  readonly events: Stream.Stream<Uint8Array>
  /** A page of one pool's keys from the latest sample. */
  readonly keys: (query: KeyQuery) => Effect.Effect<KeyPage, PoolNotFound>
  /** The viewers connected now. */
  readonly viewers: Effect.Effect<ReadonlyArray<ViewerStats>>
}

/**
 * The dashboard's sampler, as a service (provided by {@link layer}).
 *
 * @since 0.1.0
 * @category tags
 */
export class Dashboard extends Context.Tag("@cistern/platform/AdminDashboard/Dashboard")<Dashboard, Service>() {}

/**
 * Makes the sampler in the current scope: it samples every registered pool
 * each `interval` until the scope closes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Service, never, PoolRegistry.PoolRegistry | Scope.Scope> =
  internal.make

/**
 * Provides the sampler.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<Dashboard, never, PoolRegistry.PoolRegistry> =>
  Layer.scoped(Dashboard, internal.make(options))

/**
 * The handlers of the `cistern-dashboard` group, for any `HttpApi` that
 * contains `AdminApi.DashboardGroup`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerGroup = <ApiId extends string, Groups extends HttpApiGroup.HttpApiGroup.Any, E, R>(
  api: HttpApi.HttpApi<ApiId, Groups, E, R> &
    ("cistern-dashboard" extends HttpApiGroup.HttpApiGroup.Name<Groups>
      ? unknown
      : "the API must contain AdminApi.DashboardGroup")
): Layer.Layer<HttpApiGroup.ApiGroup<ApiId, "cistern-dashboard">, never, Dashboard | Authorization> =>
  http.layerGroup(api)

/**
 * The page's Content-Security-Policy: scripts, styles and connections to its
 * own origin only; no inline script, no outside host, no framing.
 *
 * @since 0.1.0
 * @category constants
 */
export const contentSecurityPolicy: string =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
