/**
 * The pools an application runs, by name. Every pool made with a `name` while
 * a `PoolRegistry` is provided registers itself for as long as its scope is
 * open, so an admin API can list them, read their stats and run cleanups.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { CleanupReport, ItemDetails, PoolStats } from "./PoolStats.js"

/**
 * What the registry knows of one pool.
 *
 * @since 0.1.0
 * @category models
 */
export interface Entry {
  readonly name: string
  readonly stats: Effect.Effect<PoolStats>
  readonly items: Effect.Effect<ReadonlyArray<ItemDetails>>
  readonly cleanup: Effect.Effect<CleanupReport>
}

/**
 * What the registry offers: registering a pool for the life of a scope, and listing the pools registered.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /**
   * Adds an entry until the current scope closes. A second pool with the same
   * name replaces the first in the listing until one of them closes.
   */
  readonly register: (entry: Entry) => Effect.Effect<void, never, Scope.Scope>
  /** Every registered pool, in registration order. */
  readonly list: Effect.Effect<ReadonlyArray<Entry>>
  /** One pool by name. */
  readonly get: (name: string) => Effect.Effect<Option.Option<Entry>>
}

/**
 * The service tag of the registry of named pools.
 *
 * @since 0.1.0
 * @category tags
 */
export class PoolRegistry extends Context.Tag("@cistern/pool/PoolRegistry")<PoolRegistry, Service>() {}

/**
 * Makes an empty registry.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Service> = Effect.sync(() => {
  const entries = new Map<string, Entry>()
  return PoolRegistry.of({
    register: (entry) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          if (entries.has(entry.name)) {
            entries.delete(entry.name) // re-insert: the newest is listed last
          }
          entries.set(entry.name, entry)
        }),
        () =>
          Effect.sync(() => {
            if (entries.get(entry.name) === entry) entries.delete(entry.name)
          })
      ),
    list: Effect.sync(() => Array.from(entries.values())),
    get: (name) => Effect.sync(() => Option.fromNullable(entries.get(name)))
  })
})

/**
 * Provides an in-memory registry.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<PoolRegistry> = Layer.effect(PoolRegistry, make)
