/**
 * What only a Redis store does: write-behind batches and write-through,
 * keys, prefixes and Redis TTLs, values in Redis that fail the schema, and
 * configuration through `Config`.
 */
import { SessionStore } from "@cistern/session"
import { assert, describe, it } from "@effect/vitest"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as RedisClient from "../src/RedisClient.js"
import * as RedisSessionStore from "../src/RedisSessionStore.js"
import { redisAvailable } from "./utils/backends.js"
import { eventually } from "./utils/eventually.js"
import * as RedisServer from "./utils/RedisServer.js"
import { rawClient } from "./utils/raw.js"

const Session = Schema.Struct({ userId: Schema.String, requests: Schema.Number })
type Session = typeof Session.Type
const indexes = { user: (s: Session) => s.userId }

/**
 * Commands get 5 s, not the default second: one that a loaded CI machine stalls past its timeout would send
 * the store into fallback, which none of these tests is about.
 */
const commandTimeout = "5 seconds"

const setup = (options: Partial<RedisSessionStore.Options<Session, "user">> = {}) =>
  Effect.gen(function* () {
    const server = yield* RedisServer.make()
    const client = yield* RedisClient.make({ url: server.url, commandTimeout })
    const store = yield* RedisSessionStore.make<Session, "user">({
      schema: Session,
      prefix: "app:",
      indexes,
      ...options
    }).pipe(Effect.provideService(RedisClient.RedisClient, client))
    const raw = yield* rawClient(server.url)
    return { server, store, raw }
  })

const available = redisAvailable()

