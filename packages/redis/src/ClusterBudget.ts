/**
 * A connection budget shared by every instance of a service through Redis:
 * at most `total` connections to an upstream across all instances, at most
 * `perTenant` for one tenant, and nothing leaked when an instance dies.
 *
 * A permit is taken before a connection is created and given back when the
 * connection is destroyed: {@link gate} is a pool's creation gate, so leases
 * of existing connections never touch Redis, and a full budget first makes
 * room by closing one of the pool's own idle connections of another key.
 * {@link govern} keeps the pool within what the budget allows: it retires
 * the pool's connections when this instance's lease is lost, and closes idle
 * ones above its fair share while other instances wait. When Redis cannot be
 * asked, the `mode` decides between failing closed, a local share, and no
 * limit, and what was granted meanwhile is counted in Redis once it answers.
 * Made while a `PoolRegistry` is provided, a budget lists itself there, so an
 * admin API shows it next to the pools.
 *
 * ```ts
 * import { KeyedPool } from "@cistern/pool"
 * import { ClusterBudget, RedisClient } from "@cistern/redis"
 * import { Effect, Redacted } from "effect"
 *
 * declare const connect: (upstream: string) => Effect.Effect<{ readonly upstream: string }, Error, never>
 *
 * const program = Effect.gen(function* () {
 *   // at most 100 connections to the upstreams across all instances, 10 per user
 *   const budget = yield* ClusterBudget.make({ name: "upstream", total: 100, perTenant: 10 })
 *   const pool = yield* KeyedPool.make({
 *     acquire: (key: { readonly user: string; readonly upstream: string }) => connect(key.upstream),
 *     keyId: (key) => `${key.user}|${key.upstream}`,
 *     group: (key) => key.user, // the budget's tenant
 *     // a permit before each creation, given back when the connection is destroyed
 *     gate: ClusterBudget.gate(budget)
 *   })
 *   // retire on a lost lease, close idle connections above the fair share
 *   yield* ClusterBudget.govern(budget, pool)
 *   yield* Effect.scoped(pool.get({ user: "ada", upstream: "search" }))
 * }).pipe(Effect.scoped, Effect.provide(RedisClient.layer({ url: Redacted.make("redis://127.0.0.1:6379") })))
 * ```
 *
 * @since 0.1.0
 */
import type { GateContext } from "@cistern/pool/KeyedPool"
import * as PoolConfig from "@cistern/pool/PoolConfig"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Data from "effect/Data"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import * as internal from "./internal/budget.js"
import * as budgetMetrics from "./internal/budgetMetrics.js"
import * as budgetPool from "./internal/budgetPool.js"
import type * as RedisClient from "./RedisClient.js"

/**
 * What a budget does when Redis cannot be asked (no reply within the
 * client's command timeout, or no connection):
 * - `"fail-closed"` (the default): permits already held are kept, none is
 *   granted: `permit` fails with `BudgetUnavailable`;
 * - `"local-share"`: this instance grants permits on its own while it holds
 *   fewer than its share (`localShare`, by default the total divided by the
 *   instances Redis last reported, rounded up) and the tenant fewer than its
 *   share (`localTenantShare`);
 * - `"unlimited"`: every permit is granted; only the pool's own limits apply.
 *   A lost lease does not retire connections either: their permits are
 *   counted again like those granted without Redis.
 *
 * Permits granted without Redis are counted (`Stats.failOpen`,
 * `cistern_budget_fail_open_total{mode}`) and re-asserted in Redis as soon as
 * it answers again, so the shared count catches up with them.
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = "fail-closed" | "local-share" | "unlimited"

/**
 * How a budget is set up. All instances of a service should use the same
 * `name`, `total` and `perTenant`: each instance checks its own figures
 * against the shared count.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The budget's name: instances with the same name (and `prefix`) share it. */
  readonly name: string
  /** At most this many permits across all instances. */
  readonly total: number
  /** At most this many permits for one tenant across all instances: a number, or one per tenant. Default `total`. */
  readonly perTenant?: number | ((tenant: string) => number) | undefined
  /** How long an instance's permits outlive its last renewal: a dead instance's permits come back after it. Default 15 seconds. */
  readonly leaseTime?: Duration.DurationInput | undefined
  /** How often the instance renews its lease. Default a third of `leaseTime`. */
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /** Longest wait for a permit (queueing included) before `BudgetExhausted`. Default 10 seconds. */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** First and longest delay of the jittered retry while waiting (a release notification wakes waiters sooner). Default 50 ms and 1 second. */
  readonly retryDelay?: { readonly min?: Duration.DurationInput; readonly max?: Duration.DurationInput } | undefined
  /** The key prefix, inside the hash tag: keys are `{<prefix><name>}:…`. Must not contain braces. Default `"cistern:budget:"`. */
  readonly prefix?: string | undefined
  /** This instance's id in the budget (default: host, process id and a random suffix). Must not contain `|`. */
  readonly instanceId?: string | undefined
  /** What to do when Redis cannot be asked (see {@link Mode}). Default `"fail-closed"`. */
  readonly mode?: Mode | undefined
  /**
   * In `"local-share"` mode, at most this many permits held by this instance while Redis cannot be asked.
   * Default `ceil(total ÷ instances)`, the instances as of the last answer from Redis; before any answer,
   * nothing is granted without Redis unless this is set.
   */
  readonly localShare?: number | undefined
  /**
   * In `"local-share"` mode, at most this many permits of one tenant held by this instance while Redis
   * cannot be asked: a number, or one per tenant. Default: the tenant's limit scaled like the total,
   * `ceil(perTenant × localShare ÷ total)`.
   */
  readonly localTenantShare?: number | ((tenant: string) => number) | undefined
}

