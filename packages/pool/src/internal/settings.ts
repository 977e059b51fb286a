import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Hash from "effect/Hash"
import * as Schedule from "effect/Schedule"
import * as CircuitBreaker from "../CircuitBreaker.js"
import * as HealthCheck from "../HealthCheck.js"
import type { Options } from "../KeyedPool.js"
import * as PoolConfig from "../PoolConfig.js"
import { InvalidOption } from "../PoolError.js"
import type { ConfigInForce } from "../PoolStats.js"
import type { BreakerSettings } from "./kernel/breaker.js"

/**
 * Options checked and turned into plain numbers (milliseconds; `Infinity` for
 * unbounded), so the hot path compares numbers and never decodes durations.
 *
 * @internal
 */
export interface Resolved<K> {
  readonly name: string
  readonly maxPerKey: (key: K) => number
  readonly fixedMaxPerKey: number | undefined
  readonly maxTotal: number
  readonly maxKeys: number
  readonly minIdlePerKey: number
  readonly idleTimeout: number
  readonly maxLifetime: number
  readonly acquireTimeout: number
  readonly cleanupInterval: number
  readonly drainTimeout: number
  readonly createTimeout: number
  readonly createConcurrency: number
  readonly createBackoff: { readonly initial: number; readonly max: number } | undefined
  readonly validate: ((item: any) => Effect.Effect<unknown, unknown>) | undefined
  readonly validateAfter: number
  readonly validateTimeout: number
  readonly healthCheck: Maintenance | undefined
  readonly heartbeat: Maintenance | undefined
  readonly checkHistory: number
  readonly isConnectionError: (error: unknown) => boolean
  readonly retry: Schedule.Schedule<unknown, unknown> | undefined
  readonly breaker: BreakerSettings | undefined
  readonly metricsPerKey: number
  readonly spans: boolean
  readonly metricsInterval: number
  readonly keyId: (key: K) => unknown
  readonly fingerprint: ((key: K) => string) | undefined
  readonly describeKey: (key: K) => string
  readonly group: ((key: K) => string) | undefined
  readonly maxPerGroup: (group: string) => number
  /** Callers that may hold one item at once: 1 for exclusive leases. */
  readonly maxLeasesPerItem: number
}

/**
 * How options are named in errors: `Pool` calls two of them `max` and
 * `minIdle`.
 *
 * @internal
 */
export interface Labels {
  readonly maxPerKey: string
  readonly minIdlePerKey: string
}

const keyedLabels: Labels = { maxPerKey: "maxPerKey", minIdlePerKey: "minIdlePerKey" }

const show = (value: unknown): string =>
  typeof value === "string" ? JSON.stringify(value) : Array.isArray(value) ? `[${value.join(", ")}]` : String(value)

const invalid = (option: string, value: unknown, expected: string): never => {
  throw new InvalidOption({ option, value: show(value), expected })
}

/** @internal */
export const checkLimit = (option: string, value: number): number =>
  value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 1)
    ? value
    : invalid(option, value, "a positive integer or Infinity")

const checkCount = (option: string, value: number): number =>
  Number.isInteger(value) && value >= 0 ? value : invalid(option, value, "a non-negative integer")

/**
 * Whether a duration input is negative or NaN: `Duration` reads those as 0,
 * which would let `-5` or `NaN` pass as "no wait" (or, for an interval, as a
 * busy loop).
 */
const negative = (input: unknown): boolean => {
  switch (typeof input) {
    case "number":
      return Number.isNaN(input) || input < 0
    case "bigint":
      return input < BigInt(0)
    case "string":
      return /^\s*-/.test(input)
    default:
      return Array.isArray(input) && input.some((n) => typeof n !== "number" || Number.isNaN(n) || n < 0)
  }
}

const millis = (option: string, input: Duration.DurationInput, positive: boolean): number => {
  const expected = positive ? "a positive duration" : "a duration of zero or more"
  if (negative(input)) return invalid(option, input, expected)
  const decoded = Duration.decodeUnknown(input)
  if (decoded._tag === "None") return invalid(option, input, 'a duration such as "30 seconds" or milliseconds')
  const ms = Duration.toMillis(decoded.value)
  return ms > 0 || (!positive && ms === 0) ? ms : invalid(option, input, expected)
}

/**
 * Runs a user's function that should return an Effect lazily, so that one
 * that throws instead fails the Effect with a defect (as `Effect.suspend`
 * does) and the pool's bookkeeping around it still runs.
 */
