/** tarn 3: one pool, and a `Map` of pools for the keyed scenarios. */
import { Pool } from "tarn"
import type { Item } from "../resource.js"
import { type MakeOne, mapOfPools, singlePool } from "./promise.js"

const makeOne: MakeOne = (key, shape, ledger) => {
  const pool = new Pool<Item>({
    create: async () => ledger.create(key),
    destroy: () => ledger.destroy(),
    min: 0,
    max: shape.maxPerKey,
    ...(shape.idle === undefined
      ? {}
      : { idleTimeoutMillis: shape.idle.timeoutMs, reapIntervalMillis: shape.idle.checkMs })
  })
  return {
    acquire: () => pool.acquire().promise,
    release: (item) => pool.release(item),
    close: async () => {
      await pool.destroy()
    }
  }
}

/** tarn, one pool. */
export const tarn = singlePool("tarn", makeOne)

/** A `Map` of tarn pools, one per key. */
export const tarnMap = mapOfPools("tarn (Map of pools)", makeOne)
