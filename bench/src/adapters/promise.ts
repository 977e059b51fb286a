/**
 * Adapts a promise-style pool to a {@link PromiseSubject}: one pool, or — for
 * the keyed scenarios — a `Map` of pools created on a key's first use, which
 * is what a user of a single-pool library writes for per-tenant limits.
 */
import type { Item, Ledger } from "../resource.js"
import type { Adapter, PromiseSubject, Shape } from "../subject.js"

/** One pool of a promise-based library. */
export interface OnePool {
  readonly acquire: () => Item | Promise<Item>
  readonly release: (item: Item) => unknown
  readonly close: () => Promise<void>
}

/** How to make one pool for `key`. */
export type MakeOne = (key: number, shape: Shape, ledger: Ledger) => OnePool

/** A single pool; keys are ignored. */
export const singlePool = (label: string, makeOne: MakeOne): Adapter => ({
  label,
  make: async (shape, ledger): Promise<PromiseSubject> => {
    const pool = makeOne(0, shape, ledger)
    return {
      style: "promise",
      acquire: () => pool.acquire(),
      release: (_key, item) => pool.release(item),
      keys: () => undefined,
      close: pool.close
    }
  }
})

/** A `Map` from key to pool. Pools are never removed: the libraries have no notion of an empty key. */
export const mapOfPools = (label: string, makeOne: MakeOne): Adapter => ({
  label,
  make: async (shape, ledger): Promise<PromiseSubject> => {
    const pools = new Map<number, OnePool>()
    const poolOf = (key: number): OnePool => {
      let pool = pools.get(key)
      if (pool === undefined) {
        pool = makeOne(key, shape, ledger)
        pools.set(key, pool)
      }
      return pool
    }
    return {
      style: "promise",
      acquire: (key) => poolOf(key).acquire(),
      release: (key, item) => pools.get(key)!.release(item),
      keys: () => pools.size,
      close: async () => {
        await Promise.all(Array.from(pools.values(), (pool) => pool.close()))
        pools.clear()
      }
    }
  }
})
