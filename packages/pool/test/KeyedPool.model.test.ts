/**
 * A model-based property test: random interleavings of get / release /
 * creation success or failure / invalidate / interrupt / clock advance /
 * credential rotation over three keys and a global cap, with the pool's
 * invariants checked against an outside ledger after every step.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FiberRef, FastCheck as fc, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { advancing, completing, pick, picking } from "./utils/model.js"
import { settle } from "./utils/resource.js"

const users = ["u0", "u1", "u2"] as const
const maxPerKey = 2
const maxTotal = 4

type Command =
  | { readonly _tag: "Get"; readonly user: number }
  | { readonly _tag: "Release"; readonly pick: number }
  | { readonly _tag: "Invalidate"; readonly pick: number }
  | { readonly _tag: "Interrupt"; readonly pick: number }
  | { readonly _tag: "Complete"; readonly pick: number; readonly ok: boolean }
  | { readonly _tag: "Advance"; readonly seconds: number }
  | { readonly _tag: "Rotate"; readonly user: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ _tag: fc.constant("Get" as const), user: fc.nat(users.length - 1) }) },
  { weight: 3, arbitrary: picking("Release") },
  { weight: 1, arbitrary: picking("Invalidate") },
  { weight: 1, arbitrary: picking("Interrupt") },
  { weight: 3, arbitrary: completing },
  { weight: 2, arbitrary: advancing },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("Rotate" as const), user: fc.nat(users.length - 1) }) }
)

interface Key {
  readonly user: string
  readonly token: number
}

interface Item {
  readonly id: number
  readonly user: string
}

/** A creation in flight: it finishes when the test says so. */
interface Pending {
  /** The arrival number of the caller whose `get` runs this creation. */
  readonly caller: number
  readonly gate: Deferred.Deferred<boolean>
}

/** One caller, as the test sees it. */
interface Caller {
  readonly arrival: number
  readonly user: string
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
  readonly release: Deferred.Deferred<void>
  item: Item | undefined
}

/** Which caller a fiber (or its children, such as a creation's) works for. */
const callerRef = FiberRef.unsafeMake(-1)

