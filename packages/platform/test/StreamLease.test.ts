import { KeyedPool } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Logger, LogLevel, Ref, type Scope, Stream, TestClock } from "effect"
import { StreamLease } from "../src/index.js"
import { connect, eventually, type Mode, post, relay, tokens, upstream } from "./utils/streaming.js"

const decoder = new TextDecoder()
const text = (chunks: Chunk.Chunk<Uint8Array>) =>
  Chunk.toReadonlyArray(chunks)
    .map((c) => decoder.decode(c))
    .join("")
const encode = (s: string) => new TextEncoder().encode(s)

/** Items that count themselves alive, for the in-memory (TestClock) tests. */
const counted = Effect.gen(function* () {
  const alive = yield* Ref.make(0)
  let serial = 0
  const acquire = Effect.acquireRelease(
    Effect.as(
      Ref.update(alive, (n) => n + 1),
      { id: ++serial }
    ),
    () => Ref.update(alive, (n) => n - 1)
  )
  return { alive, acquire }
})

const memoryPool = Effect.gen(function* () {
  const items = yield* counted
  const pool = yield* KeyedPool.make<string, { readonly id: number }, never, Scope.Scope>({
    acquire: () => items.acquire,
    maxPerKey: 2,
    maxTotal: 2
  })
  return { pool, alive: items.alive }
})

