/**
 * `pnpm --filter @cistern/bench bench:sessions`: session store throughput and
 * latency, in one run, next to the raw Redis client doing the same calls.
 *
 * Starts its own `redis-server` on 127.0.0.1 and a free port (no persistence)
 * and stops it at the end. Every subject runs the same workload: `n` calls
 * over 1,000 session ids, `concurrency` of them in flight, each call timed.
 * A write-behind store's time includes draining its queue to Redis, so its
 * throughput counts writes that reached Redis, not writes accepted.
 *
 *   pnpm --filter @cistern/bench bench:sessions            full run
 *   pnpm --filter @cistern/bench bench:sessions -- --quick smoke run (small sizes)
 */
import { spawn } from "node:child_process"
import * as net from "node:net"
import * as os from "node:os"
import { RedisClient, RedisSessionStore } from "@cistern/redis"
import { SessionStore } from "@cistern/session"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { Redis } from "ioredis"
import { quantiles, sleep } from "./measure.js"

const quick = process.argv.includes("--quick")
const ids = 1_000
const concurrency = 64
const memoryCalls = quick ? 20_000 : 200_000
const redisCalls = quick ? 2_000 : 20_000

const Session = Schema.Struct({
  userId: Schema.String,
  account: Schema.String,
  requests: Schema.Number,
  lastSeen: Schema.Number
})
type Session = typeof Session.Type
const value = (i: number): Session => ({ userId: `user-${i % 97}`, account: "acct-a", requests: i, lastSeen: i })
const indexes = { user: (s: Session) => s.userId }

interface Row {
  readonly subject: string
  readonly op: string
  readonly calls: number
  readonly seconds: number
  readonly latencies: Float64Array
  readonly baseline?: string
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = net.createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** Times `calls` effects, `concurrency` at a time; `drain` runs after them and counts in the time. */
const timeEffect = <E>(
  op: (i: number) => Effect.Effect<unknown, E>,
  calls: number,
  drain: Effect.Effect<void, E> = Effect.void,
  inFlight = concurrency
) =>
  Effect.gen(function* () {
    const latencies = new Float64Array(calls)
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: calls }, (_, i) => i),
      (i) =>
        Effect.suspend(() => {
          const t = performance.now()
          return Effect.map(op(i), () => {
            latencies[i] = performance.now() - t
          })
        }),
      { concurrency: inFlight, discard: true }
    )
    yield* drain
    return { seconds: (performance.now() - start) / 1000, latencies }
  })

/** Times `calls` promise calls, `concurrency` workers pulling the next one. */
const timePromise = async (op: (i: number) => Promise<unknown>, calls: number) => {
  const latencies = new Float64Array(calls)
  let next = 0
  const start = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const i = next++
        const t = performance.now()
        await op(i)
        latencies[i] = performance.now() - t
      }
    })
  )
  return { seconds: (performance.now() - start) / 1000, latencies }
}

const drained = (store: SessionStore.SessionStore<Session, "user">) =>
  Effect.gen(function* () {
    while ((yield* store.stats).pendingWrites > 0) yield* Effect.promise(() => sleep(1))
  })

const redisStore = (
  url: string,
  prefix: string,
  options: Partial<RedisSessionStore.Options<Session, "user">>
): Effect.Effect<SessionStore.SessionStore<Session, "user">, never, Scope.Scope> =>
  Effect.flatMap(RedisClient.make({ url }), (client) =>
    RedisSessionStore.make<Session, "user">({ schema: Session, indexes, prefix, ...options }).pipe(
      Effect.provideService(RedisClient.RedisClient, client)
    )
  )