const runCommands = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function* () {
    let nextId = 0
    const pending: Array<Pending> = []
    const alive = new Set<number>()
    const destroyed: Array<number> = []
    const tokens = users.map(() => 0)

    const acquire = (key: Key) =>
      Effect.gen(function* () {
        const gate = yield* Deferred.make<boolean>()
        const entry: Pending = { caller: yield* FiberRef.get(callerRef), gate }
        pending.push(entry)
        const ok = yield* Deferred.await(gate).pipe(
          Effect.ensuring(Effect.sync(() => pending.splice(pending.indexOf(entry), 1)))
        )
        if (!ok) return yield* Effect.fail("refused" as const)
        return yield* Effect.acquireRelease(
          Effect.sync(() => {
            const item: Item = { id: nextId++, user: key.user }
            alive.add(item.id)
            return item
          }),
          (item) =>
            Effect.sync(() => {
              assert.isTrue(alive.delete(item.id), `item ${item.id} destroyed twice`)
              destroyed.push(item.id)
            })
        )
      })

    const poolScope = yield* Scope.make()
    const pool = yield* KeyedPool.make({
      acquire,
      keyId: (key: Key) => key.user,
      fingerprint: (key: Key) => String(key.token),
      describeKey: (key: Key) => key.user,
      maxPerKey,
      maxTotal,
      acquireTimeout: "10 seconds",
      idleTimeout: "1 minute",
      cleanupInterval: "20 seconds",
      drainTimeout: 0,
      // Creations start when the test says so, not after a backoff sleep.
      createBackoff: false
    }).pipe(Scope.extend(poolScope))

    const callers: Array<Caller> = []
    const live = () => callers.filter((c) => c.fiber.unsafePoll() === null)
    const holding = () => live().filter((c) => c.item !== undefined)

    const check = (step: number) =>
      Effect.gen(function* () {
        const stats = yield* pool.stats
        const where = `after step ${step} (${JSON.stringify(commands[step])})`
        assert.isAtMost(stats.size, maxTotal, `total bound ${where}`)
        assert.strictEqual(stats.idle + stats.inUse + stats.creating, stats.size, `pool sum ${where}`)
        for (const k of stats.perKey) {
          assert.isAtMost(k.size, maxPerKey, `key bound ${where}`)
          assert.strictEqual(k.idle + k.inUse + k.creating, k.size, `key sum ${where}`)
        }
        // Exactly the items the callers hold are leased, each to one caller, each alive.
        const held = holding().map((c) => c.item!.id)
        assert.strictEqual(new Set(held).size, held.length, `an item leased twice ${where}`)
        for (const id of held) assert.isTrue(alive.has(id), `a leased item was destroyed ${where}`)
        assert.strictEqual(stats.inUse, held.length, `inUse ${where}`)
        // No reservation outlives its caller: every creation counted is one in flight.
        assert.strictEqual(stats.creating, pending.length, `creating ${where}`)
        assert.strictEqual(stats.size, alive.size + pending.length, `size vs live resources ${where}`)
        // Everyone else alive is waiting, and the pool counts exactly them.
        const creators = new Set(pending.map((p) => p.caller))
        const waiting = live().filter((c) => c.item === undefined && !creators.has(c.arrival))
        assert.strictEqual(stats.waiting, waiting.length, `waiting ${where}`)
        // FIFO per key: nobody who arrived after a still-waiting caller of the same key was served.
        for (const w of waiting) {
          const jumped = holding().find((c) => c.user === w.user && c.arrival > w.arrival)
          assert.isUndefined(jumped, `caller ${jumped?.arrival} served before ${w.arrival} ${where}`)
        }
      })

    for (let step = 0; step < commands.length; step++) {
      const cmd = commands[step]
      switch (cmd._tag) {
        case "Get": {
          const user = users[cmd.user]
          const release = yield* Deferred.make<void>()
          const caller: Caller = { arrival: step, user, fiber: undefined as never, release, item: undefined }
          const fiber = yield* Effect.fork(
            Effect.scoped(
              Effect.flatMap(pool.get({ user, token: tokens[cmd.user] }), (item) =>
                Effect.zipRight(
                  Effect.sync(() => {
                    caller.item = item
                  }),
                  Deferred.await(release)
                )
              )
            ).pipe(
              Effect.ensuring(
                Effect.sync(() => {
                  caller.item = undefined
                })
              ),
              Effect.locally(callerRef, step)
            )
          )
          callers.push(Object.assign(caller, { fiber }))
          break
        }
        case "Release": {
          const c = pick(holding(), cmd.pick)
          if (c) yield* Deferred.succeed(c.release, undefined)
          break
        }
        case "Invalidate": {
          const c = pick(holding(), cmd.pick)
          if (c) yield* Effect.zipRight(pool.invalidate(c.item!), Deferred.succeed(c.release, undefined))
          break
        }
        case "Interrupt": {
          const c = pick(live(), cmd.pick)
          if (c) yield* Fiber.interrupt(c.fiber)
          break
        }
        case "Complete": {
          const p = pick(pending, cmd.pick)
          if (p) yield* Deferred.succeed(p.gate, cmd.ok)
          break
        }
        case "Advance":
          yield* TestClock.adjust(`${cmd.seconds} seconds`)
          break
        case "Rotate":
          tokens[cmd.user]++
          break
      }
      yield* settle
      yield* check(step)
    }

    // Shutdown: waiters fail, holders are interrupted (drainTimeout 0), creations
    // still in flight finish later and are destroyed on return.
    const closing = yield* Effect.fork(Scope.close(poolScope, Exit.void))
    yield* settle
    for (const p of [...pending]) yield* Deferred.succeed(p.gate, true)
    yield* settle
    yield* Fiber.join(closing)
    yield* Effect.forEach(callers, (c) => Fiber.await(c.fiber), { discard: true })
    yield* settle
    const stats = yield* pool.stats
    assert.strictEqual(alive.size, 0, "every resource destroyed after shutdown")
    assert.strictEqual(stats.created, stats.destroyed, "created = destroyed after shutdown")
    assert.strictEqual(stats.created, nextId, "the pool counted every creation")
    assert.strictEqual(stats.size, 0)
  })

describe("KeyedPool model", () => {
  it.effect.prop(
    "keeps its invariants under random interleavings across keys and a global cap",
    [fc.array(command, { minLength: 1, maxLength: 60 })],
    ([commands]) => runCommands(commands),
    { timeout: 120_000, fastCheck: { numRuns: 150 } }
  )
})
