/**
 * A model-based property test of shared leases: random interleavings of get /
 * release / a connection failure in a lease / invalidate / creation success
 * or failure / interrupt / clock advance over two keys, with
 * `maxLeasesPerItem` 2, a key and a total limit. After every step: no item
 * holds more than 2 leases, item counts stay within the limits, the pool's
 * lease counts agree with the callers actually holding, waiters of a key are
 * served first come first served, a broken or invalidated item takes no new
 * lease and is destroyed exactly when its last lease ends, and an item with a
 * lease is never destroyed.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FastCheck as fc, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { advancing, completing, pick, picking } from "./utils/model.js"
import { settle } from "./utils/resource.js"

const keys = ["a", "b"] as const
const maxLeasesPerItem = 2
const maxPerKey = 2
const maxTotal = 3

type Command =
  | { readonly _tag: "Get"; readonly key: number }
  | { readonly _tag: "Release"; readonly pick: number }
  | { readonly _tag: "Break"; readonly pick: number }
  | { readonly _tag: "Invalidate"; readonly pick: number }
  | { readonly _tag: "Interrupt"; readonly pick: number }
  | { readonly _tag: "Complete"; readonly pick: number; readonly ok: boolean }
  | { readonly _tag: "Advance"; readonly seconds: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ _tag: fc.constant("Get" as const), key: fc.constantFrom(0, 0, 0, 1) }) },
  { weight: 4, arbitrary: picking("Release") },
  { weight: 1, arbitrary: picking("Break") },
  { weight: 1, arbitrary: picking("Invalidate") },
  { weight: 1, arbitrary: picking("Interrupt") },
  { weight: 3, arbitrary: completing },
  { weight: 1, arbitrary: advancing }
)

interface Conn {
  readonly key: string
  readonly id: number
}

interface Caller {
  readonly arrival: number
  readonly key: string
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
  /** Resolved with how the lease ends: `true` normally, `false` with a connection failure. */
  readonly release: Deferred.Deferred<boolean>
  conn: Conn | undefined
}

/** A connection failure the default classifier recognises. */
const reset = () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" })

