/**
 * A `SessionStore` shared by every instance of a service through Redis.
 *
 * Redis is the source of truth. In front of it, each instance keeps a bounded
 * LRU of the sessions it read or wrote, served without asking Redis for
 * `cacheTtl` (read-through). Writes go to memory at once and reach Redis in
 * batches — a pipeline of up to `batchSize` writes whenever that many are
 * waiting, and every `flushInterval` (or on your `flushSchedule`) — or one by
 * one before the call returns with `writeMode: "write-through"`. `update` and
 * the creation in `getOrCreate` always go to Redis at once, so they are
 * atomic across instances. Secondary indexes live in Redis (sorted sets
 * scored by expiry), so `findBy` finds sessions written by any instance. All
 * keys start with `prefix`; sessions and index keys carry Redis TTLs.
 *
 * When Redis is unreachable (refused, closed, or silent past the command
 * timeout) the store switches to this instance's memory: no call waits longer
 * than one command timeout, and the first failing call is the only one that
 * waits at all. Writes are kept (at most `maxPending`; beyond it the oldest is
 * dropped and counted) and replayed as soon as a probe (`PING` every
 * `probeInterval`) gets an answer. The switch shows in `stats.fallback`, the
 * `cistern_session_fallback` gauge, and one log line each way.
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { SessionStore } from "@cistern/session"
 * import { RedisSessionStore } from "@cistern/redis"
 *
 * const Session = Schema.Struct({ userId: Schema.String, account: Schema.String, requests: Schema.Number })
 * class Sessions extends SessionStore.Tag("app/Sessions")<Sessions, typeof Session.Type, "user">() {}
 *
 * // REDIS_URL and REDIS_PASSWORD are read as redacted values.
 * const SessionsLive = RedisSessionStore.layerConfig(Sessions, {
 *   schema: Session,
 *   ttl: "1 hour",
 *   prefix: "relay:sessions:",
 *   indexes: { user: (s) => s.userId }
 * })
 * ```
 *
 * @since 0.1.0
 */
import type { SessionStore } from "@cistern/session"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/store.js"
import * as RedisClient from "./RedisClient.js"

/**
 * Options of a Redis store, beyond the schema, TTL and indexes every store has.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<A, I extends string> extends SessionStore.CommonOptions<A, I> {
  /** Prefix of every key (sessions `<prefix>s:<id>`, indexes `<prefix>i:<name>:<value>`). Default `"cistern:session:"`. */
  readonly prefix?: string | undefined
  /** Sessions kept in this instance's memory at most. Default 10,000. */
  readonly cacheCapacity?: number | undefined
  /** How long a cached session is served without asking Redis. Default 5 seconds. */
  readonly cacheTtl?: Duration.DurationInput | undefined
  /** `"write-behind"` (default): writes reach Redis in batches; `"write-through"`: before the call returns. */
  readonly writeMode?: "write-behind" | "write-through" | undefined
  /** Writes per pipeline; a full batch is written at once. Default 100. */
  readonly batchSize?: number | undefined
  /** How often waiting writes are flushed. Default 1 second. */
  readonly flushInterval?: Duration.DurationInput | undefined
  /** When waiting writes are flushed, instead of every `flushInterval`. */
  readonly flushSchedule?: Schedule.Schedule<unknown, unknown> | undefined
  /** Writes kept while Redis is unreachable at most; beyond it the oldest is dropped (counted). Default 10,000. */
  readonly maxPending?: number | undefined
  /** How often an unreachable Redis is probed with `PING`. Default 1 second. */
  readonly probeInterval?: Duration.DurationInput | undefined
  /** How often expired sessions are swept from memory. Default 1 minute. */
  readonly cleanupInterval?: Duration.DurationInput | undefined
}

/**
 * Makes a Redis store over the `RedisClient` in the context, owned by the
 * current scope; closing it flushes what is waiting (while Redis answers).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, I extends string = never>(
  options: Options<A, I>
): Effect.Effect<SessionStore.SessionStore<A, I>, never, Scope.Scope | RedisClient.RedisClient> =>
  Effect.flatMap(RedisClient.RedisClient, (client) => internal.make(options, client))

/**
 * Provides a Redis store as the service `tag`, over the `RedisClient` in the
 * context (so several stores can share one client).
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <Self, A, I extends string>(
  tag: Context.Tag<Self, SessionStore.SessionStore<A, I>>,
  options: Options<A, I>
): Layer.Layer<Self, never, RedisClient.RedisClient> => Layer.scoped(tag, make(options))

/**
 * Provides a Redis store as the service `tag`, with a client of its own
 * whose URL and password are read from `Config` as redacted values
 * (`REDIS_URL`, `REDIS_PASSWORD`, `REDIS_COMMAND_TIMEOUT`; see
 * {@link RedisClient.config}).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = <Self, A, I extends string>(
  tag: Context.Tag<Self, SessionStore.SessionStore<A, I>>,
  options: Options<A, I> & { readonly client?: Config.Config<RedisClient.Options> | undefined }
): Layer.Layer<Self, ConfigError.ConfigError> =>
  layer(tag, options).pipe(Layer.provide(RedisClient.layerConfig(options.client)))
