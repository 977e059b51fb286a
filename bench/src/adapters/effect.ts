/**
 * Effect's own `Pool` and `KeyedPool` (the baselines), leased the only way
 * they offer: `get` inside `Effect.scoped`.
 */
import * as Effect from "effect/Effect"
import * as KeyedPool from "effect/KeyedPool"
import * as Pool from "effect/Pool"
import type { Adapter } from "../subject.js"
import { acquireItem, buildScoped } from "./scoped.js"

/** Effect `Pool.make({ size })`, or `Pool.makeWithTTL({ min: 0 })` when the scenario wants idle expiry. */
export const effectPool: Adapter = {
  label: "Effect Pool",
  make: async (shape, ledger) => {
    const acquire = acquireItem(ledger)(0)
    const { value: pool, close } = await buildScoped(
      shape.idle === undefined
        ? Pool.make({ acquire, size: shape.maxPerKey })
        : Pool.makeWithTTL({ acquire, min: 0, max: shape.maxPerKey, timeToLive: shape.idle.timeoutMs })
    )
    return {
      style: "effect",
      lease: (_key, body) => Effect.scoped(Effect.flatMap(pool.get, body)),
      keys: () => undefined,
      close
    }
  }
}

/**
 * Effect `Pool.makeWithTTL` with `concurrency`: each item lent to up to
 * `shape.leasesPerItem` fibers at once, a new one made only when every item
 * is fully used (`targetUtilization: 1`), up to `shape.maxPerKey`; items are
 * made on demand (`min: 0`, a TTL longer than any run) as Cistern's are.
 */
export const effectPoolShared: Adapter = {
  label: "Effect Pool (concurrency)",
  make: async (shape, ledger) => {
    const acquire = acquireItem(ledger)(0)
    const { value: pool, close } = await buildScoped(
      Pool.makeWithTTL({
        acquire,
        min: 0,
        max: shape.maxPerKey,
        concurrency: shape.leasesPerItem ?? 1,
        targetUtilization: 1,
        timeToLive: "1 hour"
      })
    )
    return {
      style: "effect",
      lease: (_key, body) => Effect.scoped(Effect.flatMap(pool.get, body)),
      keys: () => undefined,
      close
    }
  }
}

/** Effect `KeyedPool.make({ size })`, or `KeyedPool.makeWithTTL({ min: 0 })` for idle expiry. It does not expose its keys. */
export const effectKeyedPool: Adapter = {
  label: "Effect KeyedPool",
  make: async (shape, ledger) => {
    const acquire = acquireItem(ledger)
    const max = shape.maxPerKey
    const { value: pool, close } = await buildScoped(
      shape.idle === undefined
        ? KeyedPool.make({ acquire, size: max })
        : KeyedPool.makeWithTTL({ acquire, min: () => 0, max: () => max, timeToLive: shape.idle.timeoutMs })
    )
    return {
      style: "effect",
      lease: (key, body) => Effect.scoped(Effect.flatMap(KeyedPool.get(pool, key), body)),
      keys: () => undefined,
      close
    }
  }
}
