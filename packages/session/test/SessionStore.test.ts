import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as SessionMetrics from "../src/SessionMetrics.js"
import * as SessionStore from "../src/SessionStore.js"

const Session = Schema.Struct({ userId: Schema.String, requests: Schema.Number })
type Session = typeof Session.Type

class Sessions extends SessionStore.Tag("test/Sessions")<Sessions, Session, "user">() {}

describe("SessionStore (memory)", () => {
  it.scoped("capacity bounds the store: the least recently used session goes, and is counted", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore.make({ schema: Session, capacity: 2, indexes: { user: (s) => s.userId } })
      yield* store.set("a", { userId: "u1", requests: 0 })
      yield* store.set("b", { userId: "u1", requests: 0 })
      yield* store.get("a")
      yield* store.set("c", { userId: "u1", requests: 0 })
      assert.isTrue(Option.isNone(yield* store.get("b")))
      assert.isTrue(Option.isSome(yield* store.get("a")))
      const found = (yield* store.findBy("user", "u1")).map((f) => f.id).sort()
      assert.deepStrictEqual(found, ["a", "c"], "the evicted session's index entry went too")
      const stats = yield* store.stats
      assert.strictEqual(stats.live, 2)
      assert.strictEqual(stats.evictions, 1)
    })
  )

  it.scoped("the cleanup fiber removes expired sessions and their index entries without any read", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore.make({
        schema: Session,
        ttl: "1 minute",
        cleanupInterval: "30 seconds",
        indexes: { user: (s) => s.userId }
      })
      yield* store.set("a", { userId: "u1", requests: 0 })
      yield* store.set("b", { userId: "u1", requests: 0 }, { ttl: "5 minutes" })
      yield* TestClock.adjust("90 seconds")
      const stats = yield* store.stats
      assert.strictEqual(stats.live, 1)
      assert.strictEqual(stats.expired, 1)
      assert.strictEqual(stats.hits + stats.misses, 0, "no read did it")
      assert.deepStrictEqual(
        (yield* store.findBy("user", "u1")).map((f) => f.id),
        ["b"]
      )
    })
  )

  it.scoped("a failing create stores nothing and its error reaches the caller", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore.make({ schema: Session })
      const error = yield* Effect.flip(store.getOrCreate("a", Effect.fail("no account" as const)))
      assert.strictEqual(error, "no account")
      assert.isTrue(Option.isNone(yield* store.get("a")))
    })
  )

  it.effect("layerMemory provides the store as a tag of your own", () =>
    Effect.gen(function* () {
      const sessions = yield* Sessions
      yield* sessions.set("a", { userId: "u1", requests: 1 })
      assert.deepStrictEqual(yield* sessions.get("a"), Option.some({ userId: "u1", requests: 1 }))
      assert.isTrue(SessionStore.isSessionStore(sessions))
    }).pipe(Effect.provide(SessionStore.layerMemory(Sessions, { schema: Session, indexes: { user: (s) => s.userId } })))
  )

  it.scoped("stats reach the metrics, labelled with the store's name", () =>
    Effect.gen(function* () {
      const store = yield* SessionStore.make({ schema: Session, capacity: 1, name: "metrics-test" })
      yield* store.set("a", { userId: "u1", requests: 0 })
      yield* store.set("b", { userId: "u1", requests: 0 })
      yield* store.get("b")
      yield* store.get("a")
      yield* TestClock.adjust("5 seconds")
      const counter = (metric: Metric.Metric.Counter<number>) =>
        Effect.map(Metric.value(Metric.tagged(metric, "store", "metrics-test")), (s) => s.count)
      assert.strictEqual(yield* counter(SessionMetrics.hits), 1)
      assert.strictEqual(yield* counter(SessionMetrics.misses), 1)
      assert.strictEqual(yield* counter(SessionMetrics.evictions), 1)
      const live = yield* Metric.value(Metric.tagged(SessionMetrics.live, "store", "metrics-test"))
      assert.strictEqual(live.value, 1)
    })
  )

  it("invalid options are RangeErrors naming the option", () => {
    assert.throws(() => Effect.runSync(Effect.scoped(SessionStore.make({ schema: Session, ttl: 0 }))), /ttl/)
  })
})
