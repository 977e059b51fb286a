import { HttpRouter, HttpServer, HttpServerResponse } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Either, Exit, Fiber, FastCheck as fc, Layer, Ref, TestClock } from "effect"
import { ConcurrencyLimit } from "../src/index.js"
import { eventually, listen, start } from "./utils/streaming.js"

const settle = Effect.repeatN(Effect.yieldNow(), 20)

const failure = <A, E>(exit: Exit.Exit<A, E>): E | undefined =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : undefined

describe("ConcurrencyLimit", () => {
  it.effect("N run, Q wait, and the next caller is turned away at once with queue-full", () =>
    Effect.gen(function* () {
      const limit = yield* ConcurrencyLimit.make({ maxConcurrent: 2, maxQueued: 3, queueTimeout: "5 seconds" })
      const gate = yield* Deferred.make<void>()
      const fibers = yield* Effect.forEach(Array.from({ length: 5 }), () =>
        Effect.fork(limit.withPermit(Deferred.await(gate)))
      )
      yield* settle
      assert.deepInclude(yield* limit.stats, { inFlight: 2, queued: 3 })
      const rejected = yield* Effect.exit(ConcurrencyLimit.withLimit(Effect.void, limit))
      const error = failure(rejected)
      assert.instanceOf(error, ConcurrencyLimit.ConcurrencyLimitExceeded)
      assert.strictEqual(error?.reason, "queue-full")
      assert.strictEqual(error?.retryAfterSeconds, 1)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll(fibers)
      assert.deepInclude(yield* limit.stats, { inFlight: 0, queued: 0, admitted: 5, rejected: 1 })
    })
  )

  it.effect("a queued caller is turned away after queueTimeout, not before", () =>
    Effect.gen(function* () {
      const limit = yield* ConcurrencyLimit.make({ maxConcurrent: 1, maxQueued: 1, queueTimeout: "10 seconds" })
      yield* Effect.fork(limit.withPermit(Effect.never))
      const queued = yield* Effect.fork(Effect.exit(limit.withPermit(Effect.void)))
      yield* settle
      yield* TestClock.adjust("9999 millis")
      assert.isNull(queued.unsafePoll())
      yield* TestClock.adjust("1 millis")
      const error = failure(yield* Fiber.join(queued))
      assert.strictEqual(error?.reason, "queue-timeout")
      assert.strictEqual(error?.waitedMillis, 10_000)
      assert.deepInclude(yield* limit.stats, { inFlight: 1, queued: 0 })
    })
  )

  it.effect("an interrupted queued caller leaves the queue, and slots go to waiters in arrival order", () =>
    Effect.gen(function* () {
      const limit = yield* ConcurrencyLimit.make({ maxConcurrent: 1, maxQueued: 2, queueTimeout: "1 minute" })
      const order = yield* Ref.make<ReadonlyArray<string>>([])
      const gate = yield* Deferred.make<void>()
      const first = yield* Effect.fork(limit.withPermit(Deferred.await(gate)))
      const a = yield* Effect.fork(limit.withPermit(Ref.update(order, (o) => [...o, "a"])))
      yield* settle
      const b = yield* Effect.fork(limit.withPermit(Ref.update(order, (o) => [...o, "b"])))
      yield* settle
      assert.strictEqual((yield* limit.stats).queued, 2)
      yield* Fiber.interrupt(a)
      assert.strictEqual((yield* limit.stats).queued, 1, "the interrupted caller left")
      const c = yield* Effect.fork(limit.withPermit(Ref.update(order, (o) => [...o, "c"])))
      yield* settle
      assert.strictEqual((yield* limit.stats).queued, 2, "its place was free for another")
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.joinAll([first, b, c])
      assert.deepStrictEqual(yield* Ref.get(order), ["b", "c"])
      assert.deepInclude(yield* limit.stats, { inFlight: 0, queued: 0 })
    })
  )

  it.effect.prop(
    "under any interleaving of arrivals, completions, interruptions and time, the limits hold and every slot comes back",
    [
      fc.array(fc.tuple(fc.constantFrom("arrive", "finish", "interrupt", "tick"), fc.nat(9)), {
        minLength: 1,
        maxLength: 60
      })
    ],
    ([ops]) =>
      Effect.gen(function* () {
        const limit = yield* ConcurrencyLimit.make({ maxConcurrent: 3, maxQueued: 4, queueTimeout: "5 seconds" })
        const running = yield* Ref.make(0)
        const tasks: Array<{ fiber: Fiber.RuntimeFiber<unknown, unknown>; gate: Deferred.Deferred<void> }> = []
        for (const [op, n] of ops) {
          if (op === "arrive") {
            const gate = yield* Deferred.make<void>()
            const body = Effect.acquireUseRelease(
              Ref.update(running, (r) => r + 1),
              () => Deferred.await(gate),
              () => Ref.update(running, (r) => r - 1)
            )
            tasks.push({ fiber: yield* Effect.fork(Effect.exit(limit.withPermit(body))), gate })
          } else if (op === "finish" && tasks.length > 0) {
            yield* Deferred.succeed(tasks[n % tasks.length].gate, undefined)
          } else if (op === "interrupt" && tasks.length > 0) {
            yield* Fiber.interrupt(tasks[n % tasks.length].fiber)
          } else if (op === "tick") {
            yield* TestClock.adjust(`${n} seconds`)
          }
          yield* settle
          const stats = yield* limit.stats
          assert.isAtMost(stats.inFlight, 3)
          assert.isAtMost(stats.queued, 4)
          assert.strictEqual(stats.inFlight, yield* Ref.get(running), "a slot is held exactly while its effect runs")
        }
        for (const task of tasks) yield* Deferred.succeed(task.gate, undefined)
        yield* Effect.forEach(tasks, (t) => Fiber.await(t.fiber))
        assert.deepInclude(yield* limit.stats, { inFlight: 0, queued: 0 })
      }),
    { fastCheck: { numRuns: 40 } }
  )

  it.effect(
    "reads MAX_CONCURRENT_REQUESTS, MAX_QUEUED_REQUESTS and QUEUE_TIMEOUT; a bad value names its variable",
    () =>
      Effect.gen(function* () {
        const read = (map: Record<string, string>) =>
          Effect.withConfigProvider(
            Effect.either(ConcurrencyLimit.config()),
            ConfigProvider.fromMap(new Map(Object.entries(map)))
          )
        const options = yield* read({
          MAX_CONCURRENT_REQUESTS: "100",
          MAX_QUEUED_REQUESTS: "0",
          QUEUE_TIMEOUT: "2 seconds"
        })
        assert.isTrue(Either.isRight(options))
        if (Either.isRight(options)) {
          const limit = yield* ConcurrencyLimit.make(options.right)
          assert.strictEqual(limit.maxConcurrent, 100)
          assert.strictEqual(limit.maxQueued, 0)
          assert.strictEqual((yield* limit.stats).queueTimeoutMillis, 2000)
        }
        const bad = yield* read({ MAX_CONCURRENT_REQUESTS: "many" })
        assert.isTrue(Either.isLeft(bad))
        if (Either.isLeft(bad)) assert.include(String(bad.left), "MAX_CONCURRENT_REQUESTS")
        const defaults = yield* Effect.flatMap(ConcurrencyLimit.ConcurrencyLimit, (limit) => limit.stats).pipe(
          Effect.provide(ConcurrencyLimit.layerConfig(ConcurrencyLimit.config(), { maxConcurrent: 7 })),
          Effect.withConfigProvider(ConfigProvider.fromMap(new Map()))
        )
        assert.deepInclude(defaults, { maxConcurrent: 7, maxQueued: 100, queueTimeoutMillis: 10_000 })
      })
  )

  it.scoped(
    "over real sockets: N in flight and Q queued, request N+Q+1 gets 503 + Retry-After at once, a queued client that disconnects frees its place, queued ones get 503 after T",
    () =>
      Effect.gen(function* () {
        const limit = yield* ConcurrencyLimit.make({
          maxConcurrent: 2,
          maxQueued: 2,
          queueTimeout: "30 seconds",
          retryAfter: "3 seconds"
        })
        const gate = yield* Deferred.make<void>()
        const router = HttpRouter.empty.pipe(
          HttpRouter.get("/work", Effect.as(Deferred.await(gate), HttpServerResponse.text("done")))
        )
        const server = yield* listen(HttpServer.serve(router, ConcurrencyLimit.middleware(limit)))
        const stats = limit.stats
        const inFlight = [start(server.port, "/work"), start(server.port, "/work")]
        yield* eventually(Effect.map(stats, (s) => s.inFlight === 2))
        const queued = [start(server.port, "/work"), start(server.port, "/work")]
        yield* eventually(Effect.map(stats, (s) => s.queued === 2))

        // Answered without the (test) clock moving: at once.
        const turnedAway = yield* Effect.promise(() => start(server.port, "/work").reply)
        assert.strictEqual(turnedAway.status, 503)
        assert.strictEqual(turnedAway.headers["retry-after"], "3")
        assert.include(JSON.parse(turnedAway.body), { _tag: "ConcurrencyLimitExceeded", reason: "queue-full" })

        queued[0].destroy()
        yield* eventually(Effect.map(stats, (s) => s.queued === 1))
        const third = start(server.port, "/work")
        yield* eventually(Effect.map(stats, (s) => s.queued === 2))

        yield* TestClock.adjust("30 seconds")
        for (const waiting of [queued[1], third]) {
          const reply = yield* Effect.promise(() => waiting.reply)
          assert.strictEqual(reply.status, 503)
          assert.strictEqual(reply.headers["retry-after"], "3")
          assert.include(JSON.parse(reply.body), { reason: "queue-timeout" })
        }
        yield* Deferred.succeed(gate, undefined)
        for (const running of inFlight) {
          const reply = yield* Effect.promise(() => running.reply)
          assert.strictEqual(reply.status, 200)
          assert.strictEqual(reply.body, "done")
        }
        yield* eventually(Effect.map(stats, (s) => s.inFlight === 0 && s.queued === 0))
      })
  )

  it.scopedLive("the limits hold under a burst of 500 requests, answered 429 when so configured", () =>
    Effect.gen(function* () {
      const limit = yield* ConcurrencyLimit.make({ maxConcurrent: 10, maxQueued: 20, queueTimeout: "20 seconds" })
      const now = yield* Ref.make(0)
      const peak = yield* Ref.make({ running: 0, queued: 0 })
      const work = Effect.gen(function* () {
        const running = yield* Ref.updateAndGet(now, (n) => n + 1)
        const { queued } = yield* limit.stats
        yield* Ref.update(peak, (p) => ({ running: Math.max(p.running, running), queued: Math.max(p.queued, queued) }))
        yield* Effect.sleep("5 millis")
        yield* Ref.update(now, (n) => n - 1)
        return HttpServerResponse.text("ok")
      })
      const router = HttpRouter.empty.pipe(HttpRouter.get("/work", work))
      const server = yield* listen(HttpServer.serve(router, ConcurrencyLimit.middleware(limit, { status: 429 })))
      const replies = yield* Effect.promise(() =>
        Promise.all(Array.from({ length: 500 }, () => start(server.port, "/work").reply))
      )
      const ok = replies.filter((r) => r.status === 200).length
      const limited = replies.filter((r) => r.status === 429)
      assert.strictEqual(ok + limited.length, 500)
      assert.isAtLeast(ok, 30, "at least the first N + Q were served")
      assert.isTrue(limited.every((r) => r.headers["retry-after"] === "1"))
      const p = yield* Ref.get(peak)
      assert.isAtMost(p.running, 10)
      assert.isAtMost(p.queued, 20)
      const stats = yield* limit.stats
      assert.deepInclude(stats, { inFlight: 0, queued: 0, admitted: ok, rejected: limited.length })
    })
  )

  it.effect("the layer provides the limit and `limited` runs under it", () =>
    Effect.gen(function* () {
      const out = yield* ConcurrencyLimit.limited(Effect.succeed(42))
      assert.strictEqual(out, 42)
      const stats = yield* Effect.flatMap(ConcurrencyLimit.ConcurrencyLimit, (l) => l.stats)
      assert.deepInclude(stats, { admitted: 1, maxConcurrent: 5 })
    }).pipe(Effect.provide(Layer.fresh(ConcurrencyLimit.layer({ maxConcurrent: 5 }))))
  )
})
