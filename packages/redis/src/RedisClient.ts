/**
 * The Redis client (ioredis) as a resource of a scope: connected when the
 * layer is built, disconnected when its scope closes, configured so a
 * command never waits longer than `commandTimeout` — no offline queue, no
 * retry of a command after a disconnect — while the connection itself is
 * re-established in the background with capped backoff.
 *
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { RedisClient } from "@cistern/redis"
 *
 * const program = Effect.gen(function* () {
 *   const client = yield* RedisClient.RedisClient
 *   return yield* client.run("PING", (redis) => redis.ping())
 * }).pipe(Effect.provide(RedisClient.layer({ url: Redacted.make("redis://127.0.0.1:6379") })))
 * ```
 *
 * @since 0.1.0
 */
import * as PoolConfig from "@cistern/pool/PoolConfig"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { Redis, RedisOptions } from "ioredis"
import * as internal from "./internal/client.js"
import type { RedisError } from "./RedisError.js"

/**
 * A connected client.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** The ioredis client, for commands this package does not wrap. */
  readonly redis: Redis
  /** Runs a command; a rejection becomes a classified {@link RedisError}. */
  readonly run: <A>(command: string, f: (redis: Redis) => Promise<A>) => Effect.Effect<A, RedisError>
  /** Whether the connection is ready now. */
  readonly isReady: Effect.Effect<boolean>
  /** The command timeout in force, in milliseconds. */
  readonly commandTimeoutMillis: number
}

/**
 * The client as a service.
 *
 * @since 0.1.0
 * @category tags
 */
export class RedisClient extends Context.Tag("@cistern/redis/RedisClient")<RedisClient, Service>() {}

/**
 * How to connect.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** `redis://[user:password@]host:port/db` (or `rediss://`). Default `redis://127.0.0.1:6379`. */
  readonly url?: string | Redacted.Redacted<string> | undefined
  /** A password, when it is not in the URL. */
  readonly password?: Redacted.Redacted<string> | undefined
  /** Longest wait for one command's reply. Default 1 second. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** Longest wait for a connection (and for the first one when the layer is built). Default 5 seconds. */
  readonly connectTimeout?: Duration.DurationInput | undefined
  /** Longest delay between reconnection attempts (they back off from 50 ms). Default 2 seconds. */
  readonly reconnectMax?: Duration.DurationInput | undefined
  /** Other ioredis options; the ones above and the offline-queue settings win over them. */
  readonly ioredis?: RedisOptions | undefined
}

/**
 * Connects a client owned by the current scope. It waits up to
 * `connectTimeout` for the server; when it is not reachable by then the
 * client is returned anyway (commands fail fast with a connection error
 * until it is), so a service can start during a Redis outage.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: (options?: Options) => Effect.Effect<Service, never, Scope.Scope> = internal.make

/**
 * Provides a client as {@link RedisClient}.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options?: Options): Layer.Layer<RedisClient> => Layer.scoped(RedisClient, make(options))

/**
 * Reads the connection settings: `REDIS_URL` and `REDIS_PASSWORD` (both
 * redacted, so they never show in logs), `REDIS_COMMAND_TIMEOUT` and
 * `REDIS_CONNECT_TIMEOUT` (`"500 millis"` or plain milliseconds). Pass other
 * names to read those instead.
 *
 * @since 0.1.0
 * @category config
 */
export const config = (
  names: {
    readonly url?: string | undefined
    readonly password?: string | undefined
    readonly commandTimeout?: string | undefined
    readonly connectTimeout?: string | undefined
  } = {}
): Config.Config<Options> =>
  Config.all({
    url: Config.option(Config.redacted(names.url ?? "REDIS_URL")),
    password: Config.option(Config.redacted(names.password ?? "REDIS_PASSWORD")),
    commandTimeout: Config.option(
      PoolConfig.duration(names.commandTimeout ?? "REDIS_COMMAND_TIMEOUT", { positive: true })
    ),
    connectTimeout: Config.option(
      PoolConfig.duration(names.connectTimeout ?? "REDIS_CONNECT_TIMEOUT", { positive: true })
    )
  }).pipe(
    Config.map((o) => ({
      url: o.url._tag === "Some" ? o.url.value : undefined,
      password: o.password._tag === "Some" ? o.password.value : undefined,
      commandTimeout: o.commandTimeout._tag === "Some" ? o.commandTimeout.value : undefined,
      connectTimeout: o.connectTimeout._tag === "Some" ? o.connectTimeout.value : undefined
    }))
  )

/**
 * Like {@link layer}, with the settings read by {@link config} (or the
 * config given).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Config<Options> = config()
): Layer.Layer<RedisClient, ConfigError.ConfigError> => Layer.scoped(RedisClient, Effect.flatMap(options, make))
