/**
 * One instance of a service under a cluster budget, run as its own Node
 * process by ClusterBudget.multiprocess.test.ts. Usage: `holder.ts <json>`
 * (see `Settings`). It runs `wants` workers; each takes a permit, opens a
 * connection to the test's echo server (the ground truth of what is live),
 * holds it (for a random 5–30 ms with `churn`, otherwise until the end) and
 * closes it before its permit is returned. When the lease is lost it retires
 * its connections (interrupts its workers) and starts again. It prints one
 * JSON line whenever the number it holds changes, and leaves the budget on
 * SIGTERM.
 */
import * as net from "node:net"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Random from "effect/Random"
import * as Schedule from "effect/Schedule"
import * as Stream from "effect/Stream"
import * as ClusterBudget from "../../src/ClusterBudget.js"
import * as RedisClient from "../../src/RedisClient.js"

interface Settings {
  readonly url: string
  readonly name: string
  readonly instanceId: string
  readonly total: number
  readonly perTenant: number
  readonly leaseMillis: number
  readonly echoPort: number
  readonly tenants: ReadonlyArray<string>
  readonly wants: number
  readonly churn: boolean
  /** Boot, then wait for a `go` line on stdin before joining the budget (so processes boot in parallel). */
  readonly waitForGo?: boolean
}

const settings = JSON.parse(process.argv[2]!) as Settings

/** A connection the echo server counts until it has seen our goodbye (so it is gone before the permit is). */
const connect = (tenant: string) =>
  Effect.acquireRelease(
    Effect.async<net.Socket, Error>((resume) => {
      const socket = net.connect({ port: settings.echoPort, host: "127.0.0.1" })
      socket.once("error", (e) => resume(Effect.fail(e)))
      socket.once("data", () => resume(Effect.succeed(socket)))
      socket.once("connect", () => socket.write(`${tenant}\n`))
    }),
    (socket) =>
      Effect.async<void>((resume) => {
        socket.once("close", () => resume(Effect.void))
        socket.once("error", () => resume(Effect.void))
        socket.end("bye\n")
      })
  )

const go = Effect.async<void>((resume) => {
  if (settings.waitForGo !== true) return resume(Effect.void)
  process.stdin.on("data", (chunk: Buffer) => {
    if (chunk.toString("utf8").includes("go")) resume(Effect.void)
  })
})

const program = Effect.gen(function* () {
  yield* go
  const budget = yield* ClusterBudget.make({
    name: settings.name,
    instanceId: settings.instanceId,
    total: settings.total,
    perTenant: settings.perTenant,
    leaseTime: Duration.millis(settings.leaseMillis),
    acquireTimeout: "30 seconds"
  })
  const worker = (tenant: string) =>
    Effect.scoped(
      Effect.gen(function* () {
        yield* budget.permit(tenant)
        yield* connect(tenant)
        if (settings.churn) yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(5, 30)))
        else yield* Effect.never
      })
    ).pipe(
      Effect.catchAll(() => Effect.sleep("20 millis")),
      Effect.forever
    )
  const workers = Effect.all(
    Array.from({ length: settings.wants }, (_, i) => worker(settings.tenants[i % settings.tenants.length]!)),
    { concurrency: "unbounded", discard: true }
  )
  let current = yield* Effect.fork(workers)
  yield* Stream.runForEach(budget.lost, (event) =>
    Effect.gen(function* () {
      process.stdout.write(`${JSON.stringify({ lost: event })}\n`)
      yield* Fiber.interrupt(current)
      current = yield* Effect.fork(workers)
    })
  ).pipe(Effect.forkScoped)
  let last = -1
  yield* Effect.gen(function* () {
    const s = yield* budget.stats
    if (s.held !== last) {
      last = s.held
      process.stdout.write(`${JSON.stringify({ held: s.held, reclaimed: s.reclaimed, leasesLost: s.leasesLost })}\n`)
    }
  }).pipe(Effect.repeat(Schedule.spaced("10 millis")))
}).pipe(Effect.scoped, Effect.provide(RedisClient.layer({ url: settings.url, commandTimeout: "500 millis" })))

const fiber = Effect.runFork(program)
process.on("SIGTERM", () => {
  Effect.runPromise(Fiber.interrupt(fiber)).then(() => process.exit(0))
})