/** Records every log line at Error or above, and every line whose cause holds a defect. */
const errorLogs = Effect.gen(function* () {
  const lines: Array<string> = []
  const logger = Logger.make(({ cause, logLevel, message }) => {
    const defect = cause._tag !== "Empty" && String(cause).includes("Die")
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error) || defect) lines.push(`${logLevel.label} ${message}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
})

describe("StreamLease", () => {
  it.scopedLive(
    "a client that reads one SSE chunk and destroys its socket: the lease ends, the upstream socket closes, the next request gets a healthy connection",
    () =>
      Effect.gen(function* () {
        const up = yield* upstream
        const pool = yield* KeyedPool.make({ acquire: () => connect, maxPerKey: 1, maxTotal: 1 })
        const endings = yield* Ref.make<ReadonlyArray<StreamLease.Ending>>([])
        const server = yield* relay(pool, up, { onEnd: (ending) => Ref.update(endings, (e) => [...e, ending]) })

        const first = yield* Effect.promise(() => post(server.port, "/chat?tokens=500&delay=5", 1))
        assert.strictEqual(first.status, 200)
        assert.include(first.body, "data: tok-0")
        // Bounded: the lease is back and the cut connection destroyed within 2 s.
        yield* eventually(
          Effect.map(pool.stats, (s) => s.inUse === 0 && s.destroyed === 1),
          2_000
        )
        yield* eventually(
          Effect.sync(() => up.open() === 0),
          2_000
        )
        assert.deepStrictEqual(yield* Ref.get(endings), ["interrupted"])

        const second = yield* Effect.promise(() => post(server.port, "/chat?tokens=3&delay=1"))
        assert.strictEqual(second.status, 200)
        assert.isTrue(second.complete)
        assert.deepStrictEqual(tokens(second.body), ["tok-0", "tok-1", "tok-2"])
        assert.include(second.body, "data: [DONE]")
        assert.strictEqual(up.accepted(), 2, "a new upstream connection, not the cut one")
        const stats = yield* pool.stats
        assert.strictEqual(stats.inUse, 0)
        assert.strictEqual(stats.idle, 1, "the completed stream's connection is kept for reuse")
        assert.strictEqual(up.open(), 1)
      })
  )

  it.scopedLive("a completed stream gives its connection back, and the next stream reuses it", () =>
    Effect.gen(function* () {
      const up = yield* upstream
      const pool = yield* KeyedPool.make({ acquire: () => connect, maxPerKey: 1, maxTotal: 1 })
      const server = yield* relay(pool, up)
      for (let i = 0; i < 3; i++) {
        const reply = yield* Effect.promise(() => post(server.port, "/chat?tokens=4&delay=1"))
        assert.deepStrictEqual(tokens(reply.body), ["tok-0", "tok-1", "tok-2", "tok-3"])
        assert.strictEqual(reply.headers["content-type"], "text/event-stream")
        assert.strictEqual(reply.headers["cache-control"], "no-cache")
      }
      assert.strictEqual(up.accepted(), 1)
      const stats = yield* pool.stats
      assert.strictEqual(stats.created, 1)
      assert.strictEqual(stats.destroyed, 0)
    })
  )

  it.scopedLive(
    "an upstream that fails or resets mid-body: an SSE error event ends the stream and the connection is destroyed",
    () =>
      Effect.gen(function* () {
        const up = yield* upstream
        const pool = yield* KeyedPool.make({ acquire: () => connect, maxPerKey: 1, maxTotal: 1 })
        const server = yield* relay(pool, up)
        for (const mode of ["fail", "reset"] as const) {
          const reply = yield* Effect.promise(() => post(server.port, `/chat?tokens=10&delay=1&mode=${mode}&at=3`))
          assert.isTrue(reply.complete, "the downstream response ends cleanly")
          assert.deepStrictEqual(tokens(reply.body), ["tok-0", "tok-1", "tok-2"])
          assert.include(reply.body, 'event: error\ndata: {"error":{"type":"upstream_error"')
          assert.notInclude(reply.body, "[DONE]")
        }
        yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 0 && s.destroyed === 2))
        yield* eventually(Effect.sync(() => up.open() === 0))
      })
  )

  it.scopedLive("chunked with onFailure close: the body ends, the connection is destroyed", () =>
    Effect.gen(function* () {
      const up = yield* upstream
      const pool = yield* KeyedPool.make({ acquire: () => connect, maxPerKey: 1, maxTotal: 1 })
      const server = yield* relay(pool, up, { format: "chunked", onFailure: "close", contentType: "text/plain" })
      const reply = yield* Effect.promise(() => post(server.port, "/chat?tokens=10&delay=1&mode=fail&at=2"))
      assert.strictEqual(reply.headers["content-type"], "text/plain")
      assert.strictEqual(reply.headers["transfer-encoding"], "chunked")
      assert.deepStrictEqual(tokens(reply.body), ["tok-0", "tok-1"])
      assert.notInclude(reply.body, "event: error")
      yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 0 && s.destroyed === 1))
    })
  )

  it.scoped("past its maximum duration an SSE stream ends with a timeout event and its item is destroyed", () =>
    Effect.gen(function* () {
      const { alive, pool } = yield* memoryPool
      const endings = yield* Ref.make<ReadonlyArray<StreamLease.Ending>>([])
      const body = StreamLease.stream(
        pool,
        "llm",
        () => Stream.concat(Stream.make(encode("data: tok-0\n\n")), Stream.never),
        { maxDuration: "10 minutes", onEnd: (e) => Ref.update(endings, (all) => [...all, e]) }
      )
      const fiber = yield* Effect.fork(Stream.runCollect(body))
      yield* TestClock.adjust("9 minutes")
      assert.strictEqual((yield* pool.stats).inUse, 1)
      assert.isNull(fiber.unsafePoll())
      yield* TestClock.adjust("1 minute")
      const out = text(yield* Fiber.join(fiber))
      assert.strictEqual(
        out,
        'data: tok-0\n\nevent: error\ndata: {"error":{"type":"stream_timeout","message":"the stream passed its maximum duration of 600000 ms"}}\n\n'
      )
      assert.deepStrictEqual(yield* Ref.get(endings), ["timeout"])
      const stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0)
      assert.strictEqual(stats.destroyed, 1)
      assert.strictEqual(yield* Ref.get(alive), 0)
    })
  )

  it.scoped("a pool's default maximum duration closes a chunked body cleanly; a route may override it", () =>
    Effect.gen(function* () {
      const { pool } = yield* memoryPool
      const leases = StreamLease.make(pool, { format: "chunked", maxDuration: "1 minute" })
      const slow = () => Stream.concat(Stream.make(encode("a")), Stream.never)
      const short = yield* Effect.fork(Stream.runCollect(leases.stream("k", slow)))
      const long = yield* Effect.fork(Stream.runCollect(leases.stream("k", slow, { maxDuration: "5 minutes" })))
      yield* TestClock.adjust("1 minute")
      assert.strictEqual(text(yield* Fiber.join(short)), "a")
      assert.isNull(long.unsafePoll())
      assert.strictEqual((yield* pool.stats).inUse, 1)
      yield* TestClock.adjust("4 minutes")
      assert.strictEqual(text(yield* Fiber.join(long)), "a")
      assert.strictEqual((yield* pool.stats).inUse, 0)
    })
  )

  it.scoped(
    "an upstream that does not answer within the maximum duration fails with StreamTimeout and frees the lease",
    () =>
      Effect.gen(function* () {
        const { pool } = yield* memoryPool
        const fiber = yield* Effect.fork(
          Effect.scoped(StreamLease.respond(pool, "k", () => Effect.never, { maxDuration: "30 seconds" }))
        )
        yield* TestClock.adjust("30 seconds")
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
          assert.instanceOf(error, StreamLease.StreamTimeout)
        }
        const stats = yield* pool.stats
        assert.strictEqual(stats.inUse, 0)
        assert.strictEqual(stats.destroyed, 1)
      })
  )

  it.scoped("a completed body returns its item; an interrupted one destroys it", () =>
    Effect.gen(function* () {
      const { alive, pool } = yield* memoryPool
      const out = yield* Stream.runCollect(StreamLease.stream(pool, "k", () => Stream.make(encode("x"), encode("y"))))
      assert.strictEqual(text(out), "xy")
      let stats = yield* pool.stats
      assert.strictEqual(stats.idle, 1)
      assert.strictEqual(stats.destroyed, 0)

      const started = yield* Deferred.make<void>()
      const fiber = yield* Effect.fork(
        Stream.runDrain(
          StreamLease.stream(pool, "k", () =>
            Stream.concat(Stream.fromEffect(Effect.as(Deferred.succeed(started, undefined), encode("x"))), Stream.never)
          )
        )
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(fiber)
      stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0)
      assert.strictEqual(stats.destroyed, 1)
      assert.strictEqual(yield* Ref.get(alive), 0)
    })
  )

  it.scoped("a response whose body is never written is released when the request's scope closes", () =>
    Effect.gen(function* () {
      const { pool } = yield* memoryPool
      const response = yield* Effect.scoped(
        Effect.tap(
          StreamLease.respond(pool, "k", () => Effect.succeed(Stream.make(encode("x")))),
          () => Effect.map(pool.stats, (s) => assert.strictEqual(s.inUse, 1))
        )
      )
      assert.strictEqual(response.status, 200)
      const stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0)
      assert.strictEqual(stats.destroyed, 1, "never read to its end: not reused")
    })
  )

  it.scopedLive(
    "1,000 streams with client aborts, upstream failures and resets, timeouts and hangs leave no lease, no waiter, no extra socket, no defect",
    () =>
      Effect.gen(function* () {
        const logs = yield* errorLogs
        const rejections: Array<unknown> = []
        const onRejection = (reason: unknown) => rejections.push(reason)
        process.on("unhandledRejection", onRejection)
        yield* Effect.addFinalizer(() => Effect.sync(() => process.off("unhandledRejection", onRejection)))

        const seed = Number(process.env.STREAM_CHAOS_SEED ?? Date.now() % 1_000_000)
        let state = seed
        const random = () => {
          state = (state * 1_103_515_245 + 12_345) % 2_147_483_648
          return state / 2_147_483_648
        }
        const up = yield* upstream
        const pool = yield* KeyedPool.make({
          acquire: () => connect,
          maxPerKey: 48,
          maxTotal: 48,
          acquireTimeout: "20 seconds"
        })
        const ended: Record<StreamLease.Ending, number> = { completed: 0, failed: 0, timeout: 0, interrupted: 0 }
        // Streams that complete have no maximum duration (a loaded CI machine
        // must not turn them into timeouts); hanging ones get 150 ms.
        const server = yield* relay(pool, up, {
          onEnd: (e) =>
            Effect.sync(() => {
              ended[e]++
            })
        }).pipe(Effect.provide(logs.layer))

        type Kind = Mode | "abort"
        const plan: ReadonlyArray<Kind> = Array.from({ length: 1_000 }, () => {
          const r = random()
          return r < 0.5 ? "ok" : r < 0.65 ? "abort" : r < 0.75 ? "fail" : r < 0.82 ? "reset" : "hang"
        })
        const results = yield* Effect.forEach(
          plan,
          (kind) =>
            Effect.promise((signal) => {
              if (kind === "abort") {
                return post(server.port, `/chat?tokens=40&delay=2`, 1 + Math.floor(random() * 3), signal)
              }
              const max = kind === "hang" ? "&max=150" : ""
              return post(server.port, `/chat?tokens=8&delay=1&mode=${kind}&at=3${max}`, undefined, signal)
            }).pipe(Effect.map((reply) => ({ kind, reply }))),
          { concurrency: 100 }
        )

        const expected = Array.from({ length: 8 }, (_, i) => `tok-${i}`)
        for (const { kind, reply } of results) {
          if (kind === "abort") continue
          // On a loaded machine a hanging upstream may not even answer within its 150 ms.
          if (kind === "hang" && reply.status === 504) {
            assert.include(reply.body, "StreamTimeout")
            continue
          }
          assert.strictEqual(reply.status, 200, `seed ${seed}`)
          assert.isTrue(reply.complete, `seed ${seed}: ${kind} ends cleanly downstream`)
          if (kind === "ok") {
            assert.deepStrictEqual(tokens(reply.body), expected, `seed ${seed}: no lost or duplicated tokens`)
            assert.isTrue(reply.body.endsWith("data: [DONE]\n\n"), `seed ${seed}`)
          } else if (kind === "hang") {
            // Cut by its maximum duration: whatever arrived before, in order, once.
            const got = tokens(reply.body)
            assert.deepStrictEqual(got, expected.slice(0, got.length), `seed ${seed}: ${kind}`)
            assert.isAtMost(got.length, 3, `seed ${seed}`)
            assert.include(reply.body, '"stream_timeout"', `seed ${seed}`)
          } else {
            assert.deepStrictEqual(tokens(reply.body), expected.slice(0, 3), `seed ${seed}: ${kind}`)
            assert.include(reply.body, '"upstream_error"', `seed ${seed}`)
          }
        }

        yield* eventually(Effect.map(pool.stats, (s) => s.inUse === 0 && s.waiting === 0 && s.creating === 0))
        const stats = yield* pool.stats
        yield* eventually(Effect.sync(() => up.open() <= stats.idle))
        assert.isAtMost(up.open(), stats.idle, `seed ${seed}: open upstream sockets ≤ idle connections`)
        const count = (kind: Kind) => plan.filter((k) => k === kind).length
        const get = (e: StreamLease.Ending) => ended[e]
        assert.strictEqual(get("completed"), count("ok"), `seed ${seed}`)
        assert.strictEqual(get("failed"), count("fail") + count("reset"), `seed ${seed}`)
        assert.strictEqual(get("timeout"), count("hang"), `seed ${seed}`)
        assert.strictEqual(get("interrupted"), count("abort"), `seed ${seed}`)
        assert.strictEqual(stats.destroyed, 1_000 - count("ok"), `seed ${seed}: every cut connection destroyed`)
        assert.deepStrictEqual(logs.lines, [], `seed ${seed}: no error or defect logs`)
        assert.deepStrictEqual(rejections, [], `seed ${seed}: no unhandled rejections`)
      }),
    // About 10 s of CPU (1,000 streams through two HTTP hops, some 1,500 connections): on a loaded machine it
    // reached 60 s; the bound is for a hang, not a speed check.
    120_000
  )
})
