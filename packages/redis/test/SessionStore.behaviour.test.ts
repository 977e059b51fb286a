/**
 * One behaviour suite for `SessionStore`, run over the memory store and the
 * Redis store: whatever a caller can observe must be the same for both.
 * Time is `TestClock` (TTLs are the store's clock, not Redis's).
 */
import { KeyedPool } from "@cistern/pool"
import { Affinity } from "@cistern/session"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { type Backend, memory, redis, redisAvailable } from "./utils/backends.js"

const Session = Schema.Struct({
  userId: Schema.String,
  apiKey: Schema.optional(Schema.String),
  // Stored as a string: proves values are encoded on the way in and decoded on the way out.
  account: Schema.NumberFromString,
  requests: Schema.Number.pipe(Schema.int(), Schema.nonNegative())
})
type Session = typeof Session.Type

const options = {
  schema: Session,
  ttl: "10 seconds",
  indexes: { user: (s: Session) => s.userId, apiKey: (s: Session) => s.apiKey }
} as const

const session = (userId: string, requests = 0, apiKey?: string): Session =>
  apiKey === undefined ? { userId, account: 1, requests } : { userId, account: 1, requests, apiKey }

const ids = (found: ReadonlyArray<{ readonly id: string }>) => found.map((f) => f.id).sort()

