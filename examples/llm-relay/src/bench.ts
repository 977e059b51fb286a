/**
 * A load run on loopback, bounded: autocannon (Node API) with
 * `BENCH_CONNECTIONS` connections (400) for `BENCH_SECONDS` (20) seconds of
 * streamed chat completions, several ways in one run against one stand-in
 * upstream (`BENCH_TOKENS` tokens, one every `BENCH_TOKEN_DELAY_MS` ms).
 * The upstream, each relay and the load generator are separate Node
 * processes (see `bench/processes.ts`): a relay has an event loop of its
 * own, as it would in production. `BENCH_PATHS` picks some paths
 * (comma-separated ids, all by default; see `bench/relay.ts`): `cistern`,
 * `effect`, `effect-piped`, `undici`, and `direct` (straight to the
 * upstream, no relay). `--quick` (or `BENCH_QUICK=1`) is a smoke run: 20
 * connections for 2 seconds. `BENCH_CPU_PROF=<dir>` writes a CPU profile of
 * each relay process's measured run there (`<dir>/<path>.cpuprofile`).
 *
 * Each relay process is started for its own path and stopped after it; the
 * upstream and the load generator live for the whole run. Every path is
 * warmed up first (one request per connection, none cut).
 *
 * It prints req/s, latency p50/p99, tokens/s, the CPU time per request of
 * each process (relay and upstream: over a steady window of the run, per
 * completion the upstream sent whole; load generator: over the whole run),
 * the upstream connections opened during the run, the machine's load
 * average, and, for the Cistern relay, the leases still held once the load
 * has stopped (leaked leases, from its `/healthz`).
 */

import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import { Config, Console, Duration, Effect, Fiber } from "effect"
import type { Result, Run } from "./bench/loader.js"
import { type Child, spawn } from "./bench/processes.js"

const quick = process.argv.includes("--quick")

const settings = Config.all({
  quick: Config.boolean("BENCH_QUICK").pipe(
    Config.withDefault(false),
    Config.map((q) => q || quick)
  ),
  connections: Config.option(Config.integer("BENCH_CONNECTIONS")),
  seconds: Config.option(Config.integer("BENCH_SECONDS")),
  tokens: Config.integer("BENCH_TOKENS").pipe(Config.withDefault(20)),
  delayMs: Config.integer("BENCH_TOKEN_DELAY_MS").pipe(Config.withDefault(10)),
  paths: Config.string("BENCH_PATHS").pipe(Config.withDefault("cistern,effect,effect-piped,undici,direct")),
  cpuProf: Config.option(Config.string("BENCH_CPU_PROF"))
})

const targets = [
  { id: "cistern", name: "cistern relay" },
  { id: "effect", name: "effect relay (no Cistern)" },
  { id: "effect-piped", name: "effect relay, piped (no Cistern)" },
  { id: "undici", name: "undici relay (no Effect)" },
  { id: "direct", name: "direct (no relay)" }
] as const

interface Row extends Result {
  readonly name: string
  readonly tokensPerSecond: number
  /** CPU time per request of each process, in microseconds (relay: none for `direct`). */
  readonly relayCpu: number | undefined
  readonly upstreamCpu: number
  readonly loadCpu: number
  /** Connections the upstream accepted during the measured run (reuse: few). */
  readonly upstreamConnects: number
}

interface UpstreamStats {
  readonly tokensSent: number
  readonly openSockets: number
  readonly accepted: number
  readonly completed: number
  readonly cpuMicros: number
}

interface Health {
  readonly pool: { readonly inUse: number; readonly idle: number; readonly waiting: number }
}

const health = (url: string) =>
  Effect.async<Health, Error>((resume) => {
    const request = Http.get(`${url}/healthz`, (res) => {
      let text = ""
      res.on("data", (c) => {
        text += c
      })
      res.on("end", () => {
        try {
          resume(Effect.succeed(JSON.parse(text) as Health))
        } catch (error) {
          resume(Effect.fail(error as Error))
        }
      })
    })
    request.on("error", (error) => resume(Effect.fail(error)))
    request.setTimeout(10_000, () => request.destroy(new Error("/healthz did not answer in 10 s")))
  })

const loadAverage = () =>
  Os.loadavg()
    .map((n) => n.toFixed(2))
    .join(", ")

const perRequest = (micros: number, requests: number) => (requests === 0 ? 0 : Math.round(micros / requests))

