/**
 * Sticky sessions over a keyed pool: a session is pinned to one pool key (an
 * upstream account, a target host) and keeps it on every request while the
 * key is healthy and the pin is younger than the affinity TTL. When the key's
 * circuit is open, the key is gone, or the TTL has passed, your `choose`
 * function picks a key and the session is re-pinned.
 *
 * Pins are kept in a `SessionStore` of {@link Pin}s, so with a Redis store
 * every instance of a service resolves a session to the same key. Health is
 * read from the pool's public `stats` (its per-key circuit state), so any
 * `KeyedPool` of `@cistern/pool` works.
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { KeyedPool } from "@cistern/pool"
 * import { Affinity, SessionStore } from "@cistern/session"
 *
 * const program = Effect.gen(function* () {
 *   const accounts = ["acct-a", "acct-b", "acct-c"]
 *   const pool = yield* KeyedPool.make({
 *     acquire: (account: string) => Effect.succeed({ account }),
 *     describeKey: (account) => account,
 *     breaker: { failures: 3, reset: "60 seconds" }
 *   })
 *   const pins = yield* SessionStore.make({ schema: Affinity.Pin(Schema.String) })
 *   const affinity = Affinity.make({
 *     pool,
 *     store: pins,
 *     describeKey: (account: string) => account,
 *     ttl: "30 minutes",
 *     choose: ({ isOpen }) => Effect.succeed(accounts.find((a) => !isOpen(a)) ?? accounts[0]!)
 *   })
 *   const { key } = yield* affinity.resolve("session-1")
 *   return yield* pool.use(key, (conn) => Effect.succeed(conn.account))
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */

import type { PoolStats } from "@cistern/pool/PoolStats"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as internal from "./internal/affinity.js"
import type { SessionSchemaError } from "./SessionError.js"
import type { SessionStore } from "./SessionStore.js"

/**
 * A session's pin: its key, when it was pinned, and until when it holds
 * (epoch millis of the `Clock`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Pin<K> {
  readonly key: K
  readonly pinnedAt: number
  readonly until: number
}

/**
 * The schema of a pin whose key has schema `key` (`Schema.String` for string
 * keys): build the pin store with it.
 *
 * @since 0.1.0
 * @category models
 */
export const Pin = <K, KI>(key: Schema.Schema<K, KI, never>): Schema.Schema<Pin<K>, Pin<KI>, never> =>
  Schema.Struct({ key, pinnedAt: Schema.Number, until: Schema.Number })

/**
 * Why a session was (re)pinned, or `"kept"` when it kept its key.
 *
 * @since 0.1.0
 * @category models
 */
export type Reason = "kept" | "new" | "expired" | "open" | "gone"

/**
 * The key a request of a session should use, and why.
 *
 * @since 0.1.0
 * @category models
 */
export interface Resolved<K> {
  readonly key: K
  readonly reason: Reason
  /** The key the session had before, when it was re-pinned away from one. */
  readonly previous: Option.Option<K>
}

/**
 * What `choose` knows when it picks a key.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChooseContext<K> {
  readonly sessionId: string
  readonly reason: Exclude<Reason, "kept">
  /** The key the session was pinned to, if any (an open, gone or expired one). */
  readonly previous: Option.Option<K>
  /** Whether a key's circuit is open right now (from the same stats snapshot). */
  readonly isOpen: (key: K) => boolean
}

/**
 * The pool whose health decides: any `KeyedPool` (only its `stats` are read).
 *
 * @since 0.1.0
 * @category models
 */
export interface HealthSource {
  readonly stats: Effect.Effect<PoolStats>
}

/**
 * How to pin sessions.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options<K, E, R> {
  readonly pool: HealthSource
  /** Where pins live: a store of `Pin(keySchema)`; a Redis store shares them across instances. */
  readonly store: SessionStore<Pin<K>, never>
  /**
   * How the pool shows a key in its stats: pass the same function as the
   * pool's `describeKey` option.
   */
  readonly describeKey: (key: K) => string
  /** How long a session keeps its key at most. */
  readonly ttl: Duration.DurationInput
  /** Picks a key for a session that has none, or must leave its own. */
  readonly choose: (context: ChooseContext<K>) => Effect.Effect<K, E, R>
  /** Whether a key still exists (an account not removed). Default: every key does. */
  readonly isKnown?: ((key: K) => boolean) | undefined
}

/**
 * Resolves and pins sessions to keys.
 *
 * @since 0.1.0
 * @category models
 */
export interface Affinity<K, E, R> {
  /**
   * The key for a request of `sessionId`: its pinned key while that key's
   * circuit is not open, it is known, and the pin is within the TTL;
   * otherwise a key from `choose`, pinned for the TTL from now.
   */
  readonly resolve: (sessionId: string) => Effect.Effect<Resolved<K>, E | SessionSchemaError, R>
  /** Pins `sessionId` to `key` for the TTL from now. */
  readonly pin: (sessionId: string, key: K) => Effect.Effect<void, SessionSchemaError>
  /** Forgets the pin of `sessionId`. */
  readonly unpin: (sessionId: string) => Effect.Effect<void>
  /** The pin of `sessionId`, if it has one within its TTL. */
  readonly current: (sessionId: string) => Effect.Effect<Option.Option<Pin<K>>, SessionSchemaError>
}

/**
 * Makes an affinity over `options.pool` and `options.store`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: <K, E = never, R = never>(options: Options<K, E, R>) => Affinity<K, E, R> = internal.make
