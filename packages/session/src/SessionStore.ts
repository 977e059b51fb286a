/**
 * Typed sessions with a TTL each, secondary indexes and atomic updates: the
 * state a relay or a gateway keeps per conversation (its user, its upstream
 * account, request and error counts, last activity).
 *
 * A store is a service of your own tag, provided by a layer: the memory store
 * here, or a Redis store (`@cistern/redis`) shared by every instance of a
 * service. Values are checked against your `Schema` on the way in and out.
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { SessionStore } from "@cistern/session"
 *
 * const Session = Schema.Struct({ userId: Schema.String, requests: Schema.Number })
 *
 * class Sessions extends SessionStore.Tag("app/Sessions")<Sessions, typeof Session.Type, "user">() {}
 *
 * const SessionsLive = SessionStore.layerMemory(Sessions, {
 *   schema: Session,
 *   capacity: 10_000,
 *   ttl: "1 hour",
 *   indexes: { user: (s) => s.userId }
 * })
 *
 * const program = Effect.gen(function* () {
 *   const sessions = yield* Sessions
 *   yield* sessions.getOrCreate("s-1", Effect.succeed({ userId: "u-1", requests: 0 }))
 *   yield* sessions.update("s-1", (s) => ({ ...s, requests: s.requests + 1 }))
 *   return yield* sessions.findBy("user", "u-1")
 * }).pipe(Effect.provide(SessionsLive))
 * ```
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Option from "effect/Option"
import type * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as internal from "./internal/memoryStore.js"
import type { Indexes } from "./SessionCache.js"
import type { SessionSchemaError } from "./SessionError.js"
import type { SessionStats } from "./SessionStats.js"

/**
 * Marks a value as a session store.
 *
 * @since 0.1.0
 * @category symbols
 */
export const TypeId: unique symbol = internal.TypeId as TypeId_

/**
 * The type of {@link TypeId}.
 *
 * @since 0.1.0
 * @category symbols
 */
export type TypeId = typeof TypeId

type TypeId_ = typeof TypeId

/**
 * A TTL for one call, overriding the store's default.
 *
 * @since 0.1.0
 * @category models
 */
export interface TtlOptions {
  readonly ttl?: Duration.DurationInput | undefined
}

/**
 * A session found through an index: its id, value and expiry (epoch millis of
 * the store's `Clock`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Found<A> {
  readonly id: string
  readonly value: A
  readonly expiresAt: number
}

/**
 * Sessions of type `A` by id, with secondary indexes named `I`.
 *
 * A session lives until its TTL passes (the store's `ttl`, or the `ttl` of the
 * call that wrote it); after that it is never returned and its index entries
 * are gone with it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionStore<A, I extends string = never> {
  readonly [TypeId]: TypeId

  /** The session `id`, if it is live. */
  readonly get: (id: string) => Effect.Effect<Option.Option<A>, SessionSchemaError>

  /**
   * The session `id`, created by `create` (and stored with `options.ttl` or
   * the default) when it is not live.
   */
  readonly getOrCreate: <E, R>(
    id: string,
    create: Effect.Effect<A, E, R>,
    options?: TtlOptions
  ) => Effect.Effect<A, SessionSchemaError | E, R>

  /** Stores `value` as session `id`, expiring after `options.ttl` or the default. */
  readonly set: (id: string, value: A, options?: TtlOptions) => Effect.Effect<void, SessionSchemaError>

  /**
   * Replaces session `id` by `f` of its value, atomically: concurrent updates
   * of one session never lose one another (across instances too, for a store
   * shared through Redis). `f` must be pure: it may run again when another
   * writer got there first. The session keeps its expiry unless `options.ttl`
   * is given. `None` when there is no live session.
   */
  readonly update: (
    id: string,
    f: (value: A) => A,
    options?: TtlOptions
  ) => Effect.Effect<Option.Option<A>, SessionSchemaError>

  /** Extends session `id` to expire `options.ttl` (or the default) from now; whether it was live. */
  readonly touch: (id: string, options?: TtlOptions) => Effect.Effect<boolean, SessionSchemaError>

  /** Removes session `id` and its index entries. */
  readonly delete: (id: string) => Effect.Effect<void>

  /**
   * Live sessions whose index `index` has `value`. A session whose stored
   * value fails the schema is left out (and counted), never failing the rest.
   */
  readonly findBy: (index: I, value: string) => Effect.Effect<ReadonlyArray<Found<A>>>

  /** Counters and state; see {@link SessionStats}. */
  readonly stats: Effect.Effect<SessionStats>
}

/**
 * What every store is made from: the schema of a session, its default TTL and
 * its secondary indexes.
 *
 * @since 0.1.0
 * @category models
 */
export interface CommonOptions<A, I extends string> {
  /** The session's schema: values are encoded with it before storing and decoded after reading. */
  readonly schema: Schema.Schema<A, any, never>
  /** Default TTL of a session. Default 1 hour. */
  readonly ttl?: Duration.DurationInput | undefined
  /** Secondary indexes: a function per name giving a session's value under it (or `undefined`). */
  readonly indexes?: Indexes<A, I> | undefined
  /** The store's name in stats, logs and metrics (`store` label). Default `"sessions"`. */
  readonly name?: string | undefined
  /** How often metrics are sampled. Default 5 seconds. */
  readonly metricsInterval?: Duration.DurationInput | undefined
}

/**
 * Options of the memory store.
 *
 * @since 0.1.0
 * @category models
 */
export interface MemoryOptions<A, I extends string> extends CommonOptions<A, I> {
  /** Sessions held at most; beyond it the least recently used goes. Default 10,000. */
  readonly capacity?: number | undefined
  /** How often the cleanup fiber removes expired sessions. Default 1 minute. */
  readonly cleanupInterval?: Duration.DurationInput | undefined
}

/**
 * A tag class for a store of your own:
 * `class Sessions extends SessionStore.Tag("app/Sessions")<Sessions, Session, "user" | "apiKey">() {}`.
 *
 * @since 0.1.0
 * @category tags
 */
export const Tag =
  <const Id extends string>(id: Id) =>
  <Self, A, I extends string = never>(): Context.TagClass<Self, Id, SessionStore<A, I>> =>
    Context.Tag(id)<Self, SessionStore<A, I>>()

/**
 * Makes a memory store owned by the current scope: an LRU bounded by
 * `capacity`, with O(1) get and set and one cleanup fiber (stopped with the
 * scope) removing expired sessions. Sessions live in this process only.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <A, I extends string = never>(
  options: MemoryOptions<A, I>
) => Effect.Effect<SessionStore<A, I>, never, Scope.Scope> = internal.make

/**
 * Provides a memory store as the service `tag`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory = <Self, A, I extends string>(
  tag: Context.Tag<Self, SessionStore<A, I>>,
  options: MemoryOptions<A, I>
): Layer.Layer<Self> => Layer.scoped(tag, make(options))

/**
 * Whether a value is a session store.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isSessionStore = (u: unknown): u is SessionStore<unknown, string> =>
  typeof u === "object" && u !== null && TypeId in u
