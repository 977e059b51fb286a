import { HttpClient } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Layer, Stream } from "effect"
import { UpstreamHttpClient, UpstreamPool } from "../src/index.js"
import { eventually, upstream } from "./utils/servers.js"

/** What a caller does with one request. */
type Op = "read" | "unread" | "cut" | "scopeClosed" | "reset" | "close" | "status" | "interrupt"

const ops: ReadonlyArray<Op> = ["read", "unread", "cut", "scopeClosed", "reset", "close", "status", "interrupt"]

describe("pooled sockets", () => {
  it.scopedLive("whatever requests do, every pooled connection is one open upstream socket and no lease leaks", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const context = yield* Layer.build(
        UpstreamHttpClient.layer({ maxPerKey: 3, maxTotal: 3, acquireTimeout: "20 seconds" })
      )
      const client = yield* Effect.provide(HttpClient.HttpClient, context)
      const pool = yield* Effect.provide(UpstreamPool.UpstreamPool, context)
      const url = server.url

      /** Runs one op; returns whether its outcome was the expected one. */
      const run = (op: Op): Effect.Effect<boolean> => {
        switch (op) {
          case "read":
            return client.get(`${url}/hello`).pipe(
              Effect.flatMap((r) => r.text),
              Effect.map((body) => body === "hello"),
              Effect.orElseSucceed(() => false)
            )
          case "unread":
            return client.get(`${url}/hello`).pipe(
              Effect.map((r) => r.status === 200),
              Effect.orElseSucceed(() => false)
            )
          case "cut":
            return client.get(`${url}/stream`).pipe(
              Effect.flatMap((r) => Stream.runHead(r.stream)),
              Effect.map((head) => head._tag === "Some"),
              Effect.orElseSucceed(() => false)
            )
          case "scopeClosed":
            return Effect.scoped(HttpClient.withScope(client).get(`${url}/stream`)).pipe(
              Effect.map((r) => r.status === 200),
              Effect.orElseSucceed(() => false)
            )
          case "reset":
            return client.get(`${url}/reset`).pipe(
              Effect.flatMap((r) => r.text),
              Effect.as(false),
              Effect.orElseSucceed(() => true)
            )
          case "close":
            return client.get(`${url}/close`).pipe(
              Effect.flatMap((r) => r.text),
              Effect.map((body) => body === "bye"),
              Effect.orElseSucceed(() => false)
            )
          case "status":
            return client.get(`${url}/status/503`).pipe(
              Effect.map((r) => r.status === 503),
              Effect.orElseSucceed(() => false)
            )
          case "interrupt":
            return client.get(`${url}/slow?ms=200`).pipe(
              Effect.flatMap((r) => r.text),
              Effect.timeout("5 millis"),
              Effect.as(false),
              Effect.orElseSucceed(() => true)
            )
        }
      }

      const property = fc.asyncProperty(
        fc.array(fc.constantFrom(...ops), { minLength: 1, maxLength: 16 }),
        fc.integer({ min: 1, max: 6 }),
        (batch, concurrency) =>
          Effect.runPromise(
            Effect.gen(function* () {
              server.resetCounts()
              const outcomes = yield* Effect.forEach(batch, run, { concurrency })
              assert.deepStrictEqual(
                outcomes.map((ok, i) => (ok ? "ok" : batch[i])),
                batch.map(() => "ok")
              )
              const stats = yield* eventually(
                () => ({ pool: Effect.runSync(pool.stats), open: server.open() }),
                (s) => s.pool.inUse === 0 && s.pool.waiting === 0 && s.open === s.pool.size,
                "pooled connections = open upstream sockets"
              )
              assert.isAtMost(stats.pool.size, 3)
              // Never more than the limit open at once, as the upstream's kernel counts them.
              assert.isAtMost(server.maxOpen(), 3)
            })
          )
      )
      yield* Effect.promise(() => fc.assert(property, { numRuns: 12 }))
    })
  )
})
