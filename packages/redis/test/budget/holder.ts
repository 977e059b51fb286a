/**
 * One instance of a service under a cluster budget, run as its own Node
 * process by the multi-process budget tests. It is either given its
 * settings at start (`holder.ts <json>`, see `Settings`) or started without
 * them and driven by JSON lines on stdin, one round after another, so a test
 * file boots its processes once: `{"join": Settings}` starts a round,
 * `{"leave": true}` ends it (printing `{"left": round}`), `go` lets a round
 * started with `waitForGo` join the budget.
 *
 * A round runs `wants` workers; each takes a permit, opens a connection to
 * the test's echo server (the ground truth of what is live; its first line
 * names the tenant and this instance) and, by `mode`:
 * - `hold`: holds it until the round ends, then starts again;
 * - `churn`: holds it for a random 5–30 ms, closes it, starts again;
 * - `idle`: through a real `KeyedPool` under the budget (`gate`, one key per
 *   worker), takes one lease and gives it back: the connection stays idle in
 *   the pool (a pool after a burst) until the pool closes it.
 * A connection is closed before its permit is returned. When the lease is
 * lost the instance retires its connections (interrupts its workers) and
 * starts them again. With `fair`, an `idle` instance's pool is governed
 * (`ClusterBudget.govern`): it closes idle connections while the budget says
 * this instance is above its fair share and others wait; `hold` and `churn`
 * workers keep theirs in use, so there is nothing for a pool to close.
 *
 * It prints one JSON line whenever its figures change, each lease-lost event,
 * and each eviction; it leaves the budget on SIGTERM.
 */
import * as net from "node:net"
import * as KeyedPool from "@cistern/pool/KeyedPool"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
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
  /** Shorthand for `mode: "churn"` (when `mode` is not given). */
  readonly churn: boolean
  readonly mode?: "hold" | "churn" | "idle"
  /** Boot, then wait for a `go` line on stdin before joining the budget (so processes boot in parallel). */
  readonly waitForGo?: boolean
  /** The budget's heartbeat interval; default a third of the lease. */
  readonly heartbeatMillis?: number
  /** The Redis client's command timeout; default 500 ms. */
  readonly commandTimeoutMillis?: number
  /** The Redis client's longest delay between reconnection attempts; default the client's. */
  readonly reconnectMillis?: number
  /** Close idle connections above the fair share when a heartbeat reports this instance over it. */
  readonly fair?: boolean
}