const runCommands = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function* () {
    const gates: Array<Deferred.Deferred<boolean>> = []
    const alive = new Set<number>()
    /** Items that may take no new lease: broken by a connection failure, or invalidated. */
    const closed = new Set<number>()
    const violations: Array<string> = []
    let serial = 0
    const acquire = (key: string) =>
      Effect.gen(function* () {
        const gate = yield* Deferred.make<boolean>()
        gates.push(gate)
        const ok = yield* Deferred.await(gate).pipe(
          Effect.ensuring(Effect.sync(() => gates.splice(gates.indexOf(gate), 1)))
        )
        if (!ok) return yield* Effect.fail("refused" as const)
        return yield* Effect.acquireRelease(
          Effect.sync((): Conn => {
            const id = ++serial
            alive.add(id)
            return { key, id }
          }),
          (conn) => Effect.sync(() => alive.delete(conn.id))
        )
      })
    const poolScope = yield* Scope.make()
    const pool = yield* KeyedPool.make({
      acquire,
      maxLeasesPerItem,
      maxPerKey,
      maxTotal,
      acquireTimeout: "10 seconds",
      idleTimeout: "1 minute",
      cleanupInterval: "20 seconds",
      drainTimeout: 0,
      createBackoff: false,
      describeKey: (k) => k
    }).pipe(Scope.extend(poolScope))

    const callers: Array<Caller> = []
    const live = () => callers.filter((c) => c.fiber.unsafePoll() === null)
    const holding = () => live().filter((c) => c.conn !== undefined)

    for (let step = 0; step < commands.length; step++) {
      const cmd = commands[step]
      switch (cmd._tag) {
        case "Get": {
          const key = keys[cmd.key]
          const release = yield* Deferred.make<boolean>()
          const caller: Caller = { arrival: step, key, fiber: undefined as never, release, conn: undefined }
          const fiber = yield* Effect.fork(
            pool
              .use(key, (conn) =>
                Effect.gen(function* () {
                  if (closed.has(conn.id)) violations.push(`caller ${step} got closed item ${conn.id}`)
                  caller.conn = conn
                  const ok = yield* Deferred.await(release)
                  if (!ok) return yield* Effect.fail(reset())
                })
              )
              .pipe(Effect.ensuring(Effect.sync(() => (caller.conn = undefined))), Effect.ignore)
          )
          callers.push(Object.assign(caller, { fiber }))
          break
        }
        case "Release":
        case "Break": {
          const c = pick(holding(), cmd.pick)
          if (c === undefined) break
          if (cmd._tag === "Break") closed.add(c.conn!.id)
          yield* Deferred.succeed(c.release, cmd._tag === "Release")
          break
        }
        case "Invalidate": {
          const c = pick(holding(), cmd.pick)
          if (c === undefined) break
          closed.add(c.conn!.id)
          yield* pool.invalidate(c.conn!)
          break
        }
        case "Interrupt": {
          const c = pick(live(), cmd.pick)
          if (c) yield* Fiber.interrupt(c.fiber)
          break
        }
        case "Complete": {
          const gate = pick(gates, cmd.pick)
          if (gate) yield* Deferred.succeed(gate, cmd.ok)
          break
        }
        case "Advance":
          yield* TestClock.adjust(`${cmd.seconds} seconds`)
          break
      }
      yield* settle
      const where = `after step ${step} (${JSON.stringify(cmd)})`
      assert.deepStrictEqual(violations, [], where)
      const stats = yield* pool.stats
      const items = yield* pool.items
      const held = holding()
      // Leases per item: what the pool says and what callers hold agree, and never above the limit.
      const perConn = new Map<number, number>()
      for (const c of held) perConn.set(c.conn!.id, (perConn.get(c.conn!.id) ?? 0) + 1)
      for (const [id, n] of perConn) {
        assert.isAtMost(n, maxLeasesPerItem, `item ${id} lease bound ${where}`)
        assert.isTrue(alive.has(id), `item ${id} destroyed while leased ${where}`)
      }
      for (const item of items) assert.isAtMost(item.leases, maxLeasesPerItem, `reported lease bound ${where}`)
      assert.strictEqual(stats.leases, held.length, `stats.leases vs holders ${where}`)
      assert.strictEqual(
        items.reduce((n, i) => n + i.leases, 0),
        held.length,
        `items' leases vs holders ${where}`
      )
      // Limits count items.
      assert.isAtMost(stats.size, maxTotal, `total bound ${where}`)
      assert.strictEqual(stats.size, alive.size + gates.length, `size vs live resources ${where}`)
      for (const k of stats.perKey) {
        assert.isAtMost(k.size, maxPerKey, `key bound ${where}`)
        assert.strictEqual(k.leases, held.filter((c) => c.key === k.key).length, `per-key leases ${where}`)
        assert.strictEqual(
          k.maxLeases,
          Math.max(0, ...held.filter((c) => c.key === k.key).map((c) => perConn.get(c.conn!.id)!))
        )
      }
      // A closed item lives exactly as long as someone holds it.
      for (const id of closed) assert.strictEqual(alive.has(id), perConn.has(id), `closed item ${id} ${where}`)
      // FIFO per key: nobody who arrived after a caller still waiting for the same key holds an item.
      const waiting = live().filter((c) => c.conn === undefined)
      for (const w of waiting) {
        const jumped = held.find((c) => c.key === w.key && c.arrival > w.arrival)
        assert.isUndefined(jumped, `caller ${jumped?.arrival} served before ${w.arrival} ${where}`)
      }
      // A waiter never waits while an open item of its key has room.
      for (const k of stats.perKey) {
        if (k.waiting === 0) continue
        for (const c of held.filter((h) => h.key === k.key)) {
          const id = c.conn!.id
          if (!closed.has(id)) assert.strictEqual(perConn.get(id), maxLeasesPerItem, `waiter beside room ${where}`)
        }
      }
    }

    const closing = yield* Effect.fork(Scope.close(poolScope, Exit.void))
    yield* settle
    for (const gate of [...gates]) yield* Deferred.succeed(gate, true)
    yield* settle
    yield* Fiber.join(closing)
    yield* Effect.forEach(callers, (c) => Fiber.await(c.fiber), { discard: true })
    yield* settle
    assert.strictEqual(alive.size, 0, "every resource destroyed after shutdown")
    const after = yield* pool.stats
    assert.deepStrictEqual([after.inUse, after.leases], [0, 0])
  })

describe("shared leases model", () => {
  it.effect.prop(
    "leases per item, limits, FIFO and broken items hold under random interleavings",
    [fc.array(command, { minLength: 1, maxLength: 80 })],
    ([commands]) => runCommands(commands),
    { timeout: 120_000, fastCheck: { numRuns: 100 } }
  )
})