const suite = (backend: Backend) =>
  describe(`SessionStore over ${backend.name}`, () => {
    it.scoped("get returns what set stored, decoded through the schema", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        assert.isTrue(Option.isNone(yield* store.get("s1")))
        yield* store.set("s1", { userId: "u1", account: 42, requests: 3 })
        assert.deepStrictEqual(yield* store.get("s1"), Option.some({ userId: "u1", account: 42, requests: 3 }))
      })
    )

    it.scoped("getOrCreate creates once; concurrent callers all get the first value", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        let created = 0
        const results = yield* Effect.all(
          Array.from({ length: 10 }, (_, i) =>
            store.getOrCreate(
              "s1",
              Effect.sync(() => {
                created++
                return session(`u${i}`)
              })
            )
          ),
          { concurrency: "unbounded" }
        )
        const stored = Option.getOrThrow(yield* store.get("s1"))
        for (const r of results) assert.deepStrictEqual(r, stored)
        assert.isAtLeast(created, 1)
        // A later call does not create again.
        yield* store.getOrCreate("s1", Effect.die("must not be called"))
      })
    )

    it.scoped("concurrent updates of one session lose none (100 increments end at 100)", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("s1", session("u1"))
        yield* Effect.all(
          Array.from({ length: 100 }, () => store.update("s1", (s) => ({ ...s, requests: s.requests + 1 }))),
          { concurrency: "unbounded", discard: true }
        )
        assert.strictEqual(Option.getOrThrow(yield* store.get("s1")).requests, 100)
      })
    )

    it.scoped("update of a missing session is None and creates nothing", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        assert.isTrue(Option.isNone(yield* store.update("nobody", (s) => s)))
        assert.isTrue(Option.isNone(yield* store.get("nobody")))
        assert.isFalse(yield* store.touch("nobody"))
      })
    )

    it.scoped("a session lives exactly its default TTL, then is never returned", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("s1", session("u1"))
        yield* TestClock.adjust("10 seconds")
        assert.isTrue(Option.isNone(yield* store.get("s1")))
        yield* store.set("s2", session("u2"))
        yield* TestClock.adjust("9 seconds")
        assert.isTrue(Option.isSome(yield* store.get("s2")))
        yield* TestClock.adjust("999 millis")
        assert.isTrue(Option.isSome(yield* store.get("s2")))
        yield* TestClock.adjust("1 milli")
        assert.isTrue(Option.isNone(yield* store.get("s2")))
        assert.isTrue(Option.isNone(yield* store.update("s2", (s) => s)))
      })
    )

    it.scoped("a TTL given to a call overrides the default", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("short", session("u1"), { ttl: "3 seconds" })
        yield* store.getOrCreate("long", Effect.succeed(session("u1")), { ttl: "30 seconds" })
        yield* TestClock.adjust("3 seconds")
        assert.isTrue(Option.isNone(yield* store.get("short")))
        yield* TestClock.adjust("20 seconds")
        assert.isTrue(Option.isSome(yield* store.get("long")))
      })
    )

    it.scoped("touch extends the TTL; update keeps the expiry unless given a TTL", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("touched", session("u1"))
        yield* store.set("updated", session("u1"))
        yield* TestClock.adjust("8 seconds")
        assert.isTrue(yield* store.touch("touched"))
        yield* store.update("updated", (s) => ({ ...s, requests: 1 }))
        yield* TestClock.adjust("5 seconds")
        assert.isTrue(Option.isSome(yield* store.get("touched")), "touched 8 seconds in: lives to 18")
        assert.isTrue(Option.isNone(yield* store.get("updated")), "update kept its expiry at 10")
        yield* store.update("touched", (s) => s, { ttl: "1 second" })
        yield* TestClock.adjust("1 second")
        assert.isTrue(Option.isNone(yield* store.get("touched")))
      })
    )

    it.scoped("findBy finds by each declared index and follows rewrites and deletes", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("a", session("u1", 0, "k1"))
        yield* store.set("b", session("u1", 0, "k2"))
        yield* store.set("c", session("u2"))
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u1")), ["a", "b"])
        assert.deepStrictEqual(ids(yield* store.findBy("apiKey", "k2")), ["b"])
        assert.deepStrictEqual(ids(yield* store.findBy("apiKey", "nope")), [])
        // b moves to u2: its old index entry goes.
        yield* store.update("b", (s) => ({ ...s, userId: "u2" }))
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u1")), ["a"])
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u2")), ["b", "c"])
        yield* store.delete("c")
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u2")), ["b"])
        assert.isTrue(Option.isNone(yield* store.get("c")))
        const [found] = yield* store.findBy("apiKey", "k1")
        assert.deepStrictEqual(found?.value, session("u1", 0, "k1"))
      })
    )

    it.scoped("an expired session's index entries go with it", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("old", session("u1"), { ttl: "1 second" })
        yield* store.set("new", session("u1"))
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u1")), ["new"])
        // Written again under the same id, it is found again: nothing stale lingers.
        yield* store.set("old", session("u1"))
        assert.deepStrictEqual(ids(yield* store.findBy("user", "u1")), ["new", "old"])
      })
    )

    it.scoped("a value failing the schema is refused with a typed error and counted; the rest goes on", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("good", session("u1"))
        const error = yield* Effect.flip(store.set("bad", { ...session("u1"), requests: -1 }))
        assert.strictEqual(error._tag, "SessionSchemaError")
        assert.strictEqual(error.id, "bad")
        assert.strictEqual(error.direction, "encode")
        const viaUpdate = yield* Effect.flip(store.update("good", (s) => ({ ...s, requests: 1.5 })))
        assert.strictEqual(viaUpdate.direction, "encode")
        assert.isTrue(Option.isNone(yield* store.get("bad")))
        assert.strictEqual(Option.getOrThrow(yield* store.get("good")).requests, 0)
        assert.strictEqual((yield* store.stats).schemaErrors, 2)
      })
    )

    it.scoped("an affinity pin kept in this store holds its key within the TTL and is re-pinned after it", () =>
      Effect.gen(function* () {
        const pins = yield* backend.make({ schema: Affinity.Pin(Schema.String), ttl: "1 hour" })
        const pool = yield* KeyedPool.make({ acquire: (k: string) => Effect.succeed(k), describeKey: (k) => k })
        let picks = 0
        const affinity = Affinity.make({
          pool,
          store: pins,
          describeKey: (k: string) => k,
          ttl: "10 seconds",
          choose: () => Effect.sync(() => `acct-${++picks}`)
        })
        assert.strictEqual((yield* affinity.resolve("s1")).key, "acct-1")
        yield* TestClock.adjust("9 seconds")
        assert.deepStrictEqual(yield* affinity.resolve("s1"), {
          key: "acct-1",
          reason: "kept",
          previous: Option.none()
        })
        yield* TestClock.adjust("1 second")
        const again = yield* affinity.resolve("s1")
        assert.deepStrictEqual(again, { key: "acct-2", reason: "expired", previous: Option.some("acct-1") })
      })
    )

    it.scoped("stats report live sessions, hits and misses, and no fallback", () =>
      Effect.gen(function* () {
        const store = yield* backend.make(options)
        yield* store.set("s1", session("u1"))
        yield* store.get("s1")
        yield* store.get("s1")
        yield* store.get("missing")
        const stats = yield* store.stats
        assert.strictEqual(stats.backend, backend.name)
        assert.strictEqual(stats.live, 1)
        assert.strictEqual(stats.hits, 2)
        assert.strictEqual(stats.misses, 1)
        assert.isFalse(stats.fallback)
        assert.strictEqual(stats.storeErrors, 0)
      })
    )
  })

suite(memory)

const available = redisAvailable()
if (available.run) suite(redis)
else if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
else it.skip(available.reason, () => {})