const out = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`)

let round = 0
let goSignal = Deferred.unsafeMake<void>(FiberId.none)

/** One round: a Redis client, the budget, the workers, the reports; all closed when it is interrupted. */
const run = (settings: Settings, thisRound: number) =>
  Effect.gen(function* () {
    const mode = settings.mode ?? (settings.churn ? "churn" : "hold")
    let open = 0
    /** Connections the pool closed while the round runs (mode `idle`): evicted for fairness. */
    let evicted = 0
    let ending = false

    /** A connection the echo server counts until it has seen our goodbye (so it is gone before the permit is). */
    const connect = (tenant: string) =>
      Effect.acquireRelease(
        Effect.async<net.Socket, Error>((resume) => {
          const socket = net.connect({ port: settings.echoPort, host: "127.0.0.1" })
          socket.once("error", (e) => resume(Effect.fail(e)))
          socket.once("data", () => {
            open++
            resume(Effect.succeed(socket))
          })
          socket.once("connect", () => socket.write(`${tenant} ${settings.instanceId}\n`))
        }),
        (socket) =>
          Effect.async<void>((resume) => {
            socket.once("close", () => {
              open--
              if (mode === "idle" && !ending) evicted++
              resume(Effect.void)
            })
            socket.once("error", () => {})
            socket.end("bye\n")
          })
      )

    const client = yield* RedisClient.make({
      url: settings.url,
      commandTimeout: Duration.millis(settings.commandTimeoutMillis ?? 500),
      ...(settings.reconnectMillis === undefined ? {} : { reconnectMax: Duration.millis(settings.reconnectMillis) })
    })
    if (settings.waitForGo === true) yield* Deferred.await(goSignal)
    const budget = yield* ClusterBudget.make({
      name: settings.name,
      instanceId: settings.instanceId,
      total: settings.total,
      perTenant: settings.perTenant,
      leaseTime: Duration.millis(settings.leaseMillis),
      ...(settings.heartbeatMillis === undefined
        ? {}
        : { heartbeatInterval: Duration.millis(settings.heartbeatMillis) }),
      acquireTimeout: "30 seconds"
    }).pipe(Effect.provideService(RedisClient.RedisClient, client))
    // Mode `idle`: the pool path of a service under the budget, one key (and connection) per worker.
    const pool = yield* KeyedPool.make({
      acquire: (key: { readonly tenant: string; readonly worker: number }) => connect(key.tenant),
      keyId: (key) => `${key.tenant}#${key.worker}`,
      group: (key) => key.tenant,
      maxPerKey: 1,
      gate: ClusterBudget.gate(budget)
    })
    if (mode === "idle" && settings.fair === true) yield* ClusterBudget.govern(budget, pool)
    // Closing the round closes the pool's connections after this: they are not evictions.
    yield* Effect.addFinalizer(() => Effect.sync(() => void (ending = true)))

    const retrying = <A, E, R>(self: Effect.Effect<A, E, R>) =>
      self.pipe(Effect.catchAll(() => Effect.sleep("20 millis")))
    const worker = (tenant: string, index: number): Effect.Effect<void> => {
      switch (mode) {
        case "hold":
          return Effect.forever(
            retrying(
              Effect.scoped(Effect.zipRight(budget.permit(tenant), Effect.zipRight(connect(tenant), Effect.never)))
            )
          )
        case "churn":
          return Effect.forever(
            retrying(
              Effect.scoped(
                Effect.gen(function* () {
                  yield* budget.permit(tenant)
                  yield* connect(tenant)
                  yield* Effect.sleep(Duration.millis(yield* Random.nextIntBetween(5, 30)))
                })
              )
            )
          )
        case "idle":
          // One lease, given back at once: the connection stays idle in the pool.
          return Effect.scoped(pool.get({ tenant, worker: index })).pipe(
            Effect.retry(Schedule.spaced("20 millis")),
            Effect.asVoid,
            Effect.ignore
          )
      }
    }
    const workers = Effect.all(
      Array.from({ length: settings.wants }, (_, i) => worker(settings.tenants[i % settings.tenants.length]!, i)),
      { concurrency: "unbounded", discard: true }
    )
    let current = yield* Effect.forkScoped(workers)
    yield* Stream.runForEach(budget.lost, (event) =>
      Effect.gen(function* () {
        out({ round: thisRound, lost: event })
        yield* Fiber.interrupt(current)
        current = yield* Effect.forkScoped(workers)
      })
    ).pipe(Effect.forkScoped)
    let last = ""
    yield* Effect.gen(function* () {
      const s = yield* budget.stats
      const report = {
        round: thisRound,
        held: s.held,
        open,
        reclaimed: s.reclaimed,
        leasesLost: s.leasesLost,
        state: s.state,
        evicted
      }
      const line = JSON.stringify(report)
      if (line !== last) {
        last = line
        process.stdout.write(`${line}\n`)
      }
    }).pipe(Effect.repeat(Schedule.spaced("10 millis")))
  }).pipe(Effect.scoped)

let current: Fiber.RuntimeFiber<unknown, unknown> | undefined

const join = (settings: Settings) => {
  round++
  goSignal = Deferred.unsafeMake<void>(FiberId.none)
  current = Effect.runFork(run(settings, round))
}

const leave = async () => {
  const fiber = current
  current = undefined
  if (fiber !== undefined) await Effect.runPromise(Fiber.interrupt(fiber))
  out({ left: round })
}

let input = ""
process.stdin.on("data", (chunk: Buffer) => {
  input += chunk.toString("utf8")
  let nl = input.indexOf("\n")
  while (nl >= 0) {
    const line = input.slice(0, nl).trim()
    input = input.slice(nl + 1)
    nl = input.indexOf("\n")
    if (line === "go") Deferred.unsafeDone(goSignal, Effect.void)
    else if (line.startsWith("{")) {
      const command = JSON.parse(line) as { readonly join?: Settings; readonly leave?: boolean }
      if (command.join !== undefined) join(command.join)
      else if (command.leave === true) void leave()
    }
  }
})

if (process.argv[2] !== undefined) join(JSON.parse(process.argv[2]) as Settings)
out({ ready: process.pid })

process.on("SIGTERM", () => {
  leave().then(() => process.exit(0))
})