const lazily =
  <A>(f: (a: A) => Effect.Effect<unknown, unknown>) =>
  (a: A): Effect.Effect<unknown, unknown> =>
    Effect.suspend(() => f(a))

/** A classifier that throws counts the error as a connection failure: the item it was judging is treated as broken. */
const classifier =
  (f: (error: unknown) => boolean) =>
  (error: unknown): boolean => {
    try {
      return f(error) === true
    } catch {
      return true
    }
  }

/** A health check or heartbeat, with its schedule and bound resolved. */
export interface Maintenance {
  readonly run: (item: any) => Effect.Effect<unknown, unknown>
  readonly schedule: Schedule.Schedule<unknown, unknown>
  readonly timeout: number
}

const fraction = (option: string, value: number): number =>
  value > 0 && value <= 1 ? value : invalid(option, value, "a number in (0, 1]")

const resolveBreaker = (options: CircuitBreaker.Options): BreakerSettings => {
  const d = CircuitBreaker.defaults
  return {
    failures: checkLimit("breaker.failures", options.failures ?? d.failures),
    failureRate:
      options.failureRate === undefined
        ? Number.POSITIVE_INFINITY
        : fraction("breaker.failureRate", options.failureRate),
    minimumCalls: checkLimit("breaker.minimumCalls", options.minimumCalls ?? d.minimumCalls),
    window: checkLimit("breaker.window", options.window ?? d.window),
    reset: millis("breaker.reset", options.reset ?? d.reset, true),
    halfOpenProbes: checkLimit("breaker.halfOpenProbes", options.halfOpenProbes ?? d.halfOpenProbes)
  }
}

const resolveMaxPerGroup = (option: unknown): ((group: string) => number) => {
  if (option === undefined) return () => Number.POSITIVE_INFINITY
  if (typeof option === "number") {
    const max = checkLimit("maxPerGroup", option)
    return () => max
  }
  if (typeof option === "function") return (group) => checkLimit("maxPerGroup(group)", option(group))
  return invalid("maxPerGroup", option, "a positive integer, Infinity, or a function of the group")
}

/** A short, stable, credential-free name for a key: a hash of its identity. */
const hashedKey = (id: unknown): string => `key-${(Hash.hash(id) >>> 0).toString(36)}`

/**
 * Validates options, filling in {@link PoolConfig.defaults}. Invalid values are
 * programmer errors and throw an `InvalidOption` naming the option and value.
 * User callbacks that should return an Effect are wrapped so that one that
 * throws fails its Effect instead.
 *
 * @internal
 */
