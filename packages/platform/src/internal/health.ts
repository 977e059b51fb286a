import type { PoolStats } from "@cistern/pool/PoolStats"
import * as Effect from "effect/Effect"
import type { Health, HealthReason, HealthStatus, PoolHealth } from "../AdminApi.js"

/** How many keys a reason names at most. */
const keysShown = 10

const severity: Record<HealthStatus, number> = { healthy: 0, degraded: 1, unhealthy: 2 }

const worst = (statuses: Iterable<HealthStatus>): HealthStatus => {
  let status: HealthStatus = "healthy"
  for (const s of statuses) if (severity[s] > severity[status]) status = s
  return status
}

const plural = (n: number, one: string, many: string = `${one}s`) => `${n} ${n === 1 ? one : many}`

/**
 * Circuit breakers and health checks, per key. A pool whose every key has an
 * open circuit can serve nobody: unhealthy. Some open circuits, or keys that
 * are half-open or failing their checks, leave it serving the others: degraded.
 */
const keyHealthReasons = (stats: PoolStats): Array<HealthReason> => {
  const reasons: Array<HealthReason> = []
  const open = stats.perKey.filter((key) => key.health.breaker === "open")
  if (open.length > 0) {
    const all = open.length === stats.perKey.length
    reasons.push({
      kind: "breaker-open",
      status: all ? "unhealthy" : "degraded",
      message: all
        ? `has an open circuit breaker on every key (${open.length})`
        : `has ${plural(open.length, "key")} with an open circuit breaker`,
      keys: open.slice(0, keysShown).map((key) => key.key)
    })
  }
  const failing = stats.perKey.filter((key) => key.health.breaker !== "open" && key.health.state !== "healthy")
  if (failing.length > 0) {
    reasons.push({
      kind: "checks-failing",
      status: "degraded",
      message: `has ${plural(failing.length, "key")} half-open or failing health checks`,
      keys: failing.slice(0, keysShown).map((key) => key.key)
    })
  }
  return reasons
}

/** @internal */
export const poolReasons = (stats: PoolStats, timeoutsSincePreviousCheck: number): Array<HealthReason> => {
  const reasons: Array<HealthReason> = []
  if (stats.closed) {
    reasons.push({ kind: "closed", status: "unhealthy", message: "is closed: it hands nothing out" })
  }
  reasons.push(...keyHealthReasons(stats))
  const { maxTotal, maxKeys } = stats.config
  if (maxTotal !== null && stats.size >= maxTotal) {
    reasons.push({
      kind: "pool-at-limit",
      status: "degraded",
      message: `is at its limit: ${stats.size} of ${maxTotal} items`
    })
  }
  if (maxKeys !== null && stats.keys >= maxKeys) {
    reasons.push({
      kind: "keys-at-limit",
      status: "degraded",
      message: `has ${stats.keys} of ${maxKeys} keys live`
    })
  }
  const full = stats.perKey.filter((key) => key.size >= key.max && key.waiting > 0)
  if (full.length > 0) {
    reasons.push({
      kind: "key-at-limit",
      status: "degraded",
      message: `has ${plural(full.length, "key")} at their limit with callers waiting`,
      keys: full.slice(0, keysShown).map((key) => key.key)
    })
  }
  if (stats.waiting > 0) {
    reasons.push({
      kind: "waiting",
      status: "degraded",
      message: `has ${plural(stats.waiting, "caller")} waiting for an item`
    })
  }
  if (timeoutsSincePreviousCheck > 0) {
    reasons.push({
      kind: "timeouts",
      status: "degraded",
      message: `had ${plural(timeoutsSincePreviousCheck, "acquire timeout")} since the previous check`
    })
  }
  return reasons
}

/** @internal */
export const evaluate = (pools: ReadonlyArray<PoolStats>, previousTimeouts: ReadonlyMap<string, number>): Health => {
  const views: Array<PoolHealth> = pools.map((stats) => {
    const previous = previousTimeouts.get(stats.name) ?? 0
    // A pool replaced under the same name starts counting again.
    const since = stats.timeouts >= previous ? stats.timeouts - previous : stats.timeouts
    const reasons = poolReasons(stats, since)
    return {
      name: stats.name,
      status: worst(reasons.map((r) => r.status)),
      reasons,
      occupancy: {
        keys: stats.keys,
        size: stats.size,
        idle: stats.idle,
        inUse: stats.inUse,
        creating: stats.creating,
        waiting: stats.waiting
      },
      timeouts: { total: stats.timeouts, sincePreviousCheck: since },
      limits: stats.config
    }
  })
  const status = worst(views.map((v) => v.status))
  const reasons = views.flatMap((v) => v.reasons.map((r) => `pool ${v.name} ${r.message}`))
  const body = { reasons, pools: views }
  return status === "unhealthy" ? { status, ...body } : { status, ...body }
}

/** @internal */
export interface Checker {
  readonly check: (pools: ReadonlyArray<PoolStats>) => Effect.Effect<Health>
}

/** @internal */
export const makeChecker: Effect.Effect<Checker> = Effect.sync(() => {
  let previous = new Map<string, number>()
  return {
    check: (pools) =>
      Effect.sync(() => {
        const health = evaluate(pools, previous)
        previous = new Map(pools.map((p) => [p.name, p.timeouts]))
        return health
      })
  }
})
