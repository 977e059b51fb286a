import * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Hash from "effect/Hash"
import * as Schedule from "effect/Schedule"
import * as CircuitBreaker from "../CircuitBreaker.js"
import * as HealthCheck from "../HealthCheck.js"
import type { Options } from "../KeyedPool.js"
import * as PoolConfig from "../PoolConfig.js"
import type { ConfigInForce } from "../PoolStats.js"
import type { BreakerSettings } from "./breaker.js"

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
}

const invalid = (option: string, value: unknown, expected: string): never => {
  throw new RangeError(`@cistern/pool: option ${option} = ${String(value)} is invalid: expected ${expected}`)
}

/** @internal */
export const checkLimit = (option: string, value: number): number =>
  value === Number.POSITIVE_INFINITY || (Number.isInteger(value) && value >= 1)
    ? value
    : invalid(option, value, "a positive integer or Infinity")

const checkCount = (option: string, value: number): number =>
  Number.isInteger(value) && value >= 0 ? value : invalid(option, value, "a non-negative integer")

const millis = (option: string, input: Duration.DurationInput, positive: boolean): number => {
  const decoded = Duration.decodeUnknown(input)
  if (decoded._tag === "None") return invalid(option, input, 'a duration such as "30 seconds" or milliseconds')
  const ms = Duration.toMillis(decoded.value)
  return ms > 0 || (!positive && ms === 0)
    ? ms
    : invalid(option, input, positive ? "a positive duration" : "a duration")
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

/** A short, stable, credential-free name for a key: a hash of its identity. */
const hashedKey = (id: unknown): string => `key-${(Hash.hash(id) >>> 0).toString(36)}`

/**
 * Validates options, filling in {@link PoolConfig.defaults}. Invalid values are
 * programmer errors and throw a `RangeError` naming the option and value.
 *
 * @internal
 */
export const resolve = <K>(options: Options<K, any, any, any>): Resolved<K> => {
  const d = PoolConfig.defaults
  const maxPerKey = options.maxPerKey ?? d.maxPerKey
  const keyId = options.keyId ?? ((key: K): unknown => key)
  const minIdlePerKey = checkCount("minIdlePerKey", options.minIdlePerKey ?? d.minIdlePerKey)
  const fixedMaxPerKey = typeof maxPerKey === "number" ? checkLimit("maxPerKey", maxPerKey) : undefined
  return {
    name: options.name ?? "pool",
    maxPerKey:
      typeof maxPerKey === "number" ? () => fixedMaxPerKey! : (key) => checkLimit("maxPerKey(key)", maxPerKey(key)),
    fixedMaxPerKey,
    maxTotal: checkLimit("maxTotal", options.maxTotal ?? d.maxTotal),
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
    validate: options.validate,
    validateAfter: millis("validateAfter", options.validateAfter ?? 0, false),
    validateTimeout: millis("validateTimeout", options.validateTimeout ?? "5 seconds", true),
    healthCheck:
      options.healthCheck === undefined
        ? undefined
        : {
            run: options.healthCheck.check,
            schedule:
              options.healthCheck.schedule ?? Schedule.spaced(options.healthCheckInterval ?? d.healthCheckInterval),
            timeout: millis("healthCheck.timeout", options.healthCheck.timeout ?? "5 seconds", true)
          },
    heartbeat:
      options.heartbeat === undefined
        ? undefined
        : {
            run: options.heartbeat.beat,
            schedule: options.heartbeat.schedule ?? Schedule.spaced(options.heartbeatInterval ?? d.heartbeatInterval),
            timeout: millis("heartbeat.timeout", options.heartbeat.timeout ?? "5 seconds", true)
          },
    checkHistory: checkCount("checkHistory", options.checkHistory ?? 100),
    isConnectionError: options.isConnectionError ?? HealthCheck.isConnectionError,
    retry:
      typeof options.retry === "object"
        ? options.retry
        : (options.retry ?? options.autoRebuild ?? d.autoRebuild)
          ? HealthCheck.defaultRetry
          : undefined,
    breaker: options.breaker === undefined || options.breaker === false ? undefined : resolveBreaker(options.breaker),
    metricsPerKey: checkCount("metricsPerKey", options.metricsPerKey ?? 0),
    spans: options.spans ?? false,
    metricsInterval: millis("metricsInterval", options.metricsInterval ?? "5 seconds", true),
    keyId,
    fingerprint: options.fingerprint,
    describeKey: options.describeKey ?? ((key) => hashedKey(keyId(key)))
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
  createConcurrency: finite(r.createConcurrency)
})