const run = (url: string) =>
  Effect.gen(function* () {
    const rows: Array<Row> = []
    const add = (
      subject: string,
      op: string,
      calls: number,
      r: { seconds: number; latencies: Float64Array },
      baseline?: string
    ) => rows.push({ subject, op, calls, ...r, ...(baseline === undefined ? {} : { baseline }) })
    const key = (i: number) => `s${i % ids}`

    // Raw client: what Redis itself costs from this process.
    const raw = new Redis(url, { enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    raw.on("error", () => {})
    yield* Effect.promise(() => new Promise((resolve) => raw.once("ready", resolve)))
    const json = (i: number) => JSON.stringify({ v: value(i), e: 9e15, i: { user: value(i).userId } })
    add(
      "ioredis (raw)",
      "SET",
      redisCalls,
      yield* Effect.promise(() => timePromise((i) => raw.set(`raw:${key(i)}`, json(i), "PX", 3_600_000), redisCalls))
    )
    add(
      "ioredis (raw)",
      "GET",
      redisCalls,
      yield* Effect.promise(() => timePromise((i) => raw.get(`raw:${key(i)}`), redisCalls))
    )
    const pipelined = yield* Effect.promise(() =>
      timePromise(async (b) => {
        const p = raw.pipeline()
        for (let j = 0; j < 100; j++) p.set(`raw:${key(b * 100 + j)}`, json(b * 100 + j), "PX", 3_600_000)
        await p.exec()
      }, redisCalls / 100)
    )
    add("ioredis (raw)", "SET, pipelined 100 per exec", redisCalls, {
      seconds: pipelined.seconds,
      latencies: pipelined.latencies
    })
    raw.disconnect()

    // The memory store: one call at a time (a memory call never waits; 64 fibers would measure the fibers).
    const memory = yield* SessionStore.make<Session, "user">({ schema: Session, indexes, capacity: 10_000 })
    add(
      "memory store",
      "set",
      memoryCalls,
      yield* timeEffect((i) => memory.set(key(i), value(i)), memoryCalls, Effect.void, 1)
    )
    add("memory store", "get", memoryCalls, yield* timeEffect((i) => memory.get(key(i)), memoryCalls, Effect.void, 1))
    add(
      "memory store",
      "update",
      memoryCalls,
      yield* timeEffect(
        (i) => memory.update(key(i), (s) => ({ ...s, requests: s.requests + 1 })),
        memoryCalls,
        Effect.void,
        1
      )
    )

    // Redis store, write-behind: pipelined batches of 100.
    const behind = yield* redisStore(url, "behind:", {
      batchSize: 100,
      flushInterval: "50 millis",
      cacheTtl: "5 minutes"
    })
    add(
      "Redis store, write-behind (batches of 100)",
      "set (until in Redis)",
      redisCalls,
      yield* timeEffect((i) => behind.set(key(i), value(i)), redisCalls, drained(behind)),
      "SET"
    )
    add(
      "Redis store, write-behind (batches of 100)",
      "get (cached)",
      redisCalls,
      yield* timeEffect((i) => behind.get(key(i)), redisCalls),
      "GET"
    )

    // Redis store, write-through: one script call per write.
    const through = yield* redisStore(url, "through:", { writeMode: "write-through", cacheTtl: "1 millis" })
    add(
      "Redis store, write-through",
      "set",
      redisCalls,
      yield* timeEffect((i) => through.set(key(i), value(i)), redisCalls),
      "SET"
    )
    yield* Effect.promise(() => sleep(5))
    add(
      "Redis store, write-through",
      "get (read-through, cache expired)",
      redisCalls,
      yield* timeEffect((i) => through.get(key(i)), redisCalls),
      "GET"
    )
    add(
      "Redis store, write-through",
      "update (atomic, across instances)",
      redisCalls,
      yield* timeEffect((i) => through.update(key(i), (s) => ({ ...s, requests: s.requests + 1 })), redisCalls),
      "SET"
    )
    return rows
  }).pipe(Effect.scoped)

const us = (ms: number) => (ms * 1000).toFixed(ms < 0.01 ? 2 : 0)

const report = (rows: ReadonlyArray<Row>) => {
  const throughput = (r: Row) => r.calls / r.seconds
  const raw = (op: string) => rows.find((r) => r.subject === "ioredis (raw)" && r.op === op)
  const lines = [
    `## Session stores${quick ? " (quick smoke run: sizes too small to mean anything)" : ""}`,
    "",
    `- date: ${new Date().toISOString().slice(0, 10)}; machine: ${os.availableParallelism()} cores ` +
      `(${os.cpus()[0]?.model.trim() ?? "unknown cpu"}), load average ${os.loadavg()[0]!.toFixed(1)}, Node ${process.version}`,
    `- ${concurrency} calls in flight (memory store: 1) over ${ids} session ids; redis-server on 127.0.0.1 in the same machine`,
    "- ×: throughput relative to the raw ioredis call of the same kind (GET for reads, SET for writes) in this run",
    "",
    "| subject | call | calls | calls/s | × raw | p50 µs | p99 µs |",
    "|---|---|---:|---:|---:|---:|---:|"
  ]
  for (const r of rows) {
    const [p50, p99] = quantiles(r.latencies, [0.5, 0.99])
    const base = r.baseline === undefined ? undefined : raw(r.baseline)
    const ratio = base === undefined ? "" : `${(throughput(r) / throughput(base)).toFixed(2)}×`
    lines.push(
      `| ${r.subject} | ${r.op} | ${r.calls} | ${Math.round(throughput(r)).toLocaleString("en-US")} | ${ratio} | ${us(p50!)} | ${us(p99!)} |`
    )
  }
  return lines.join("\n")
}

const main = async () => {
  const port = await freePort()
  const server = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"],
    {
      stdio: "ignore"
    }
  )
  try {
    for (let i = 0; i < 200; i++) {
      const up = await new Promise<boolean>((resolve) => {
        const s = net.connect({ port, host: "127.0.0.1" }, () => {
          s.destroy()
          resolve(true)
        })
        s.once("error", () => resolve(false))
      })
      if (up) break
      await sleep(25)
    }
    const rows = await Effect.runPromise(run(`redis://127.0.0.1:${port}`))
    process.stdout.write(`${report(rows)}\n`)
  } finally {
    server.kill("SIGKILL")
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`${String(error)}\n`)
    process.exit(1)
  }
)
