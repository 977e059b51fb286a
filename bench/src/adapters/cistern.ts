/**
 * Cistern's pools: `Pool` leased through `use` and through `get` in
 * `Effect.scoped`, and `KeyedPool` through `use`.
 */
import { KeyedPool, Pool } from "@cistern/pool"
import * as Effect from "effect/Effect"
import type { Adapter, Shape } from "../subject.js"
import { acquireItem, buildScoped } from "./scoped.js"

const timings = (shape: Shape) =>
  shape.idle === undefined ? {} : { idleTimeout: shape.idle.timeoutMs, cleanupInterval: shape.idle.checkMs }

const makePool = (shape: Shape, acquire: ReturnType<typeof acquireItem>) =>
  buildScoped(Pool.make({ acquire: acquire(0), max: shape.maxPerKey, ...timings(shape) }))

/** Cistern `Pool`, leased with `pool.use(f)`. */
export const cisternPoolUse: Adapter = {
  label: "Cistern Pool (use)",
  make: async (shape, ledger) => {
    const { value: pool, close } = await makePool(shape, acquireItem(ledger))
    return {
      style: "effect",
      lease: (_key, body) => pool.use(body),
      keys: () => undefined,
      close
    }
  }
}

/** Cistern `Pool`, leased with `Effect.scoped(pool.get)`. */
export const cisternPoolGet: Adapter = {
  label: "Cistern Pool (get, scoped)",
  make: async (shape, ledger) => {
    const { value: pool, close } = await makePool(shape, acquireItem(ledger))
    return {
      style: "effect",
      lease: (_key, body) => Effect.scoped(Effect.flatMap(pool.get, body)),
      keys: () => undefined,
      close
    }
  }
}

/** Cistern `KeyedPool` with shared leases: each item lent to up to `shape.leasesPerItem` callers at once. */
export const cisternKeyedShared: Adapter = {
  label: "Cistern KeyedPool (use, shared)",
  make: async (shape, ledger) => {
    const { value: pool, close } = await buildScoped(
      KeyedPool.make({
        acquire: acquireItem(ledger),
        maxPerKey: shape.maxPerKey,
        maxLeasesPerItem: shape.leasesPerItem ?? 1,
        maxTotal: Number.POSITIVE_INFINITY,
        maxKeys: Number.POSITIVE_INFINITY,
        ...timings(shape)
      })
    )
    return {
      style: "effect",
      lease: (key, body) => pool.use(key, body),
      keys: () => Effect.runSync(pool.stats).keys,
      close
    }
  }
}

/** Cistern `KeyedPool`, unbounded in keys and total like its peers, leased with `pool.use(key, f)`. */
export const cisternKeyedPool: Adapter = {
  label: "Cistern KeyedPool (use)",
  make: async (shape, ledger) => {
    const { value: pool, close } = await buildScoped(
      KeyedPool.make({
        acquire: acquireItem(ledger),
        maxPerKey: shape.maxPerKey,
        maxTotal: Number.POSITIVE_INFINITY,
        maxKeys: Number.POSITIVE_INFINITY,
        ...timings(shape)
      })
    )
    return {
      style: "effect",
      lease: (key, body) => pool.use(key, body),
      keys: () => Effect.runSync(pool.stats).keys,
      close
    }
  }
}