export const resolve = <K>(options: Options<K, any, any, any, any, any>, labels: Labels = keyedLabels): Resolved<K> => {
  const d = PoolConfig.defaults
  const maxPerKey: unknown = options.maxPerKey ?? d.maxPerKey
  const keyId = options.keyId ?? ((key: K): unknown => key)
  if (typeof maxPerKey !== "number" && typeof maxPerKey !== "function") {
    // An unparsed environment value ("10") must not pass for a function of the key.
    invalid(labels.maxPerKey, maxPerKey, "a positive integer, Infinity, or a function of the key")
  }
  const perKey = maxPerKey as number | ((key: K) => number)
  const fixedMaxPerKey = typeof perKey === "number" ? checkLimit(labels.maxPerKey, perKey) : undefined
  const maxTotal = checkLimit("maxTotal", options.maxTotal ?? d.maxTotal)
  const minIdlePerKey = checkCount(labels.minIdlePerKey, options.minIdlePerKey ?? d.minIdlePerKey)
  // A floor above a limit could never be reached: pre-warming and refills would wait for ever.
  if (fixedMaxPerKey !== undefined && minIdlePerKey > fixedMaxPerKey) {
    invalid(labels.minIdlePerKey, minIdlePerKey, `at most ${labels.maxPerKey} (${fixedMaxPerKey})`)
  }
  if (minIdlePerKey > maxTotal) invalid(labels.minIdlePerKey, minIdlePerKey, `at most maxTotal (${maxTotal})`)
  const healthCheckInterval = millis("healthCheckInterval", options.healthCheckInterval ?? d.healthCheckInterval, true)
  const heartbeatInterval = millis("heartbeatInterval", options.heartbeatInterval ?? d.heartbeatInterval, true)
  return {
    name: options.name ?? "pool",
    maxPerKey:
      typeof perKey === "number" ? () => fixedMaxPerKey! : (key) => checkLimit(`${labels.maxPerKey}(key)`, perKey(key)),
    fixedMaxPerKey,
    maxTotal,
    maxKeys: checkLimit("maxKeys", options.maxKeys ?? d.maxKeys),
    minIdlePerKey,
    idleTimeout: millis("idleTimeout", options.idleTimeout ?? d.idleTimeout, true),
    maxLifetime: millis("maxLifetime", options.maxLifetime ?? d.maxLifetime, true),
    acquireTimeout: millis("acquireTimeout", options.acquireTimeout ?? d.acquireTimeout, true),
    cleanupInterval: millis("cleanupInterval", options.cleanupInterval ?? d.cleanupInterval, true),
    drainTimeout: millis("drainTimeout", options.drainTimeout ?? d.drainTimeout, false),
    createTimeout: millis("createTimeout", options.createTimeout ?? d.createTimeout, true),
    createConcurrency: checkLimit("createConcurrency", options.createConcurrency ?? d.createConcurrency),
    createBackoff:
      options.createBackoff === false
        ? undefined
        : {
            initial: millis("createBackoff.initial", options.createBackoff?.initial ?? "100 millis", true),
            max: millis("createBackoff.max", options.createBackoff?.max ?? "10 seconds", true)
          },
    validate: options.validate === undefined ? undefined : lazily(options.validate),
    validateAfter: millis("validateAfter", options.validateAfter ?? 0, false),
    validateTimeout: millis("validateTimeout", options.validateTimeout ?? "5 seconds", true),
    healthCheck:
      options.healthCheck === undefined
        ? undefined
        : {
            run: lazily(options.healthCheck.check),
            schedule: Schedule.spaced(Duration.millis(healthCheckInterval)),
            timeout: millis("healthCheck.timeout", options.healthCheck.timeout ?? "5 seconds", true)
          },
    heartbeat:
      options.heartbeat === undefined
        ? undefined
        : {
            run: lazily(options.heartbeat.beat),
            schedule: Schedule.spaced(Duration.millis(heartbeatInterval)),
            timeout: millis("heartbeat.timeout", options.heartbeat.timeout ?? "5 seconds", true)
          },
    checkHistory: checkCount("checkHistory", options.checkHistory ?? 100),
    isConnectionError:
      options.isConnectionError === undefined ? HealthCheck.isConnectionError : classifier(options.isConnectionError),
    retry:
      typeof options.retry === "object"
        ? options.retry
        : (options.retry ?? d.retry)
          ? HealthCheck.defaultRetry
          : undefined,
    breaker: options.breaker === undefined || options.breaker === false ? undefined : resolveBreaker(options.breaker),
    metricsPerKey: checkCount("metricsPerKey", options.metricsPerKey ?? 0),
    spans: options.spans ?? false,
    metricsInterval: millis("metricsInterval", options.metricsInterval ?? "5 seconds", true),
    keyId,
    fingerprint: options.fingerprint,
    describeKey: options.describeKey ?? ((key) => hashedKey(keyId(key))),
    group: options.group,
    maxPerGroup: resolveMaxPerGroup(options.maxPerGroup),
    maxLeasesPerItem: checkLimit("maxLeasesPerItem", options.maxLeasesPerItem ?? d.maxLeasesPerItem)
  }
}

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null)

/** @internal */
export const configInForce = (r: Resolved<any>): ConfigInForce => ({
  maxPerKey: r.fixedMaxPerKey === undefined ? null : finite(r.fixedMaxPerKey),
  maxTotal: finite(r.maxTotal),
  maxKeys: finite(r.maxKeys),
  minIdlePerKey: r.minIdlePerKey,
  idleTimeoutMillis: finite(r.idleTimeout),
  maxLifetimeMillis: finite(r.maxLifetime),
  acquireTimeoutMillis: finite(r.acquireTimeout),
  cleanupIntervalMillis: finite(r.cleanupInterval),
  drainTimeoutMillis: finite(r.drainTimeout),
  createTimeoutMillis: finite(r.createTimeout),
  createConcurrency: finite(r.createConcurrency),
  // Shown only where leases are shared, as `perGroup` only where there are groups.
  ...(r.maxLeasesPerItem === 1 ? {} : { maxLeasesPerItem: finite(r.maxLeasesPerItem) })
})
