/** generic-pool 3: one pool, and a `Map` of pools for the keyed scenarios. */
import { createPool } from "generic-pool"
import type { Item } from "../resource.js"
import { type MakeOne, mapOfPools, singlePool } from "./promise.js"

const makeOne: MakeOne = (key, shape, ledger) => {
  const pool = createPool<Item>(
    {
      create: async () => ledger.create(key),
      destroy: async () => ledger.destroy()
    },
    {
      max: shape.maxPerKey,
      min: 0,
      ...(shape.idle === undefined
        ? {}
        : { idleTimeoutMillis: shape.idle.timeoutMs, evictionRunIntervalMillis: shape.idle.checkMs })
    }
  )
  return {
    acquire: () => pool.acquire(),
    release: (item) => pool.release(item),
    close: async () => {
      await pool.drain()
      await pool.clear()
    }
  }
}

/** generic-pool, one pool. */
export const genericPool = singlePool("generic-pool", makeOne)

/** A `Map` of generic-pools, one per key. */
export const genericPoolMap = mapOfPools("generic-pool (Map of pools)", makeOne)