/**
 * Options of one call of `permit`.
 *
 * @since 0.1.0
 * @category models
 */
export interface PermitOptions {
  /**
   * Run once, when the first answer of this call is "full" (the total, the tenant's limit, or in
   * `"local-share"` mode the local share): a pool passes "close this instance's own oldest idle
   * connection of another key", answering whether it closed one. When it answers `true`, the call
   * tries again as soon as a permit of this instance is given back (the closed connection's, when its
   * scope closes), or after the shortest retry delay, instead of a full backoff; then it waits as usual.
   * A defect of the effect is logged and counts as `false`.
   */
  readonly onFull?: Effect.Effect<boolean> | undefined
}

/**
 * A permit: one connection's share of the budget, returned when the scope it
 * was taken in closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Permit {
  /** Unique across the budget: a retry after a lost reply carries the same id, so it never counts twice. */
  readonly id: string
  /** The tenant it counts against. */
  readonly tenant: string
}

/**
 * This instance's lease was lost: Redis no longer counts the permits it
 * holds (they were reclaimed after it failed to renew, or Redis lost its data
 * and the instance did not re-assert them in time), or it could not renew
 * before its local deadline. The owner should close the connections these
 * permits cover; new permits are taken afresh. Not emitted in `"unlimited"`
 * mode: there the connections are kept and their permits counted again.
 *
 * @since 0.1.0
 * @category models
 */
export interface LeaseLost {
  readonly budget: string
  readonly instanceId: string
  /** Permits this instance held when it noticed. */
  readonly permits: number
  /** Who noticed: a heartbeat's answer, an acquire's answer, or the local deadline passing without a renewal. */
  readonly detectedBy: "heartbeat" | "acquire" | "deadline"
}

/**
 * A snapshot of the budget as this instance sees it. Shared figures (`used`,
 * `wantsElsewhere`, `over`) are as of the last answer from Redis.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  readonly name: string
  readonly instanceId: string
  /** The total limit. */
  readonly limit: number
  /** Permits counted across all instances. */
  readonly used: number
  /** Permits this instance holds, those granted without Redis and not yet counted there included. */
  readonly held: number
  /** Permits this instance holds that Redis does not count yet (granted while it could not be asked). */
  readonly offline: number
  /** Calls of `permit` waiting in this instance. */
  readonly waiters: number
  /** Permits other instances are waiting for. */
  readonly wantsElsewhere: number
  /**
   * How many permits this instance should give up: above its fair share while others wait, or re-asserted
   * above the limit after an outage. Idle connections worth closing; each release here lowers it at once.
   */
  readonly over: number
  /** `"ok"`, `"learning"` (Redis lost its data or paused: holders re-assert, nothing is granted) or `"unavailable"` (the last call failed). */
  readonly state: "ok" | "learning" | "unavailable"
  /** What the budget does when Redis cannot be asked. */
  readonly mode: Mode
  /** Instances with a lease in the budget at the last answer (this one included): the default local share divides by it. */
  readonly instances: number
  /** Permits granted, with or without Redis. */
  readonly granted: number
  /** Permits granted without Redis (`"local-share"` or `"unlimited"` mode while it could not be asked). */
  readonly failOpen: number
  /** Permits granted without Redis that were counted there once it answered again. */
  readonly reasserted: number
  /** Permits given back. */
  readonly released: number
  /** Calls of `permit` that ended in `BudgetExhausted`. */
  readonly exhausted: number
  /** Calls of `permit` that ended in `BudgetUnavailable`. */
  readonly unavailable: number
  /** Permits of expired instances this instance's calls reclaimed. */
  readonly reclaimed: number
  /** Times this instance lost its lease. */
  readonly leasesLost: number
  /** Releases waiting to be replayed (Redis was unreachable when they were made). */
  readonly pendingReleases: number
}

