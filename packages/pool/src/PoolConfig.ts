/**
 * The numeric and time settings of a pool, their defaults, and `Config`
 * readers that validate them and name the bad variable and value.
 *
 * ```ts
 * import { PoolConfig } from "@cistern/pool"
 *
 * // a multi-user MCP gateway's variables: CONNECTION_TIMEOUT there is an idle timeout
 * const gateway = PoolConfig.settings({
 *   maxPerKey: "MAX_CONNECTIONS_PER_USER",
 *   maxTotal: "MAX_TOTAL_CONNECTIONS",
 *   idleTimeout: "CONNECTION_TIMEOUT",
 *   cleanupInterval: "CLEANUP_INTERVAL"
 * })
 * // a memory-service client's
 * const memory = PoolConfig.settings({
 *   healthCheckInterval: "MEM0_HEALTH_CHECK_INTERVAL",
 *   heartbeatInterval: "MEM0_HEARTBEAT_INTERVAL",
 *   retry: "MEM0_AUTO_REBUILD",
 *   createTimeout: "MEM0_CONNECTION_TIMEOUT"
 * }, {
 *   // its variables count in seconds: MEM0_HEALTH_CHECK_INTERVAL=30 is 30 seconds
 *   units: { healthCheckInterval: "seconds", heartbeatInterval: "seconds", createTimeout: "seconds" },
 *   // and only these four are read: a RETRY or MAX_PER_KEY meant for another program is ignored
 *   only: true
 * })
 * ```
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

/**
 * A pool's limits and timings. Every field is optional: what is missing takes
 * its value from {@link defaults}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Settings {
  /** Items per key, counting those being created. Default 10. */
  readonly maxPerKey?: number | undefined
  /** Items across all keys, counting those being created. Default 100. */
  readonly maxTotal?: number | undefined
  /** Distinct live keys. Beyond it an entirely idle key is evicted, else the caller fails fast. Default 10,000. */
  readonly maxKeys?: number | undefined
  /**
   * A floor of idle items per key: idle expiry keeps it, and a key that falls
   * below it (an item destroyed, a creation failed) is refilled in the
   * background, after the creation backoff. At most `maxPerKey`. Default 0.
   */
  readonly minIdlePerKey?: number | undefined
  /** An item idle longer than this is destroyed within one `cleanupInterval`. Default 10 minutes. */
  readonly idleTimeout?: Duration.DurationInput | undefined
  /** An item older than this is retired when its lease ends. Default: infinity. */
  readonly maxLifetime?: Duration.DurationInput | undefined
  /**
   * How long a caller may wait for an item, its own creation included: at
   * this deadline the caller fails with `PoolTimeout`, whatever it was
   * waiting for. A creation started for it is not cut short: it goes on
   * (bounded only by `createTimeout`) and its item serves the key's next
   * waiter or becomes idle. A creation that fails while its caller still
   * waits fails that caller with the resource's own error. Default 30 seconds.
   */
  readonly acquireTimeout?: Duration.DurationInput | undefined
  /** How often the single cleanup fiber expires idle items. Default 1 minute. */
  readonly cleanupInterval?: Duration.DurationInput | undefined
  /**
   * The bound of shutdown: how long leases get to come back and finalizers to
   * finish before holders are interrupted and the rest is left to finish in
   * the background. May be 0. Default 10 seconds.
   */
  readonly drainTimeout?: Duration.DurationInput | undefined
  /** How long one creation may take (a memory-service client's connection timeout). Default: infinity. */
  readonly createTimeout?: Duration.DurationInput | undefined
  /** Creations in flight per key, so recovery after an outage is no thundering herd. Default 4. */
  readonly createConcurrency?: number | undefined
  /** How often idle items are health-checked (with `healthCheck` given), the pause between rounds. Default 30 seconds. */
  readonly healthCheckInterval?: Duration.DurationInput | undefined
  /** How often idle items get a heartbeat (with `heartbeat` given), the pause between rounds. Default 60 seconds. */
  readonly heartbeatInterval?: Duration.DurationInput | undefined
  /**
   * Whether `use` retries connection failures on a fresh item (what a
   * memory-service client calls auto-rebuild), with
   * `HealthCheck.defaultRetry`. A pool's own `retry` option also takes a
   * schedule. Default false.
   */
  readonly retry?: boolean | undefined
  /**
   * How many callers may hold one item at once (an HTTP/2 session, an MCP or
   * Redis client that serves many requests). A new lease goes to the item of
   * its key with the fewest leases; another item is created only when every
   * item of the key is at this limit. Limits (`maxPerKey`, `maxTotal`,
   * `maxPerGroup`) still count items, and an item is idle only with no
   * lease. `unbounded` (Infinity) lets one item serve everyone. Default 1:
   * exclusive leases.
   */
  readonly maxLeasesPerItem?: number | undefined
}

