import { KeyedPool } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as Affinity from "../src/Affinity.js"
import * as SessionStore from "../src/SessionStore.js"

const accounts = ["acct-a", "acct-b", "acct-c"] as const

const refused = (account: string) =>
  Object.assign(new Error(`connect ECONNREFUSED ${account}`), { code: "ECONNREFUSED" })

/** A pool of fake upstream accounts; an account in `down` refuses connections (ECONNREFUSED). */
const setup = (options?: { readonly ttl?: Duration.DurationInput; readonly known?: (key: string) => boolean }) =>
  Effect.gen(function* () {
    const down = new Set<string>()
    const pool = yield* KeyedPool.make({
      acquire: (account: string) => (down.has(account) ? Effect.fail(refused(account)) : Effect.succeed({ account })),
      describeKey: (account) => account,
      createBackoff: false,
      breaker: { failures: 3, reset: "60 seconds" }
    })
    const pins = yield* SessionStore.make({ schema: Affinity.Pin(Schema.String) })
    const chosen: Array<{ reason: string; previous: Option.Option<string> }> = []
    let next = 0
    const affinity = Affinity.make({
      pool,
      store: pins,
      describeKey: (account: string) => account,
      ttl: options?.ttl ?? "30 minutes",
      isKnown: options?.known,
      // Round robin over the accounts whose circuit is not open.
      choose: ({ isOpen, previous, reason }) =>
        Effect.sync(() => {
          chosen.push({ reason, previous })
          for (let i = 0; i < accounts.length; i++) {
            const account = accounts[next++ % accounts.length]!
            if (!isOpen(account)) return account
          }
          return accounts[0]
        })
    })
    /** One request of `session`: resolve its account, then use a connection of it. */
    const request = (session: string) =>
      Effect.flatMap(affinity.resolve(session), ({ key }) =>
        pool
          .use(key, (conn) =>
            down.has(conn.account) ? Effect.fail(refused(conn.account)) : Effect.succeed(conn.account)
          )
          .pipe(Effect.orElseSucceed(() => `failed:${key}`))
      )
    return { pool, affinity, request, down, chosen }
  })

describe("Affinity", () => {
  it.scoped("a session sticks to its account while it is healthy", () =>
    Effect.gen(function* () {
      const { chosen, request } = yield* setup()
      const first = yield* request("s1")
      for (let i = 0; i < 10; i++) assert.strictEqual(yield* request("s1"), first)
      // Another session gets its own pick.
      assert.notStrictEqual(yield* request("s2"), first)
      assert.deepStrictEqual(
        chosen.map((c) => c.reason),
        ["new", "new"]
      )
    })
  )

  it.scoped("after its account's breaker opens the session moves, and does not flap back while it is open", () =>
    Effect.gen(function* () {
      const { affinity, chosen, down, pool, request } = yield* setup()
      const first = yield* request("s1")
      down.add(first)
      // Three failures in a row open the account's circuit (the relay's "3 failures in 60 seconds").
      for (let i = 0; i < 3; i++) assert.strictEqual(yield* request("s1"), `failed:${first}`)
      const stats = yield* pool.stats
      assert.strictEqual(stats.perKey.find((k) => k.key === first)?.health.breaker, "open")
      const moved = yield* affinity.resolve("s1")
      assert.strictEqual(moved.reason, "open")
      assert.deepStrictEqual(moved.previous, Option.some(first))
      assert.notStrictEqual(moved.key, first)
      // While the first account stays open, every request stays on the new one.
      for (let i = 0; i < 20; i++) {
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual(yield* request("s1"), moved.key)
      }
      assert.strictEqual(chosen.length, 2, "chosen once at first, once when the circuit opened")
      // The first account recovering does not pull the session back: it keeps its new pin.
      down.delete(first)
      yield* TestClock.adjust("60 seconds")
      assert.strictEqual(yield* request("s1"), moved.key)
    })
  )

  it.scoped("the pin expires after the affinity TTL and the session is re-pinned", () =>
    Effect.gen(function* () {
      const { affinity, chosen, request } = yield* setup({ ttl: "10 seconds" })
      yield* request("s1")
      const pinned = Option.getOrThrow(yield* affinity.current("s1"))
      yield* TestClock.adjust("9 seconds")
      assert.strictEqual((yield* affinity.resolve("s1")).reason, "kept")
      yield* TestClock.adjust("1 second")
      assert.isTrue(Option.isNone(yield* affinity.current("s1")))
      const again = yield* affinity.resolve("s1")
      assert.strictEqual(again.reason, "expired")
      assert.deepStrictEqual(again.previous, Option.some(pinned.key))
      assert.strictEqual(chosen.length, 2)
      assert.strictEqual(Option.getOrThrow(yield* affinity.current("s1")).pinnedAt, 10_000)
    })
  )

  it.scoped("a session whose account is gone is re-pinned", () =>
    Effect.gen(function* () {
      const removed = new Set<string>()
      const { affinity, request } = yield* setup({ known: (key) => !removed.has(key) })
      const first = yield* request("s1")
      removed.add(first)
      const moved = yield* affinity.resolve("s1")
      assert.strictEqual(moved.reason, "gone")
      assert.notStrictEqual(moved.key, first)
    })
  )

  it.scoped("pin and unpin set and forget a session's key", () =>
    Effect.gen(function* () {
      const { affinity } = yield* setup()
      yield* affinity.pin("s1", "acct-c")
      assert.deepStrictEqual(yield* affinity.resolve("s1"), {
        key: "acct-c",
        reason: "kept",
        previous: Option.none()
      })
      yield* affinity.unpin("s1")
      assert.strictEqual((yield* affinity.resolve("s1")).reason, "new")
    })
  )
})