/**
 * No permit within `acquireTimeout`: the budget (or the tenant's share of
 * it) stayed full, or Redis was learning after losing its data.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetExhausted extends Data.TaggedError("BudgetExhausted")<{
  readonly budget: string
  readonly tenant: string
  /** Permits counted across all instances at the last answer. */
  readonly used: number
  readonly limit: number
  /** Permits counted for the tenant at the last answer. */
  readonly tenantUsed: number
  readonly tenantLimit: number
  /** Permits other instances were waiting for. */
  readonly wantsElsewhere: number
  /** `"full"`, or `"learning"` when Redis was still re-counting after losing its data or pausing. */
  readonly reason: "full" | "learning"
  readonly waited: Duration.Duration
}> {
  override get message(): string {
    return `Connection budget "${this.budget}" exhausted for tenant "${this.tenant}" after ${Duration.format(this.waited)}: ${this.used}/${this.limit} in total, ${this.tenantUsed}/${this.tenantLimit} for the tenant${this.reason === "learning" ? " (re-counting after a Redis restart or pause)" : ""}`
  }
}

/**
 * Redis could not be asked for a permit (unreachable, or no reply within the
 * client's command timeout), and the mode did not allow one without it:
 * `"fail-closed"`, or in `"local-share"` mode the local share stayed in use
 * until `acquireTimeout` (or no share was known yet). Permits already held
 * are kept.
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetUnavailable extends Data.TaggedError("BudgetUnavailable")<{
  readonly budget: string
  readonly tenant: string
  readonly reason: "connection" | "timeout" | "command"
  readonly detail: string
}> {
  override get message(): string {
    return `Connection budget "${this.budget}" unavailable (${this.reason}): ${this.detail}`
  }
}

/**
 * A budget of one instance.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  readonly name: string
  readonly instanceId: string
  /**
   * Takes a permit for `tenant` (default `"*"`), waiting in FIFO order (per
   * tenant) up to `acquireTimeout`; it is returned when the scope closes.
   * `options.onFull` runs once if the budget is full at the first answer.
   */
  readonly permit: (
    tenant?: string,
    options?: PermitOptions
  ) => Effect.Effect<Permit, BudgetExhausted | BudgetUnavailable, Scope.Scope>
  /** Lease-lost events from now on: close the connections this instance's permits cover when one arrives. */
  readonly lost: Stream.Stream<LeaseLost>
  /** A snapshot of the figures. */
  readonly stats: Effect.Effect<Stats>
}

/**
 * The budget as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class ClusterBudget extends Context.Tag("@cistern/redis/ClusterBudget")<ClusterBudget, Service>() {}

/**
 * Joins the budget for as long as the scope lives: registers this instance's
 * lease, renews it on a heartbeat `Schedule`, listens for release
 * notifications, and leaves (giving back what it still holds) when the scope
 * closes. It does not fail when Redis is unreachable: until it is back,
 * permits follow the `mode` (by default they fail with `BudgetUnavailable`).
 * When a `PoolRegistry` is provided, the budget lists itself there (its
 * stats as `PoolRegistry.BudgetStats`) until the scope closes; none is
 * required.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options: Options) => Effect.Effect<Service, never, RedisClient.RedisClient | Scope.Scope> = (
  options
) => internal.make(options)

/**
 * Provides a budget as {@link ClusterBudget}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<ClusterBudget, never, RedisClient.RedisClient> =>
  Layer.scoped(ClusterBudget, make(options))

/**
 * Reads a budget's settings from the environment (or any `ConfigProvider`):
 * `<env>TOTAL` (required, a positive integer), `<env>PER_TENANT`,
 * `<env>LEASE_TIME`, `<env>HEARTBEAT_INTERVAL`, `<env>ACQUIRE_TIMEOUT`
 * (`"15 seconds"` or plain milliseconds), `<env>PREFIX`, `<env>MODE`
 * (`fail-closed`, `local-share` or `unlimited`), `<env>LOCAL_SHARE` and
 * `<env>LOCAL_TENANT_SHARE` (positive integers), where `<env>` is
 * `"BUDGET_"` unless given; the name comes from code. Errors name the
 * variable and what was expected.
 *
 * @since 0.1.0
 * @category config
 */