/**
 * The value each setting takes when it is not given.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  maxPerKey: 10,
  maxTotal: 100,
  maxKeys: 10_000,
  minIdlePerKey: 0,
  idleTimeout: Duration.minutes(10),
  maxLifetime: Duration.infinity,
  acquireTimeout: Duration.seconds(30),
  cleanupInterval: Duration.minutes(1),
  drainTimeout: Duration.seconds(10),
  createTimeout: Duration.infinity,
  createConcurrency: 4,
  healthCheckInterval: Duration.seconds(30),
  heartbeatInterval: Duration.seconds(60),
  retry: false,
  maxLeasesPerItem: 1
} as const satisfies { readonly [K in keyof Settings]-?: NonNullable<Settings[K]> }

/**
 * The variable each setting is read from by {@link settings} unless renamed.
 * Nest the whole config (`Config.nested(settings(), "UPSTREAMS")`) to prefix
 * them all (`UPSTREAMS_MAX_PER_KEY` with the environment provider).
 *
 * @since 0.1.0
 * @category constants
 */
export const variables: { readonly [K in keyof Settings]-?: string } = {
  maxPerKey: "MAX_PER_KEY",
  maxTotal: "MAX_TOTAL",
  maxKeys: "MAX_KEYS",
  minIdlePerKey: "MIN_IDLE_PER_KEY",
  idleTimeout: "IDLE_TIMEOUT",
  maxLifetime: "MAX_LIFETIME",
  acquireTimeout: "ACQUIRE_TIMEOUT",
  cleanupInterval: "CLEANUP_INTERVAL",
  drainTimeout: "DRAIN_TIMEOUT",
  createTimeout: "CREATE_TIMEOUT",
  createConcurrency: "CREATE_CONCURRENCY",
  healthCheckInterval: "HEALTH_CHECK_INTERVAL",
  heartbeatInterval: "HEARTBEAT_INTERVAL",
  retry: "RETRY",
  maxLeasesPerItem: "MAX_LEASES_PER_ITEM"
}

const unbounded = /^(unbounded|infinity|inf)$/i
const integer = /^\d+$/
const millis = /^\d+(\.\d+)?$/

const parsed = <A>(name: string, parse: (raw: string) => Either.Either<A, string>): Config.Config<A> =>
  Config.string(name).pipe(
    Config.mapOrFail((raw) =>
      Either.mapLeft(parse(raw.trim()), (why) =>
        ConfigError.InvalidData([name], `${name}=${JSON.stringify(raw)}: ${why}`)
      )
    )
  )

/**
 * A positive integer limit; `unbounded` (or `infinity`) lifts it.
 *
 * @since 0.1.0
 * @category config
 */
export const limit = (name: string): Config.Config<number> =>
  parsed(name, (raw) =>
    unbounded.test(raw)
      ? Either.right(Number.POSITIVE_INFINITY)
      : integer.test(raw) && Number(raw) >= 1
        ? Either.right(Number(raw))
        : Either.left("expected a positive integer or `unbounded`")
  )

/**
 * A count that may be zero.
 *
 * @since 0.1.0
 * @category config
 */
export const count = (name: string): Config.Config<number> =>
  parsed(name, (raw) =>
    integer.test(raw) ? Either.right(Number(raw)) : Either.left("expected a non-negative integer")
  )

/**
 * The unit of a bare number read as a duration: `HEALTH_CHECK_INTERVAL=30`
 * with `"seconds"` is 30 seconds. Default `"millis"`.
 *
 * @since 0.1.0
 * @category models
 */
export type Unit = "millis" | "seconds" | "minutes" | "hours"

const unitMillis: { readonly [U in Unit]: number } = { millis: 1, seconds: 1000, minutes: 60_000, hours: 3_600_000 }

/**
 * A duration: `"30 seconds"`, `"5 minutes"`, a bare number in `unit`
 * (milliseconds unless the variable declares another: a client whose
 * variables count in seconds reads `30` as 30 seconds), or `infinity`.
 * Negative values are rejected; with `positive`, zero is too (a zero timeout
 * or interval is never what a setting means). Errors name the variable and
 * its value.
 *
 * @since 0.1.0
 * @category config
 */
