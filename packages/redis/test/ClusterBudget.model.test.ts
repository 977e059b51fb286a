/**
 * The budget's Lua script against its TypeScript model: random histories of
 * acquire (new ids and retries of an id whose reply was "lost"), release,
 * heartbeat, leave, adopt (permits granted while Redis was unreachable,
 * counted afterwards, some of them already known), time passing (past leases: instances die), instance
 * death (an instance stops calling, a new one starts) and Redis losing its
 * data (`FLUSHALL`) run through both, and every answer must be the same.
 *
 * Time: the script reads `TIME`; this test runs the test build of the same
 * script, in which exactly that line reads the time from an argument
 * instead, so both sides get the same explicit clock (see `budgetScript.ts`).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as fc from "effect/FastCheck"
import * as BudgetClient from "../src/internal/budgetClient.js"
import { type Caller, Model, type Op, type Reply } from "../src/internal/budgetModel.js"
import * as RedisClient from "../src/RedisClient.js"
import { redisAvailable } from "./utils/backends.js"
import * as RedisServer from "./utils/RedisServer.js"

const limit = 5
const tenantLimit = 3
const lease = 1_000
const tenants = ["x", "y", "z"] as const
const slots = 3

type Command =
  | { readonly _tag: "acquire"; readonly slot: number; readonly tenant: number; readonly retry: boolean }
  | { readonly _tag: "release"; readonly slot: number; readonly pick: number; readonly stray: boolean }
  | { readonly _tag: "heartbeat"; readonly slot: number; readonly reassert: boolean }
  | { readonly _tag: "leave"; readonly slot: number }
  | {
      readonly _tag: "adopt"
      readonly slot: number
      readonly tenants: ReadonlyArray<number>
      readonly known: boolean
    }
  | { readonly _tag: "advance"; readonly millis: number }
  | { readonly _tag: "die"; readonly slot: number }
  | { readonly _tag: "flush" }

const slot = fc.integer({ min: 0, max: slots - 1 })
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      _tag: fc.constant("acquire" as const),
      slot,
      tenant: fc.integer({ min: 0, max: tenants.length - 1 }),
      retry: fc.boolean()
    })
  },
  {
    weight: 4,
    arbitrary: fc.record({ _tag: fc.constant("release" as const), slot, pick: fc.nat(), stray: fc.boolean() })
  },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("heartbeat" as const), slot, reassert: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("leave" as const), slot }) },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("adopt" as const),
      slot,
      tenants: fc.array(fc.integer({ min: 0, max: tenants.length - 1 }), { maxLength: 3 }),
      known: fc.boolean()
    })
  },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("advance" as const),
      millis: fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 900, max: 2_200 }))
    })
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("die" as const), slot }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "flush" as const }) }
)

/** What a client of one instance knows, driven the way the service drives it. */
interface Driver {
  instance: string
  epoch: string
  readonly held: Map<string, string>
  lastId: string | undefined
  lastTenant: string
  sequence: number
}

const newDriver = (n: number): Driver => ({
  instance: `i${n}`,
  epoch: "",
  held: new Map(),
  lastId: undefined,
  lastTenant: "x",
  sequence: 0
})

/** How the service reacts to a reply (it decides what the next calls send). */
const observe = (driver: Driver, op: Op, reply: Reply) => {
  if (reply.status === "lost") {
    driver.held.clear()
    driver.epoch = reply.epoch
    return
  }
  // A holder adopts a new epoch only from a heartbeat (where it re-asserts what it holds) or an adopt; one
  // that held nothing when it called takes it from any answer (the service decides before it counts a grant).
  if (op._tag === "heartbeat" || op._tag === "adopt" || driver.held.size === 0) driver.epoch = reply.epoch
  if (op._tag === "acquire" && reply.status === "granted") driver.held.set(op.id, op.tenant)
  if (op._tag === "adopt") for (const [id, tenant] of op.permits) driver.held.set(id, tenant)
}

const strip = ({ published: _, ...reply }: Reply) => reply

/** One call of `driver` through the script and the model at `now`: both must answer the same; the driver reacts as the service does. */
const callBoth = (budget: BudgetClient.BudgetClient, model: Model, driver: Driver, op: Op, now: number) =>
  Effect.gen(function* () {
    const caller: Caller = { instance: driver.instance, epoch: driver.epoch, leaseMillis: lease }
    const expected = model.step(now, caller, op)
    const actual = yield* budget.call(caller, op, now)
    assert.deepStrictEqual(actual, strip(expected), `${JSON.stringify(op)} by ${driver.instance}`)
    observe(driver, op, actual)
    return actual
  })

const available = redisAvailable()

