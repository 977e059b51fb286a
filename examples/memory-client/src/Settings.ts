/**
 * The client's settings, read from the memory-service client's environment
 * variables in their own unit: a bare number of an interval or a timeout is
 * seconds (`MEM0_HEALTH_CHECK_INTERVAL=30`, `MEM0_CONNECTION_TIMEOUT=0.5`), as
 * `@cistern/pool`'s `PoolConfig.duration` reads it when told the unit.
 */
import { PoolConfig } from "@cistern/pool"
import { Config, ConfigError, Duration, Either, Redacted } from "effect"

/** How the client keeps its one connection healthy. */
export interface Settings {
  /** `MEM0_HEALTH_CHECK_INTERVAL`: a ping of the idle connection; a failure rebuilds it. */
  readonly healthCheckInterval: Duration.Duration
  /** `MEM0_HEARTBEAT_INTERVAL`: a keep-alive ping of the idle connection. */
  readonly heartbeatInterval: Duration.Duration
  /** `MEM0_AUTO_REBUILD`: rebuild a broken connection and retry the call (with backoff); keep one connection ready. */
  readonly autoRebuild: boolean
  /** `MEM0_CONNECTION_TIMEOUT`: bound of connecting (with the key's validation), of each ping and heartbeat. */
  readonly connectionTimeout: Duration.Duration
  /** `MEM0_REQUEST_TIMEOUT`: bound of each tool call; a call that outlives it is retried on a new connection. */
  readonly requestTimeout: Duration.Duration
  /** `MEM0_MAX_RETRIES`: retries of one call after connection failures. */
  readonly maxRetries: number
  /** `MEM0_RETRY_DELAY`: the first retry's delay; each next one is `MEM0_BACKOFF_FACTOR` times longer. */
  readonly retryDelay: Duration.Duration
  /** `MEM0_BACKOFF_FACTOR`. */
  readonly backoffFactor: number
  /** `MEM0_MAX_CONCURRENT_CALLS`: calls in flight at once on the one connection; more wait their turn. */
  readonly maxConcurrentCalls: number
}

/** The defaults: the memory-service client's own (30 s checks, 60 s heartbeats, 10 s connection timeout). */
export const defaults: Settings = {
  healthCheckInterval: Duration.seconds(30),
  heartbeatInterval: Duration.seconds(60),
  autoRebuild: true,
  connectionTimeout: Duration.seconds(10),
  requestTimeout: Duration.seconds(30),
  maxRetries: 3,
  retryDelay: Duration.seconds(1),
  backoffFactor: 2,
  maxConcurrentCalls: 32
}

/**
 * A positive duration whose bare number is seconds (`30`, `0.5`); `"30 seconds"`
 * or `"500 millis"` say their unit. A bad value names the variable and the value.
 */
export const seconds = (name: string, fallback: Duration.Duration): Config.Config<Duration.Duration> =>
  PoolConfig.duration(name, { unit: "seconds", positive: true }).pipe(Config.withDefault(fallback))

/**
 * A number of calls from 1 to 1000: each call in flight is a socket of its
 * own (HTTP/1.1), so it is always bounded (no `unbounded`).
 */
const callLimit = (name: string): Config.Config<number> =>
  Config.string(name).pipe(
    Config.mapOrFail((raw) => {
      const n = Number(raw.trim())
      return /^\d+$/.test(raw.trim()) && n >= 1 && n <= 1000
        ? Either.right(n)
        : Either.left(ConfigError.InvalidData([name], `${name}=${JSON.stringify(raw)}: expected 1 to 1000 calls`))
    })
  )

/** Every setting from its `MEM0_*` variable, with {@link defaults} for those unset. */
export const config: Config.Config<Settings> = Config.all({
  healthCheckInterval: seconds("MEM0_HEALTH_CHECK_INTERVAL", defaults.healthCheckInterval),
  heartbeatInterval: seconds("MEM0_HEARTBEAT_INTERVAL", defaults.heartbeatInterval),
  autoRebuild: PoolConfig.flag("MEM0_AUTO_REBUILD").pipe(Config.withDefault(defaults.autoRebuild)),
  connectionTimeout: seconds("MEM0_CONNECTION_TIMEOUT", defaults.connectionTimeout),
  requestTimeout: seconds("MEM0_REQUEST_TIMEOUT", defaults.requestTimeout),
  maxRetries: PoolConfig.count("MEM0_MAX_RETRIES").pipe(Config.withDefault(defaults.maxRetries)),
  retryDelay: seconds("MEM0_RETRY_DELAY", defaults.retryDelay),
  backoffFactor: Config.number("MEM0_BACKOFF_FACTOR").pipe(
    Config.validate({ message: "MEM0_BACKOFF_FACTOR must be at least 1", validation: (n) => n >= 1 }),
    Config.withDefault(defaults.backoffFactor)
  ),
  maxConcurrentCalls: callLimit("MEM0_MAX_CONCURRENT_CALLS").pipe(Config.withDefault(defaults.maxConcurrentCalls))
})

/** `MEM0_API_KEY`: the key the client sends (default: the demo service's key). */
export const apiKey: Config.Config<Redacted.Redacted<string>> = Config.redacted("MEM0_API_KEY").pipe(
  Config.withDefault(Redacted.make("mem0-demo-key"))
)