export const duration = (
  name: string,
  options?: { readonly positive?: boolean | undefined; readonly unit?: Unit | undefined }
): Config.Config<Duration.Duration> =>
  parsed(name, (raw) => {
    const unit = options?.unit ?? "millis"
    const expected = options?.positive ? "expected a positive duration" : "expected a duration of zero or more"
    // `Duration` reads "-1 seconds" as zero: refuse the sign before it does.
    if (raw.startsWith("-")) return Either.left(expected)
    const decoded: Option.Option<Duration.Duration> = millis.test(raw)
      ? Option.some(Duration.millis(Number(raw) * unitMillis[unit]))
      : unbounded.test(raw)
        ? Option.some(Duration.infinity)
        : Duration.decodeUnknown(raw)
    return Option.match(decoded, {
      onNone: () => Either.left(`expected a duration such as "30 seconds", "5 minutes" or a number of ${unit}`),
      onSome: (d) => (options?.positive && Duration.isZero(d) ? Either.left(expected) : Either.right(d))
    })
  })

/**
 * A switch: `true`/`false`, `on`/`off`, `yes`/`no`, `1`/`0`.
 *
 * @since 0.1.0
 * @category config
 */
export const flag = (name: string): Config.Config<boolean> =>
  parsed(name, (raw) =>
    /^(true|on|yes|1)$/i.test(raw)
      ? Either.right(true)
      : /^(false|off|no|0)$/i.test(raw)
        ? Either.right(false)
        : Either.left("expected true or false")
  )

const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  Config.map(Config.option(config), Option.getOrUndefined)

/**
 * The settings that are durations: each may declare the unit of a bare number
 * in {@link settings}.
 *
 * @since 0.1.0
 * @category models
 */
export type DurationSetting =
  | "idleTimeout"
  | "maxLifetime"
  | "acquireTimeout"
  | "cleanupInterval"
  | "drainTimeout"
  | "createTimeout"
  | "healthCheckInterval"
  | "heartbeatInterval"

/**
 * Reads every setting from its variable (see {@link variables}; rename any of
 * them with `names`). Missing variables stay `undefined`, so the pool's own
 * options or {@link defaults} apply; present but invalid ones (a limit below
 * 1, a negative duration, a zero timeout or interval — only `drainTimeout`
 * may be 0) fail with a `ConfigError` naming the variable and its value.
 * A bare number is milliseconds unless `units` declares another unit for
 * that setting (`{ units: { healthCheckInterval: "seconds" } }`).
 *
 * With `only: true`, just the settings named in `names` are read: a program
 * with variables of its own is not stopped by a generic one (`RETRY`,
 * `MAX_PER_KEY`) set for another program in the same environment.
 *
 * @since 0.1.0
 * @category config
 */
export const settings = (
  names: { readonly [K in keyof Settings]?: string } = {},
  options?: {
    readonly units?: { readonly [K in DurationSetting]?: Unit } | undefined
    readonly only?: boolean | undefined
  }
): Config.Config<Settings> => {
  const name = (k: keyof Settings) => names[k] ?? variables[k]
  // A setting left out under `only` reads nothing and stays undefined.
  const read = <A>(k: keyof Settings, config: (name: string) => Config.Config<A>): Config.Config<A | undefined> =>
    options?.only === true && names[k] === undefined ? Config.succeed(undefined) : optional(config(name(k)))
  const time = (k: DurationSetting, positive = true) =>
    read(k, (variable) => duration(variable, { positive, unit: options?.units?.[k] }))
  return Config.all({
    maxPerKey: read("maxPerKey", limit),
    maxTotal: read("maxTotal", limit),
    maxKeys: read("maxKeys", limit),
    minIdlePerKey: read("minIdlePerKey", count),
    idleTimeout: time("idleTimeout"),
    maxLifetime: time("maxLifetime"),
    acquireTimeout: time("acquireTimeout"),
    cleanupInterval: time("cleanupInterval"),
    // The one setting that may be zero: shut down without waiting for leases.
    drainTimeout: time("drainTimeout", false),
    createTimeout: time("createTimeout"),
    createConcurrency: read("createConcurrency", limit),
    healthCheckInterval: time("healthCheckInterval"),
    heartbeatInterval: time("heartbeatInterval"),
    retry: read("retry", flag),
    maxLeasesPerItem: read("maxLeasesPerItem", limit)
  })
}