const main = Effect.gen(function* () {
  const s = yield* settings
  const connections = s.connections._tag === "Some" ? s.connections.value : s.quick ? 20 : 400
  const seconds = s.seconds._tag === "Some" ? s.seconds.value : s.quick ? 2 : 20
  const selected = new Set(s.paths.split(",").map((p) => p.trim()))
  const chosen = targets.filter((t) => selected.has(t.id))
  const profileDir = s.cpuProf._tag === "Some" ? Path.resolve(s.cpuProf.value) : ""

  yield* Console.log(
    `load: ${connections} connections × ${seconds} s each; upstream: ${s.tokens} tokens, one every ${s.delayMs} ms; ` +
      `upstream, relay and load generator in separate processes; ${Os.cpus().length} cores, load average ${loadAverage()}`
  )
  const upstream = yield* spawn<{ url: string }>("upstream", "upstream.ts", {
    args: [JSON.stringify({ tokens: s.tokens, delayMs: s.delayMs })]
  })
  const loader = yield* spawn<null>("load generator", "loader.ts")
  const upstreamStats = upstream.call<UpstreamStats>("stats")
  const run = (options: Run) => loader.call<Result>("run", options, Duration.seconds((options.seconds ?? 0) + 120))

  const rows: Array<Row> = []
  let leaks = ""
  for (const target of chosen) {
    const row = yield* Effect.scoped(
      Effect.gen(function* () {
        const relay: Child<{ url: string }> | undefined =
          target.id === "direct"
            ? undefined
            : yield* spawn<{ url: string }>(`relay ${target.id}`, "relay.ts", {
                args: [target.id, upstream.ready.url, String(connections), profileDir]
              })
        const url = relay?.ready.url ?? upstream.ready.url
        // A warm-up at full concurrency, one request per connection, none cut: the path's upstream
        // connections are open (and idle) and its code compiled before it is measured. (A warm-up cut
        // by a deadline would leave none: a connection cut mid-body is destroyed.)
        yield* run({ url, connections, amount: connections })
        // CPU per request is read in a steady window of the run (from 2 s in to 1 s before its end; the
        // whole run when it is shorter than 5 s), per completion the upstream sent whole: the requests the
        // load generator cuts when it stops (their connections destroyed) are not steady-state work.
        const sample = Effect.all({
          relay: relay === undefined ? Effect.succeed(0) : relay.call<number>("cpu"),
          upstream: upstreamStats
        })
        const windowed = seconds >= 5
        const upBefore = yield* upstreamStats
        if (relay !== undefined) yield* relay.call("profileStart")
        const running = yield* Effect.fork(run({ url, connections, seconds }))
        if (windowed) yield* Effect.sleep(Duration.seconds(2))
        const from = yield* sample
        if (windowed) yield* Effect.sleep(Duration.seconds(seconds - 3))
        const to = windowed ? yield* sample : undefined
        const result = yield* Fiber.join(running)
        const upAfter = yield* upstreamStats
        const end = to ?? (yield* sample)
        if (relay !== undefined) {
          const written = yield* relay.call<string | null>("profileStop")
          if (written !== null) yield* Console.log(`CPU profile of the measured run: ${written}`)
        }
        const completions = end.upstream.completed - from.upstream.completed
        if (target.id === "cistern" && relay !== undefined) {
          // Leases still held once the clients are gone, after a bounded settle.
          let after = yield* health(url)
          for (let i = 0; i < 50 && (after.pool.inUse > 0 || after.pool.waiting > 0); i++) {
            yield* Effect.sleep(Duration.millis(100))
            after = yield* health(url)
          }
          if (process.env.BENCH_VERBOSE) yield* Console.log(JSON.stringify(after))
          leaks = `leaked leases after the Cistern run: ${after.pool.inUse} (pool idle ${after.pool.idle}, waiting ${after.pool.waiting})`
        }
        return {
          ...result,
          name: target.name,
          tokensPerSecond: Math.round((upAfter.tokensSent - upBefore.tokensSent) / seconds),
          relayCpu: relay === undefined ? undefined : perRequest(end.relay - from.relay, completions),
          upstreamCpu: perRequest(end.upstream.cpuMicros - from.upstream.cpuMicros, completions),
          loadCpu: perRequest(result.cpuMicros, result.requests),
          upstreamConnects: upAfter.accepted - upBefore.accepted
        } satisfies Row
      })
    )
    rows.push(row)
  }

  const direct = rows.find((r) => r.name === "direct (no relay)")
  yield* Console.log(
    [
      "| path | requests | req/s | p50 ms | p99 ms | tokens/s | errors | non-2xx | relay CPU µs/req | upstream CPU µs/req | load CPU µs/req | upstream connects | p50 vs direct |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...rows.map(
        (r) =>
          `| ${r.name} | ${r.requests} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.tokensPerSecond} | ${r.errors} | ${r.non2xx} | ${r.relayCpu ?? "–"} | ${r.upstreamCpu} | ${r.loadCpu} | ${r.upstreamConnects} | ${direct === undefined ? "–" : `${(r.p50 / direct.p50).toFixed(2)}×`} |`
      )
    ].join("\n")
  )
  if (leaks !== "") yield* Console.log(leaks)
  yield* Console.log(`upstream sockets open now: ${(yield* upstreamStats).openSockets}`)
  yield* Console.log(`load average at the end: ${loadAverage()}`)
})

// Bounded: every path's warm-up, run and process starts, with room for a loaded machine.
const bound = (paths: number, seconds: number) => Duration.seconds(120 + paths * (seconds + 180))

Effect.gen(function* () {
  const s = yield* settings
  const seconds = s.seconds._tag === "Some" ? s.seconds.value : s.quick ? 2 : 20
  return yield* main.pipe(
    Effect.scoped,
    Effect.timeoutFail({
      duration: bound(s.paths.split(",").length, seconds),
      onTimeout: () => new Error("the benchmark did not finish in time")
    })
  )
}).pipe(NodeRuntime.runMain)