describe.skipIf(!available.run)("the budget script and its model", () => {
  it.scopedLive(
    "answer every call of random histories the same (acquire, retry, release, heartbeat, leave, adopt, death, time, FLUSHALL)",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const client = yield* RedisClient.make({ url: server.url, commandTimeout: "5 seconds" })
        const budget = BudgetClient.make(client, { prefix: "test:", name: "differential", testClock: true })
        let calls = 0
        let reclaimed = 0
        const seen = new Set<string>()
        const property = fc.asyncProperty(
          fc.array(command, { minLength: 1, maxLength: 80, size: "max" }),
          async (commands) => {
            await client.redis.flushall()
            const model = new Model()
            let now = 1_000_000
            let flushed = false
            let adopted = 0
            let instances = slots
            const drivers = Array.from({ length: slots }, (_, i) => newDriver(i))
            const run = async (driver: Driver, op: Op) => {
              const caller: Caller = { instance: driver.instance, epoch: driver.epoch, leaseMillis: lease }
              const expected = model.step(now, caller, op)
              const actual = await Effect.runPromise(budget.call(caller, op, now))
              calls++
              seen.add(actual.status)
              reclaimed += actual.reclaimed
              assert.deepStrictEqual(actual, strip(expected), `${JSON.stringify(op)} by ${JSON.stringify(caller)}`)
              assert.strictEqual(model.permitCount, model.total, "permit entries and the total agree")
              // Adopted permits are counted whatever the limit: grants alone stay within it.
              if (!flushed)
                assert.isAtMost(
                  model.total,
                  limit + adopted,
                  "at most the limit (plus adopted) while Redis kept its data"
                )
              observe(driver, op, actual)
            }
            for (const c of commands) {
              switch (c._tag) {
                case "acquire": {
                  const d = drivers[c.slot]!
                  const retry = c.retry && d.lastId !== undefined && !d.held.has(d.lastId)
                  const id = retry ? d.lastId! : `${d.instance}:${++d.sequence}`
                  const tenant = retry ? d.lastTenant : tenants[c.tenant]!
                  d.lastId = id
                  d.lastTenant = tenant
                  await run(d, { _tag: "acquire", id, tenant, limit, tenantLimit, held: d.held.size, waiting: 1 })
                  break
                }
                case "release": {
                  const d = drivers[c.slot]!
                  const ids = [...d.held.keys()]
                  const id = c.stray || ids.length === 0 ? `${d.instance}:${c.pick % 7}` : ids[c.pick % ids.length]!
                  d.held.delete(id)
                  await run(d, { _tag: "release", id })
                  break
                }
                case "heartbeat": {
                  const d = drivers[c.slot]!
                  await run(d, { _tag: "heartbeat", waiting: 0, limit, permits: [...d.held] })
                  break
                }
                case "leave": {
                  const d = drivers[c.slot]!
                  await run(d, { _tag: "leave" })
                  d.held.clear()
                  break
                }
                case "adopt": {
                  const d = drivers[c.slot]!
                  const permits: Array<readonly [string, string]> = c.tenants.map((t) => [
                    `${d.instance}:${++d.sequence}`,
                    tenants[t]!
                  ])
                  // A permit whose acquire reached Redis after all (its reply was lost) is carried too.
                  const first = [...d.held][0]
                  if (c.known && first !== undefined) permits.push(first)
                  adopted += permits.length
                  await run(d, { _tag: "adopt", permits })
                  break
                }
                case "advance":
                  now += c.millis
                  break
                case "die":
                  drivers[c.slot] = newDriver(instances++)
                  break
                case "flush":
                  await client.redis.flushall()
                  model.flush()
                  flushed = true
                  break
              }
            }
          }
        )
        yield* Effect.promise(() => fc.assert(property, { numRuns: 120 }))
        // The histories reached every answer, reclaims included: the comparison covered each rule.
        assert.isAbove(calls, 1_000)
        assert.isAbove(reclaimed, 0)
        assert.deepStrictEqual([...seen].sort(), [
          "adopted",
          "exhausted",
          "granted",
          "learning",
          "left",
          "lost",
          "ok",
          "reasserted",
          "released",
          "unknown"
        ])
      }),
    60_000
  )

  it.scopedLive(
    "after Redis loses its data, a holder whose acquire comes before its heartbeat hears learning, then re-asserts",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const client = yield* RedisClient.make({ url: server.url, commandTimeout: "5 seconds" })
        const budget = BudgetClient.make(client, { prefix: "test:", name: "restart", testClock: true })
        const model = new Model()
        let now = 1_000_000
        const a = newDriver(0)
        const run = (op: Op) => callBoth(budget, model, a, op, now)
        const acquire = (id: string): Extract<Op, { readonly _tag: "acquire" }> => ({
          _tag: "acquire",
          id,
          tenant: "x",
          limit,
          tenantLimit,
          held: a.held.size,
          waiting: 1
        })
        assert.strictEqual((yield* run(acquire("i0:1"))).status, "granted")
        assert.strictEqual((yield* run(acquire("i0:2"))).status, "granted")
        const before = a.epoch
        // Redis restarts empty; the holder's next call is an acquire of one of its waiters.
        yield* Effect.promise(() => client.redis.flushall())
        model.flush()
        now += 100
        const first = yield* run(acquire("i0:3"))
        assert.strictEqual(first.status, "learning", "not lost: the instance has not had a chance to re-assert")
        assert.notStrictEqual(first.epoch, before)
        assert.strictEqual(a.epoch, before, "a holder keeps its epoch until its heartbeat re-asserts")
        assert.deepStrictEqual([...a.held.keys()], ["i0:1", "i0:2"])
        // The service's answer to a new epoch while holding permits: a heartbeat, which re-asserts.
        const beat = yield* run({ _tag: "heartbeat", waiting: 1, limit, permits: [...a.held] })
        assert.strictEqual(beat.status, "reasserted")
        assert.include(beat, { used: 2, held: 2 })
        // After the learning period (a lease from the restart), grants resume; nothing was counted twice.
        now += lease / 2
        assert.strictEqual((yield* run({ _tag: "heartbeat", waiting: 1, limit, permits: [...a.held] })).status, "ok")
        now += lease / 2
        const third = yield* run(acquire("i0:3"))
        assert.include(third, { status: "granted", used: 3, held: 3 })
        // Outside learning, a stale holder that never re-asserted is still told it lost its lease.
        const other = new Model()
        const late = yield* Effect.sync(() => {
          other.step(0, { instance: "i1", epoch: "", leaseMillis: lease }, acquire("i1:1"))
          other.step(
            600,
            { instance: "i2", epoch: "", leaseMillis: lease },
            {
              _tag: "heartbeat",
              waiting: 0,
              limit,
              permits: []
            }
          )
          return other.step(
            1_200,
            { instance: "i1", epoch: "before", leaseMillis: lease },
            {
              ...acquire("i1:2"),
              held: 1
            }
          )
        })
        assert.strictEqual(late.status, "lost")
      }),
    30_000
  )

  it.scopedLive(
    "fair shares add up to the limit: the remainder goes to instances that want more, then by id, and stays put",
    () =>
      Effect.gen(function* () {
        const server = yield* RedisServer.make()
        const client = yield* RedisClient.make({ url: server.url, commandTimeout: "5 seconds" })
        const budget = BudgetClient.make(client, { prefix: "test:", name: "shares", testClock: true })
        const total = 10
        const model = new Model()
        const now = 1_000_000
        const drivers = [newDriver(0), newDriver(1), newDriver(2)]
        const [i0, i1, i2] = drivers as [Driver, Driver, Driver]
        const run = (d: Driver, op: Op) => callBoth(budget, model, d, op, now)
        const take = (d: Driver, n: number) =>
          Effect.gen(function* () {
            for (let i = 0; i < n; i++) {
              const id = `${d.instance}:${d.sequence++}`
              const op: Op = {
                _tag: "acquire",
                id,
                tenant: "x",
                limit: total,
                tenantLimit: total,
                held: d.held.size,
                waiting: 1
              }
              assert.strictEqual((yield* run(d, op)).status, "granted")
            }
          })
        const over = (d: Driver, waiting: number) =>
          Effect.map(run(d, { _tag: "heartbeat", waiting, limit: total, permits: [...d.held] }), (r) => r.over)

        // 10 over three instances that all want more: shares 4, 3, 3 (the one left over to i0, the first id).
        yield* take(i0, 4)
        yield* take(i1, 3)
        yield* take(i2, 3)
        for (const d of drivers) yield* over(d, 1)
        const overs: Array<number> = []
        for (const d of drivers) overs.push(yield* over(d, 1))
        assert.deepStrictEqual(overs, [0, 0, 0], "4 + 3 + 3 is everyone's share: nobody closes a connection")
        // Held the other way round, i1 is the one above its share, and only by one.
        const given = [...i0.held.keys()][0]!
        yield* run(i0, { _tag: "release", id: given })
        i0.held.delete(given)
        yield* take(i1, 1)
        assert.deepStrictEqual([yield* over(i0, 1), yield* over(i1, 1), yield* over(i2, 1)], [0, 1, 0])

        // An instance idling on what it holds wants nothing more: the remainder goes to one that does.
        for (const d of drivers) yield* run(d, { _tag: "leave" })
        for (const d of drivers) d.held.clear()
        yield* take(i0, total)
        yield* over(i1, 4)
        yield* over(i2, 4)
        assert.strictEqual(yield* over(i0, 0), 7, "i0 keeps ⌊10 ÷ 3⌋ = 3; the remainder is i1's")
      }),
    30_000
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
