/**
 * A model-based property test of tenant groups: random interleavings of get /
 * release / creation success or failure / interrupt / clock advance over four
 * keys in two groups, with a group, key and total limit; after every step a
 * group never holds more items than its limit (counting creations), the
 * pool's per-group counts agree with its per-key counts, and FIFO per key
 * holds.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, FastCheck as fc, Scope, TestClock } from "effect"
import { KeyedPool } from "../src/index.js"
import { advancing, completing, pick, picking } from "./utils/model.js"
import { settle } from "./utils/resource.js"

const keys = ["alice/db", "alice/llm", "bob/db", "bob/llm"] as const
const groupOf = (key: string) => key.split("/")[0]
const maxPerKey = 2
const maxPerGroup = 3
const maxTotal = 5

type Command =
  | { readonly _tag: "Get"; readonly key: number }
  | { readonly _tag: "Release"; readonly pick: number }
  | { readonly _tag: "Interrupt"; readonly pick: number }
  | { readonly _tag: "Complete"; readonly pick: number; readonly ok: boolean }
  | { readonly _tag: "Advance"; readonly seconds: number }

const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ _tag: fc.constant("Get" as const), key: fc.nat(keys.length - 1) }) },
  { weight: 3, arbitrary: picking("Release") },
  { weight: 1, arbitrary: picking("Interrupt") },
  { weight: 3, arbitrary: completing },
  { weight: 1, arbitrary: advancing }
)

interface Caller {
  readonly arrival: number
  readonly key: string
  readonly fiber: Fiber.RuntimeFiber<void, unknown>
  readonly release: Deferred.Deferred<void>
  held: boolean
}

const runCommands = (commands: ReadonlyArray<Command>) =>
  Effect.gen(function* () {
    const gates: Array<Deferred.Deferred<boolean>> = []
    let alive = 0
    const acquire = (key: string) =>
      Effect.gen(function* () {
        const gate = yield* Deferred.make<boolean>()
        gates.push(gate)
        const ok = yield* Deferred.await(gate).pipe(
          Effect.ensuring(Effect.sync(() => gates.splice(gates.indexOf(gate), 1)))
        )
        if (!ok) return yield* Effect.fail("refused" as const)
        return yield* Effect.acquireRelease(
          Effect.sync(() => {
            alive++
            return key
          }),
          () =>
            Effect.sync(() => {
              alive--
            })
        )
      })
    const poolScope = yield* Scope.make()
    const pool = yield* KeyedPool.make({
      acquire,
      group: groupOf,
      maxPerGroup,
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

    for (let step = 0; step < commands.length; step++) {
      const cmd = commands[step]
      switch (cmd._tag) {
        case "Get": {
          const key = keys[cmd.key]
          const release = yield* Deferred.make<void>()
          const caller: Caller = { arrival: step, key, fiber: undefined as never, release, held: false }
          const fiber = yield* Effect.fork(
            pool
              .use(key, () =>
                Effect.zipRight(
                  Effect.sync(() => {
                    caller.held = true
                  }),
                  Deferred.await(release)
                )
              )
              .pipe(Effect.ensuring(Effect.sync(() => (caller.held = false))))
          )
          callers.push(Object.assign(caller, { fiber }))
          break
        }
        case "Release": {
          const c = pick(
            live().filter((c) => c.held),
            cmd.pick
          )
          if (c) yield* Deferred.succeed(c.release, undefined)
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
      const stats = yield* pool.stats
      const where = `after step ${step} (${JSON.stringify(cmd)})`
      assert.isAtMost(stats.size, maxTotal, `total bound ${where}`)
      assert.strictEqual(stats.size, alive + gates.length, `size vs live resources ${where}`)
      for (const group of ["alice", "bob"]) {
        const sum = stats.perKey.filter((k) => groupOf(k.key) === group).reduce((n, k) => n + k.size, 0)
        const reported = stats.perGroup?.find((g) => g.group === group)?.size ?? 0
        assert.isAtMost(sum, maxPerGroup, `group bound of ${group} ${where}`)
        assert.strictEqual(reported, sum, `perGroup of ${group} agrees with perKey ${where}`)
      }
      for (const k of stats.perKey) assert.isAtMost(k.size, maxPerKey, `key bound ${where}`)
      // FIFO per key: nobody who arrived after a caller still waiting (not creating) for the same key holds an item.
      const waiting = live().filter((c) => !c.held)
      for (const w of waiting) {
        const perKey = stats.perKey.find((k) => k.key === w.key)
        if (perKey === undefined || perKey.waiting === 0) continue
        const jumped = live().find((c) => c.held && c.key === w.key && c.arrival > w.arrival)
        if (jumped !== undefined) {
          // Allowed only when the older caller has a creation of its own in flight (HikariCP-style waits).
          assert.isAbove(perKey.creating, 0, `caller ${jumped.arrival} served before ${w.arrival} ${where}`)
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
    assert.strictEqual(alive, 0, "every resource destroyed after shutdown")
    assert.deepStrictEqual((yield* pool.stats).perGroup, [])
  })

describe("KeyedPool groups model", () => {
  it.effect.prop(
    "a group never holds more items than its limit, under random interleavings",
    [fc.array(command, { minLength: 1, maxLength: 50 })],
    ([commands]) => runCommands(commands),
    { timeout: 120_000, fastCheck: { numRuns: 100 } }
  )
})
