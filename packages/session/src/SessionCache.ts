/**
 * The bounded, indexed, expiring map every session store keeps in memory: the
 * whole store for `SessionStore.layerMemory`, the cache in front of storage
 * for a Redis store. Exported for authors of other backends; applications use
 * a `SessionStore`.
 *
 * It is a plain synchronous object (call it inside `Effect.sync`): get, set
 * and delete are O(1) (plus O(indexes)); expired entries are found through a
 * heap, never a scan.
 *
 * @since 0.1.0
 */
import * as internal from "./internal/cache.js"

/**
 * One cached session: its value, when it expires (epoch millis of the store's
 * `Clock`), until when it may be served without asking storage
 * (`freshUntil`), and its index values in the order of the declared indexes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry<A> {
  readonly id: string
  readonly value: A
  readonly expiresAt: number
  readonly freshUntil: number
  readonly indexValues: ReadonlyArray<string | undefined>
}

/**
 * Functions that give a session's value under each secondary index (a user
 * id, an account, an API key), or `undefined` when it has none.
 *
 * @since 0.1.0
 * @category models
 */
export type Indexes<A, I extends string> = { readonly [K in I]: (value: A) => string | undefined }

/**
 * A bounded LRU of sessions with expiry times and secondary indexes.
 *
 * @since 0.1.0
 * @category models
 */
export interface SessionCache<A> {
  /** Entries held now (expired ones not yet swept included). */
  readonly size: number
  readonly capacity: number
  /** Entries pushed out by the capacity bound so far. */
  readonly evictions: number
  /** Entries removed because they expired so far. */
  readonly expired: number
  /** The declared index names, in order. */
  readonly indexList: ReadonlyArray<string>
  /** The index values of `value`, in the order of `indexList`. */
  readonly indexValuesOf: (value: A) => ReadonlyArray<string | undefined>
  /** The live entry of `id`, made most recently used; an expired one is removed. */
  readonly get: (id: string, now: number) => Entry<A> | undefined
  /** Like `get`, without touching the LRU order or removing anything. */
  readonly peek: (id: string, now: number) => Entry<A> | undefined
  /** Stores an entry as the most recently used, evicting the least recently used beyond `capacity`. */
  readonly set: (
    id: string,
    value: A,
    expiresAt: number,
    freshUntil: number,
    indexValues?: ReadonlyArray<string | undefined>
  ) => Entry<A>
  /** Removes `id`; whether it was there. */
  readonly delete: (id: string) => boolean
  /** Live entries whose index `name` has `value`. */
  readonly findBy: (name: string, value: string, now: number) => Array<Entry<A>>
  /** Whether `name` is a declared index. */
  readonly hasIndex: (name: string) => boolean
  /** Removes every entry expired at `now`; returns how many. */
  readonly sweep: (now: number) => number
  /** Every entry, least recently used first. */
  readonly values: () => IterableIterator<Entry<A>>
}

/**
 * Makes an empty cache. `onRemove` hears of every eviction and expiry (not of
 * explicit deletes). A `capacity` that is not a positive integer is a defect
 * (`RangeError`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A>(options: {
  readonly capacity: number
  readonly indexes?: { readonly [name: string]: (value: A) => string | undefined } | undefined
  readonly onRemove?: ((entry: Entry<A>, reason: "evicted" | "expired") => void) | undefined
}): SessionCache<A> => new internal.CacheImpl<A>(options.capacity, options.indexes ?? {}, options.onRemove)
