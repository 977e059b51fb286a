import * as Duration from "effect/Duration"
import * as Hash from "effect/Hash"
import type { Options } from "../KeyedPool.js"
import * as PoolConfig from "../PoolConfig.js"
import type { ConfigInForce } from "../PoolStats.js"

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
  drainTimeoutMillis: finite(r.drainTimeout)
})
