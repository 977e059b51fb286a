/**
 * Floors: what a lease costs with (almost) no pool at all. They have no
 * expiry, no timeouts and no stats; they show how far each pool is from the
 * cost of the primitives it cannot avoid.
 *
 * - Effect: a `Semaphore` with one permit per item around a JS array, leased
 *   under `uninterruptibleMask` so interruption never loses an item — the
 *   cheapest interrupt-safe Effect lease.
 * - Promise: a plain JS array, `pop` to lease and `push` to return, with a
 *   FIFO of resolvers for callers that find it empty.
 * - `Effect.scoped` with one finalizer and no pool: the cost any `get` in
 *   `Effect.scoped` pays before doing anything.
 * - No lease at all: the cost of the Effect workload loop itself.
 * - Effect: a JS array with a FIFO of parked fibers (`Effect.async`), the
 *   releasing caller resuming the first one with its item — the fewest steps
 *   an Effect pool can take per contended lease, with no interruption safety.
 *
 * Scoped floors register their finalizer with `Scope.addFinalizer`, the
 * cheapest way: `Effect.addFinalizer` also snapshots the fiber's `FiberRefs`
 * and patches them back on release, which costs several µs a lease.
 */
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import type { Item, Ledger } from "../resource.js"
import type { Adapter, EffectSubject, Shape } from "../subject.js"
import { mapOfPools, type OnePool, singlePool } from "./promise.js"

interface Lot {
  readonly semaphore: Effect.Semaphore
  readonly items: Array<Item>
}

/** A `Semaphore` + array per key, made on the key's first use; returns a leasing function. */
const semaphoreLots = (shape: Shape, ledger: Ledger, keyed: boolean) => {
  const lots = new Map<number, Lot>()
  const lotOf = (key: number): Lot => {
    let lot = lots.get(key)
    if (lot === undefined) {
      lot = { semaphore: Effect.unsafeMakeSemaphore(shape.maxPerKey), items: [] }
      lots.set(key, lot)
    }
    return lot
  }
  /** Takes an item of `key` and gives `onLease` the item and its give-back effect, uninterruptibly. */
  const take = <B, E, R>(
    key: number,
    onLease: (
      item: Item,
      giveBack: Effect.Effect<void>,
      restore: <X, EX, RX>(e: Effect.Effect<X, EX, RX>) => Effect.Effect<X, EX, RX>
    ) => Effect.Effect<B, E, R>
  ): Effect.Effect<B, E, R> =>
    Effect.uninterruptibleMask((restore) => {
      const lot = lotOf(keyed ? key : 0)
      return Effect.zipRight(
        restore(lot.semaphore.take(1)),
        Effect.suspend(() => {
          const item = lot.items.pop() ?? ledger.create(key)
          const giveBack = Effect.suspend(() => {
            lot.items.push(item)
            return lot.semaphore.release(1)
          })
          return onLease(item, giveBack, restore)
        })
      )
    })
  return {
    take,
    keys: () => (keyed ? lots.size : undefined),
    close: async () => {
      lots.clear()
    }
  }
}

const semaphoreUse =
  (keyed: boolean) =>
  async (shape: Shape, ledger: Ledger): Promise<EffectSubject> => {
    const lots = semaphoreLots(shape, ledger, keyed)
    return {
      style: "effect",
      lease: (key, body) =>
        lots.take(key, (item, giveBack, restore) => Effect.onExit(restore(body(item)), () => giveBack)),
      keys: lots.keys,
      close: lots.close
    }
  }

/** Floor: `Semaphore` + array, the lease held for the body's duration. */
export const semaphoreFloor: Adapter = { label: "floor: Semaphore + array", make: semaphoreUse(false) }

/** Floor: a `Map` of `Semaphore` + array, one per key. */
export const semaphoreFloorMap: Adapter = { label: "floor: Map of Semaphore + array", make: semaphoreUse(true) }

/** Floor: `Semaphore` + array, leased in `Effect.scoped` with a finalizer giving the item back. */
export const semaphoreFloorScoped: Adapter = {
  label: "floor: Semaphore + array (scoped)",
  make: async (shape, ledger) => {
    const lots = semaphoreLots(shape, ledger, false)
    const get = (key: number) =>
      lots.take(key, (item, giveBack) =>
        Effect.flatMap(Scope.Scope, (scope) => Effect.as(Scope.addFinalizer(scope, giveBack), item))
      )
    return {
      style: "effect",
      lease: (key, body) => Effect.scoped(Effect.flatMap(get(key), body)),
      keys: lots.keys,
      close: lots.close
    }
  }
}

/** Reference: the body alone, no lease at all: what the Effect workload loop itself costs. */
export const noLease: Adapter = {
  label: "floor: no lease (Effect loop only)",
  make: async (_shape, ledger) => {
    const item = ledger.create(0)
    return {
      style: "effect",
      lease: (_key, body) => body(item),
      keys: () => undefined,
      close: async () => {}
    }
  }
}

/** Reference: `Effect.scoped` around one no-op finalizer and the body; no pool. */
export const scopedOnly: Adapter = {
  label: "floor: Effect.scoped alone",
  make: async (_shape, ledger) => {
    const item = ledger.create(0)
    const finalizer = Effect.flatMap(Scope.Scope, (scope) => Scope.addFinalizer(scope, Effect.void))
    return {
      style: "effect",
      lease: (_key, body) => Effect.scoped(Effect.zipRight(finalizer, body(item))),
      keys: () => undefined,
      close: async () => {}
    }
  }
}

/** Floor: a JS array with a FIFO of parked fibers, each resumed with the item it is handed. */
export const asyncFifoFloor: Adapter = {
  label: "floor: Effect.async FIFO + array",
  make: async (shape, ledger) => {
    const items: Array<Item> = []
    const waiters: Array<(effect: Effect.Effect<Item>) => void> = []
    let size = 0
    const take = (key: number): Effect.Effect<Item> =>
      Effect.suspend(() => {
        const item = items.pop()
        if (item !== undefined) return Effect.succeed(item)
        if (size < shape.maxPerKey) {
          size++
          return Effect.succeed(ledger.create(key))
        }
        return Effect.async<Item>((resume) => {
          waiters.push(resume)
        })
      })
    const giveBack = (item: Item): Effect.Effect<void> =>
      Effect.sync(() => {
        const next = waiters.shift()
        if (next === undefined) items.push(item)
        else next(Effect.succeed(item))
      })
    return {
      style: "effect",
      lease: (key, body) => Effect.flatMap(take(key), (item) => Effect.zipRight(body(item), giveBack(item))),
      keys: () => undefined,
      close: async () => {
        items.length = 0
      }
    }
  }
}

const arrayPool = (key: number, shape: Shape, ledger: Ledger): OnePool => {
  const items: Array<Item> = []
  const waiters: Array<(item: Item) => void> = []
  let size = 0
  return {
    acquire: () => {
      const item = items.pop()
      if (item !== undefined) return item
      if (size < shape.maxPerKey) {
        size++
        return ledger.create(key)
      }
      return new Promise<Item>((resolve) => waiters.push(resolve))
    },
    release: (item) => {
      const next = waiters.shift()
      if (next === undefined) items.push(item)
      else next(item)
    },
    close: async () => {
      items.length = 0
    }
  }
}

/** Floor: a plain JS array with a FIFO of waiting resolvers. */
export const arrayFloor = singlePool("floor: JS array", arrayPool)

/** Floor: a `Map` of plain JS arrays, one per key. */
export const arrayFloorMap = mapOfPools("floor: Map of JS arrays", arrayPool)
