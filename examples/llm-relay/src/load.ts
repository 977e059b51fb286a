/**
 * Loads a running relay (`RELAY_URL`, default http://127.0.0.1:8080) with
 * streamed chat completions: `LOAD_CONNECTIONS` connections (100) for
 * `LOAD_SECONDS` seconds (10), one client in ten going away after its first
 * chunk. Prints the result and the relay's `/healthz` before and after.
 */

import * as Http from "node:http"
import { NodeRuntime } from "@effect/platform-node"
import autocannon from "autocannon"
import { Config, Console, Effect } from "effect"

const settings = Config.all({
  url: Config.string("RELAY_URL").pipe(Config.withDefault("http://127.0.0.1:8080")),
  connections: Config.integer("LOAD_CONNECTIONS").pipe(Config.withDefault(100)),
  seconds: Config.integer("LOAD_SECONDS").pipe(Config.withDefault(10))
})

const healthz = (url: string) =>
  Effect.async<string, Error>((resume) => {
    Http.get(`${url}/healthz`, (res) => {
      let text = ""
      res.on("data", (c) => {
        text += c
      })
      res.on("end", () => resume(Effect.succeed(text)))
    }).on("error", (error) => resume(Effect.fail(error)))
  })

/** A client that reads one chunk and goes away, as a closed browser tab would. */
const walkAway = (url: string) =>
  new Promise<void>((resolve) => {
    const req = Http.request(
      `${url}/v1/chat/completions`,
      { method: "POST", headers: { "content-type": "application/json" } },
      (res) => {
        res.once("data", () => {
          req.destroy()
          resolve()
        })
        res.on("end", resolve)
      }
    )
    req.on("error", () => resolve())
    req.end('{"stream":true}')
  })

const main = Effect.gen(function* () {
  const { connections, seconds, url } = yield* settings
  yield* Console.log(`before: ${yield* healthz(url)}`)
  const body = JSON.stringify({ model: "relay-demo", stream: true, messages: [{ role: "user", content: "hi" }] })
  let stop = false
  const walkers = Promise.all(
    Array.from({ length: Math.max(1, Math.floor(connections / 10)) }, async () => {
      while (!stop) await walkAway(url)
    })
  )
  const result = yield* Effect.promise(() =>
    autocannon({
      url: `${url}/v1/chat/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      connections,
      duration: seconds
    })
  )
  stop = true
  yield* Effect.promise(() => walkers)
  yield* Console.log(
    `${result.requests.total} streams in ${seconds} s (${result.requests.average.toFixed(0)}/s), latency p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, non-2xx ${result.non2xx}, errors ${result.errors}`
  )
  yield* Effect.sleep("1 second")
  yield* Console.log(`after: ${yield* healthz(url)}`)
})

NodeRuntime.runMain(main)
