/**
 * `pnpm bench:vector`: the comparison the hand-written service made — 100 concurrent workers making
 * requests through a pool of 10 connections, against a new connection per
 * request — on a throwaway PostgreSQL cluster of its own (so the numbers do not
 * depend on a server's `max_connections` or authentication).
 *
 * Each request is one `POST /search`'s work: a cosine-similarity search over
 * the stored vectors. Rounds alternate between the two ways, and the median
 * round of each is compared. `--quick`: fewer requests, for a smoke run.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Logger, LogLevel } from "effect"
import * as Connection from "./Connection.js"
import * as PgServer from "./PgServer.js"
import * as VectorPool from "./VectorPool.js"
import * as VectorStore from "./VectorStore.js"

const quick = process.argv.includes("--quick")
const workers = 100
const requests = quick ? 200 : 1_000
const rounds = quick ? 1 : 3
const dimension = 32
const stored = 200

const vector = (seed: number) => Array.from({ length: dimension }, (_, i) => Math.sin(seed * 7.1 + i * 1.3))

const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]

/** Runs `n` requests on `workers` fibers; returns the wall time in milliseconds. */
const timed = <E>(request: (i: number) => Effect.Effect<unknown, E>, n = requests) =>
  Effect.gen(function* () {
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      request,
      {
        concurrency: workers,
        discard: true
      }
    )
    return performance.now() - started
  })

const program = Effect.gen(function* () {
  const server = yield* PgServer.make()
  const pool = yield* VectorPool.make({ url: server.url, size: 10, applicationName: "bench-pooled" })
  yield* pool.use(VectorStore.migrate)
  yield* pool.use((c) =>
    VectorStore.insert(
      c,
      Array.from({ length: stored }, (_, i) => ({ label: `doc-${i}`, embedding: vector(i) }))
    )
  )

  const search = (c: Connection.Connection, i: number) => VectorStore.search(c, vector(i % 97), 5)
  const viaPool = (i: number) => pool.use((c) => search(c, i))
  const viaNewConnection = (i: number) =>
    Effect.scoped(
      Effect.flatMap(Connection.connect({ url: server.url, applicationName: "bench-unpooled" }), (c) => search(c, i))
    )
  const pooled = timed(viaPool)
  const unpooled = timed(viaNewConnection)

  yield* Console.log(
    `PostgreSQL ${server.version} on 127.0.0.1 (trust auth), ${stored} vectors of ${dimension} dimensions; ` +
      `${requests} searches by ${workers} concurrent workers, ${rounds} round(s) each`
  )
  // Warm both paths (the server's caches, the JIT) before measuring.
  yield* timed(viaPool, workers)
  yield* timed(viaNewConnection, workers)

  const pooledTimes: Array<number> = []
  const unpooledTimes: Array<number> = []
  for (let round = 0; round < rounds; round++) {
    pooledTimes.push(yield* pooled)
    unpooledTimes.push(yield* unpooled)
  }
  const p = median(pooledTimes)
  const u = median(unpooledTimes)
  const rate = (ms: number) => Math.round((requests / ms) * 1000)
  yield* Console.log(`pooled (10 connections)        ${p.toFixed(0).padStart(6)} ms  ${rate(p)} req/s`)
  yield* Console.log(`new connection per request     ${u.toFixed(0).padStart(6)} ms  ${rate(u)} req/s`)
  yield* Console.log(`pooled is ${(u / p).toFixed(1)}x faster (the hand-written service claimed 7.5x)`)
  const stats = yield* pool.stats
  yield* Console.log(`pool: ${stats.created} connections opened for ${stats.requests} requests`)
})

program.pipe(Effect.scoped, Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)), NodeRuntime.runMain)