export const config = (name: string, env = "BUDGET_"): Config.Config<Options> =>
  Config.all({
    total: Config.integer(`${env}TOTAL`).pipe(
      Config.validate({ message: "expected a positive integer", validation: (n) => n >= 1 })
    ),
    perTenant: Config.option(
      Config.integer(`${env}PER_TENANT`).pipe(
        Config.validate({ message: "expected a positive integer", validation: (n) => n >= 1 })
      )
    ),
    leaseTime: Config.option(PoolConfig.duration(`${env}LEASE_TIME`, { positive: true })),
    heartbeatInterval: Config.option(PoolConfig.duration(`${env}HEARTBEAT_INTERVAL`, { positive: true })),
    acquireTimeout: Config.option(PoolConfig.duration(`${env}ACQUIRE_TIMEOUT`)),
    prefix: Config.option(Config.string(`${env}PREFIX`)),
    mode: Config.option(Config.literal("fail-closed", "local-share", "unlimited")(`${env}MODE`)),
    localShare: Config.option(
      Config.integer(`${env}LOCAL_SHARE`).pipe(
        Config.validate({ message: "expected a positive integer", validation: (n) => n >= 1 })
      )
    ),
    localTenantShare: Config.option(
      Config.integer(`${env}LOCAL_TENANT_SHARE`).pipe(
        Config.validate({ message: "expected a positive integer", validation: (n) => n >= 1 })
      )
    )
  }).pipe(
    Config.map(
      (o): Options => ({
        name,
        total: o.total,
        perTenant: o.perTenant._tag === "Some" ? o.perTenant.value : undefined,
        leaseTime: o.leaseTime._tag === "Some" ? o.leaseTime.value : undefined,
        heartbeatInterval: o.heartbeatInterval._tag === "Some" ? o.heartbeatInterval.value : undefined,
        acquireTimeout: o.acquireTimeout._tag === "Some" ? o.acquireTimeout.value : undefined,
        prefix: o.prefix._tag === "Some" ? o.prefix.value : undefined,
        mode: o.mode._tag === "Some" ? o.mode.value : undefined,
        localShare: o.localShare._tag === "Some" ? o.localShare.value : undefined,
        localTenantShare: o.localTenantShare._tag === "Some" ? o.localTenantShare.value : undefined
      })
    )
  )

