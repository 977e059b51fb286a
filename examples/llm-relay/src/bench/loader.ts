/**
 * The benchmark's load generator in a process of its own: autocannon (its
 * Node API) on loopback. `run` loads a URL's chat completions route with
 * `connections` connections for `seconds` seconds (or `amount` requests)
 * and answers with autocannon's figures and this process's CPU time.
 */

import { NodeRuntime } from "@effect/platform-node"
import autocannon from "autocannon"
import { Effect } from "effect"
import { cpuMicros, serve } from "./processes.js"

/** What `run` is asked. */
export interface Run {
  readonly url: string
  readonly connections: number
  readonly seconds?: number | undefined
  readonly amount?: number | undefined
}

/** What `run` answers. */
export interface Result {
  readonly requests: number
  readonly errors: number
  readonly non2xx: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
  /** This process's CPU time during the run, in microseconds. */
  readonly cpuMicros: number
}

const body = JSON.stringify({ model: "relay-demo", stream: true, messages: [{ role: "user", content: "hi" }] })

const run = (options: Run) =>
  Effect.promise(async (): Promise<Result> => {
    const before = cpuMicros()
    const result = await autocannon({
      url: `${options.url}/v1/chat/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      connections: options.connections,
      ...(options.amount === undefined ? { duration: options.seconds ?? 10 } : { amount: options.amount }),
      timeout: 30
    })
    return {
      requests: result.requests.total,
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
      rps: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      cpuMicros: cpuMicros() - before
    }
  })

serve(null, { run }).pipe(NodeRuntime.runMain)