describe.skipIf(!available.run)("RedisSessionStore", () => {
  it.scoped("write-behind: writes reach Redis in one batch when the flush interval passes", () =>
    Effect.gen(function* () {
      const { raw, store } = yield* setup({ flushInterval: "1 second", batchSize: 100 })
      yield* store.set("a", { userId: "u1", requests: 1 })
      yield* store.set("b", { userId: "u1", requests: 2 })
      yield* store.set("a", { userId: "u1", requests: 3 })
      assert.strictEqual(yield* Effect.promise(() => raw.exists("app:s:a", "app:s:b")), 0)
      assert.strictEqual((yield* store.stats).pendingWrites, 2, "two sessions, the later write of a wins")
      yield* TestClock.adjust("1 second")
      yield* eventually(
        Effect.map(store.stats, (s) => s.pendingWrites === 0 && s.flushes === 1),
        "one flush"
      )
      const stored = JSON.parse((yield* Effect.promise(() => raw.get("app:s:a")))!)
      assert.deepStrictEqual(stored.v, { userId: "u1", requests: 3 })
      assert.deepStrictEqual(yield* Effect.promise(() => raw.zrange("app:i:user:u1", "0", "-1")), ["a", "b"])
    })
  )

  it.scoped("write-behind: a full batch is written at once, before the interval", () =>
    Effect.gen(function* () {
      const { raw, store } = yield* setup({ flushInterval: "1 hour", batchSize: 5 })
      for (let i = 0; i < 5; i++) yield* store.set(`s${i}`, { userId: "u1", requests: i })
      yield* eventually(
        Effect.map(
          Effect.promise(() => raw.exists("app:s:s0", "app:s:s1", "app:s:s2", "app:s:s3", "app:s:s4")),
          (n) => n === 5
        ),
        "five sessions in Redis"
      )
      // Redis has the keys a moment before the store has handled the pipeline's reply.
      yield* eventually(
        Effect.map(store.stats, (s) => s.flushes >= 1),
        "the flush counted"
      )
      assert.strictEqual((yield* store.stats).flushes, 1, "one batch, not one write per session")
    })
  )

  it.scoped("write-through: a set is in Redis when the call returns; delete too", () =>
    Effect.gen(function* () {
      const { raw, store } = yield* setup({ writeMode: "write-through" })
      yield* store.set("a", { userId: "u1", requests: 1 })
      assert.strictEqual(yield* Effect.promise(() => raw.exists("app:s:a")), 1)
      assert.strictEqual((yield* store.stats).pendingWrites, 0)
      yield* store.delete("a")
      assert.strictEqual(yield* Effect.promise(() => raw.exists("app:s:a")), 0)
      assert.strictEqual(yield* Effect.promise(() => raw.zcard("app:i:user:u1")), 0, "its index entry went too")
    })
  )

  it.scoped("sessions and index keys carry Redis TTLs; keys start with the prefix", () =>
    Effect.gen(function* () {
      const { raw, store } = yield* setup({ writeMode: "write-through", ttl: "1 hour" })
      yield* store.set("a", { userId: "u1", requests: 1 }, { ttl: "10 minutes" })
      const sessionTtl = yield* Effect.promise(() => raw.pttl("app:s:a"))
      assert.isTrue(sessionTtl > 9 * 60_000 && sessionTtl <= 10 * 60_000, `PTTL ${sessionTtl}`)
      assert.isTrue((yield* Effect.promise(() => raw.pttl("app:i:user:u1"))) > 9 * 60_000)
      assert.deepStrictEqual((yield* Effect.promise(() => raw.keys("*"))).sort(), ["app:i:user:u1", "app:s:a"])
    })
  )

  it.scoped(
    "a value in Redis that fails the schema: a typed error for that session, counted, nothing else broken",
    () =>
      Effect.gen(function* () {
        const { raw, store } = yield* setup({ writeMode: "write-through" })
        yield* store.set("good", { userId: "u1", requests: 1 })
        // Written by an older version of the app (requests was a string), and a corrupted one.
        const old = JSON.stringify({ v: { userId: "u1", requests: "7" }, e: 9e15, i: { user: "u1" } })
        yield* Effect.promise(() => raw.set("app:s:old", old))
        yield* Effect.promise(() => raw.zadd("app:i:user:u1", 9e15, "old"))
        yield* Effect.promise(() => raw.set("app:s:garbage", "{not json"))
        const oldError = yield* Effect.flip(store.get("old"))
        assert.strictEqual(oldError._tag, "SessionSchemaError")
        assert.strictEqual(oldError.id, "old")
        assert.strictEqual(oldError.direction, "decode")
        assert.strictEqual((yield* Effect.flip(store.get("garbage"))).direction, "decode")
        assert.strictEqual((yield* Effect.flip(store.update("old", (s) => s))).id, "old")
        // findBy leaves the bad one out and returns the rest.
        assert.deepStrictEqual(
          (yield* store.findBy("user", "u1")).map((f) => f.id),
          ["good"]
        )
        assert.deepStrictEqual(yield* store.get("good"), Option.some({ userId: "u1", requests: 1 }))
        const stats = yield* store.stats
        assert.strictEqual(stats.schemaErrors, 4)
        assert.isFalse(stats.fallback)
        // Overwriting a bad value repairs it.
        yield* store.set("old", { userId: "u2", requests: 0 })
        assert.deepStrictEqual(yield* store.get("old"), Option.some({ userId: "u2", requests: 0 }))
        assert.deepStrictEqual(yield* Effect.promise(() => raw.zrange("app:i:user:u1", "0", "-1")), ["good"])
      })
  )

  it.scoped("two stores over one Redis (two instances) see each other's sessions and indexes", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      const instance = () =>
        Effect.flatMap(RedisClient.make({ url: server.url, commandTimeout }), (client) =>
          RedisSessionStore.make<Session, "user">({
            schema: Session,
            indexes,
            cacheTtl: "1 second",
            writeMode: "write-through"
          }).pipe(Effect.provideService(RedisClient.RedisClient, client))
        )
      const one = yield* instance()
      const two = yield* instance()
      yield* one.set("a", { userId: "u1", requests: 0 })
      assert.deepStrictEqual(yield* two.get("a"), Option.some({ userId: "u1", requests: 0 }))
      yield* Effect.all(
        Array.from({ length: 50 }, (_, i) =>
          (i % 2 === 0 ? one : two).update("a", (s) => ({ ...s, requests: s.requests + 1 }))
        ),
        { concurrency: "unbounded", discard: true }
      )
      yield* TestClock.adjust("1 second")
      assert.strictEqual(Option.getOrThrow(yield* one.get("a")).requests, 50)
      assert.strictEqual(Option.getOrThrow(yield* two.get("a")).requests, 50)
      yield* two.set("b", { userId: "u1", requests: 0 })
      assert.deepStrictEqual((yield* one.findBy("user", "u1")).map((f) => f.id).sort(), ["a", "b"])
      // getOrCreate agrees on one creator across instances.
      const [x, y] = yield* Effect.all(
        [
          one.getOrCreate("c", Effect.succeed({ userId: "from-one", requests: 0 })),
          two.getOrCreate("c", Effect.succeed({ userId: "from-two", requests: 0 }))
        ],
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(x, y)
    })
  )

  it.scoped("layerConfig reads REDIS_URL (redacted) and provides a store of your own tag", () =>
    Effect.gen(function* () {
      const server = yield* RedisServer.make()
      class Sessions extends SessionStore.Tag("test/Sessions")<Sessions, Session, "user">() {}
      const live = RedisSessionStore.layerConfig(Sessions, { schema: Session, indexes, writeMode: "write-through" })
      const config = ConfigProvider.fromMap(new Map([["REDIS_URL", server.url]]))
      const found = yield* Effect.gen(function* () {
        const sessions = yield* Sessions
        yield* sessions.set("a", { userId: "u1", requests: 0 })
        return yield* sessions.findBy("user", "u1")
      }).pipe(Effect.provide(live.pipe(Layer.provide(Layer.setConfigProvider(config)))))
      assert.deepStrictEqual(
        found.map((f) => f.id),
        ["a"]
      )
      const bad = ConfigProvider.fromMap(new Map([["REDIS_COMMAND_TIMEOUT", "soon"]]))
      const error = yield* Effect.flip(
        Layer.build(live.pipe(Layer.provide(Layer.setConfigProvider(bad)))).pipe(Effect.scoped)
      )
      assert.include(String(error), "REDIS_COMMAND_TIMEOUT")
    })
  )
})

if (!available.run) {
  if (process.env.CI) it(available.reason, () => assert.fail(available.reason))
  else it.skip(available.reason, () => {})
}