/**
 * Like {@link layer}, with the settings read by a `Config` (see {@link config}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options>
): Layer.Layer<ClusterBudget, ConfigError.ConfigError, RedisClient.RedisClient> =>
  Layer.scoped(ClusterBudget, Effect.flatMap(options, make))

/**
 * Gauge `cistern_budget_limit`: the total limit (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const limitGauge = budgetMetrics.limit

/**
 * Gauge `cistern_budget_used`: permits counted across all instances, as of
 * the last answer from Redis (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const usedGauge = budgetMetrics.used

/**
 * Gauge `cistern_budget_held`: permits this instance holds, those granted
 * without Redis and not yet counted there included (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const heldGauge = budgetMetrics.held

/**
 * Gauge `cistern_budget_wants_local`: calls of `permit` waiting in this
 * instance (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const wantsLocalGauge = budgetMetrics.waiters

/**
 * Gauge `cistern_budget_wants_global`: permits other instances are waiting
 * for, as of the last answer from Redis (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const wantsGlobalGauge = budgetMetrics.wantsElsewhere

/**
 * Counter `cistern_budget_acquire_total`: calls of `permit` by `result`
 * (`granted`, with or without Redis, `exhausted`, `unavailable`; label
 * `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const acquireTotal = budgetMetrics.acquires

/**
 * Gauge `cistern_budget_state`: `Stats.state` as a number: 0 `ok`, 1
 * `learning` (Redis is re-counting after losing its data or pausing), 2
 * `unavailable` (the last call got no answer; label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const stateGauge = budgetMetrics.state

/**
 * Gauge `cistern_budget_offline`: permits this instance holds that Redis
 * does not count yet, granted while it could not be asked (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const offlineGauge = budgetMetrics.offline

/**
 * Counter `cistern_budget_fail_open_total`: permits granted without Redis,
 * by `mode` (`local-share`, `unlimited`; label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const failOpenTotal = budgetMetrics.failOpen

/**
 * Counter `cistern_budget_reclaimed_total`: permits of expired instances
 * that this instance's calls reclaimed (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const reclaimedTotal = budgetMetrics.reclaimed

/**
 * Counter `cistern_budget_lease_lost_total`: times this instance lost its
 * lease (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const leaseLostTotal = budgetMetrics.leasesLost

/**
 * Histogram `cistern_budget_redis_seconds`: one script call's duration, by
 * `op` (`acquire`, `release`, `heartbeat`, `leave`, `adopt`; label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const redisSeconds = budgetMetrics.redisSeconds

/**
 * Histogram `cistern_budget_wait_seconds`: time from calling `permit` to
 * its grant (label `budget`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const waitSeconds = budgetMetrics.waitSeconds

/**
 * How {@link gate} names the tenant of a connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface GateOptions<K> {
  /** The tenant a key's connections count against. Default: the pool's group of the key (see `group`), else `"*"`. */
  readonly tenant?: ((key: K, group: string | undefined) => string) | undefined
}

/**
 * The `gate` of a pool under this budget (`KeyedPool` or `Pool`): every
 * creation takes a permit of the key's tenant into the new connection's
 * scope, so it is given back when the connection is destroyed; leases of
 * existing connections never ask Redis. When the budget is full, the pool
 * first closes its own least recently used idle connection of another key
 * (of the same tenant first) and the creation takes that permit; otherwise
 * it waits in FIFO order up to `acquireTimeout` and fails with
 * `BudgetExhausted` (no connection failure for the pool's breaker).
 *
 * ```ts
 * import { KeyedPool } from "@cistern/pool"
 * import { ClusterBudget } from "@cistern/redis"
 * import { Effect } from "effect"
 *
 * declare const connect: (upstream: string) => Effect.Effect<{ readonly upstream: string }, Error, never>
 *
 * const program = Effect.gen(function* () {
 *   const budget = yield* ClusterBudget.ClusterBudget
 *   const pool = yield* KeyedPool.make({
 *     acquire: (key: { readonly user: string; readonly upstream: string }) => connect(key.upstream),
 *     keyId: (key) => `${key.user}|${key.upstream}`,
 *     group: (key) => key.user, // a tenant of the budget (perTenant) per user
 *     gate: ClusterBudget.gate(budget)
 *   })
 *   yield* ClusterBudget.govern(budget, pool)
 *   yield* Effect.scoped(pool.get({ user: "ada", upstream: "search" }))
 * })
 * ```
 *
 * @since 0.1.0
 * @category pools
 */
export const gate: <K>(
  budget: Service,
  options?: GateOptions<K>
) => (context: GateContext<K>) => Effect.Effect<Permit, BudgetExhausted | BudgetUnavailable, Scope.Scope> =
  budgetPool.gate

/**
 * What {@link govern} needs of a pool: both `Pool` and `KeyedPool` have it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Governed {
  readonly evictIdle: (count: number) => Effect.Effect<number>
  readonly retireAll: Effect.Effect<number>
}

/**
 * How often {@link govern} looks at this instance's fair share.
 *
 * @since 0.1.0
 * @category models
 */
export interface GovernOptions {
  /** Default 1 second. */
  readonly interval?: Duration.DurationInput | undefined
}

/**
 * Keeps a pool within what the budget allows, for as long as the scope
 * lives: when this instance's lease is lost (its permits are no longer
 * counted), the pool retires every connection (idle ones now, in-use ones
 * when their lease ends) and takes permits afresh for new ones; while this
 * instance holds more than its fair share and other instances wait, it
 * closes that many idle connections (never in-use ones).
 *
 * @since 0.1.0
 * @category pools
 */
export const govern: (
  budget: Service,
  pool: Governed,
  options?: GovernOptions
) => Effect.Effect<void, never, Scope.Scope> = budgetPool.govern
