import * as Http from "node:http"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Redacted } from "effect"
import { listen, relayConfig } from "../src/Relay.js"
import * as Upstream from "../src/Upstream.js"

const adminToken = Redacted.make("relay-admin-token-0123456789abcdef")

/** The relay in front of a stand-in upstream, configured from `env`, in the current scope. */
const start = (env: Record<string, string>, upstream: Upstream.UpstreamOptions = {}) =>
  Effect.gen(function* () {
    const up = yield* Upstream.start({ tokens: 5, delayMs: 2, ...upstream })
    const config = yield* Effect.withConfigProvider(relayConfig, ConfigProvider.fromMap(new Map(Object.entries(env))))
    const relay = yield* listen({ upstream: up.url, config, adminToken }, 0)
    return { up, relay }
  })

interface Reply {
  readonly status: number
  readonly headers: Http.IncomingHttpHeaders
  readonly body: string
}

/**
 * A chat completion request from a fresh connection; with `abortAfterChunks`
 * the client destroys its socket after reading that many chunks.
 */
const chat = (
  port: number,
  headers: Record<string, string> = {},
  abortAfterChunks?: number,
  body = '{"model":"relay-demo","stream":true,"messages":[{"role":"user","content":"hi"}]}'
): Promise<Reply> =>
  new Promise((resolve) => {
    const req = Http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/v1/chat/completions",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", ...headers }
      },
      (res) => {
        let text = ""
        let chunks = 0
        res.setEncoding("utf8")
        const done = () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text })
        res.on("data", (chunk: string) => {
          text += chunk
          if (abortAfterChunks !== undefined && ++chunks >= abortAfterChunks) {
            req.destroy()
            done()
          }
        })
        res.on("end", done)
        res.on("close", done)
      }
    )
    req.on("error", () => resolve({ status: 0, headers: {}, body: "" }))
    req.end(body)
  })

const get = (port: number, path: string, headers: Record<string, string> = {}): Promise<Reply> =>
  new Promise((resolve, reject) => {
    Http.get({ host: "127.0.0.1", port, path, agent: false, headers }, (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        text += chunk
      })
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }))
    }).on("error", reject)
  })

/** The content of each completion chunk, in order. */
const contents = (body: string): ReadonlyArray<string> =>
  body
    .split("\n\n")
    .filter((event) => event.startsWith("data: {"))
    .map((event) => JSON.parse(event.slice("data: ".length)).choices[0].delta.content as string)

const healthz = (port: number) => Effect.promise(() => get(port, "/healthz").then((r) => JSON.parse(r.body)))

/** Polls on the real clock (I/O settling), failing after `millis`. */
const eventually = (condition: Effect.Effect<boolean>, millis = 5_000) =>
  Effect.gen(function* () {
    const deadline = performance.now() + millis
    while (!(yield* condition)) {
      if (performance.now() > deadline) return yield* Effect.die(new Error(`not within ${millis} ms`))
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 5)))
    }
  })

describe("llm-relay", () => {
  it.scopedLive("streams a chat completion token by token; /healthz shows occupancy and the limits in force", () =>
    Effect.gen(function* () {
      const { relay } = yield* start({
        MAX_CONNECTIONS: "8",
        MAX_KEEPALIVE_CONNECTIONS: "4",
        MAX_CONCURRENT_REQUESTS: "50"
      })
      const reply = yield* Effect.promise(() => chat(relay.port))
      assert.strictEqual(reply.status, 200)
      assert.strictEqual(reply.headers["content-type"], "text/event-stream")
      assert.deepStrictEqual(contents(reply.body), [0, 1, 2, 3, 4].map(Upstream.token))
      assert.isTrue(reply.body.endsWith("data: [DONE]\n\n"))
      const health = yield* healthz(relay.port)
      assert.strictEqual(health.status, "ok")
      assert.deepInclude(health.pool, { size: 1, idle: 1, inUse: 0, waiting: 0 })
      assert.deepStrictEqual(health.limits, {
        maxConnections: 8,
        maxKeepaliveConnections: 4,
        streamTimeoutSeconds: 600,
        poolTimeoutSeconds: 10,
        maxConcurrentRequests: 50,
        maxQueuedRequests: 100,
        queueTimeoutSeconds: 10
      })
      const bad = yield* Effect.promise(() => chat(relay.port, {}, undefined, '{"stream":false}'))
      assert.strictEqual(bad.status, 400)
    })
  )

  it.scopedLive(
    "pool exhaustion as the relay saw it: with MAX_CONNECTIONS=10, 50 clients that disconnect mid-stream leave the 51st served at once",
    () =>
      Effect.gen(function* () {
        const { relay, up } = yield* start({ MAX_CONNECTIONS: "10", POOL_TIMEOUT_SECONDS: "1" })
        const slow = { "x-upstream-tokens": "200", "x-upstream-delay-ms": "10" }
        for (let wave = 0; wave < 5; wave++) {
          const replies = yield* Effect.promise(() =>
            Promise.all(Array.from({ length: 10 }, () => chat(relay.port, slow, 1)))
          )
          assert.isTrue(replies.every((r) => r.status === 200))
          // The relay frees a cut stream's lease once it notices the disconnect, a moment after the client
          // left: the next wave starts then, so a loaded machine cannot turn that moment into a pool timeout.
          yield* eventually(
            Effect.map(healthz(relay.port), (h) => h.pool.inUse === 0),
            10_000
          )
        }
        yield* eventually(Effect.map(healthz(relay.port), (h) => h.pool.inUse === 0 && h.pool.waiting === 0))
        const fiftyFirst = chat(relay.port, { "x-upstream-tokens": "40", "x-upstream-delay-ms": "5" })
        // While it streams, it holds a connection and nobody waits for one.
        yield* eventually(Effect.map(healthz(relay.port), (h) => h.pool.inUse === 1))
        const during = yield* healthz(relay.port)
        assert.strictEqual(during.pool.waiting, 0)
        const reply = yield* Effect.promise(() => fiftyFirst)
        assert.strictEqual(reply.status, 200)
        assert.strictEqual(contents(reply.body).length, 40)
        const after = yield* healthz(relay.port)
        assert.strictEqual(after.pool.timeouts, 0)
        assert.strictEqual(after.pool.destroyed, 50, "every cut connection was destroyed, none reused")
        yield* eventually(Effect.sync(() => up.openSockets() <= after.pool.idle))
      })
  )

  it.scopedLive("a stream past STREAM_TIMEOUT_SECONDS ends with an SSE error event and gives its connection up", () =>
    Effect.gen(function* () {
      const { relay, up } = yield* start({ STREAM_TIMEOUT_SECONDS: "0.3" })
      const reply = yield* Effect.promise(() =>
        chat(relay.port, { "x-upstream-mode": "hang", "x-upstream-tokens": "6" })
      )
      assert.strictEqual(reply.status, 200)
      assert.include(reply.body, 'event: error\ndata: {"error":{"type":"stream_timeout"')
      yield* eventually(Effect.map(healthz(relay.port), (h) => h.pool.inUse === 0 && h.pool.destroyed === 1))
      yield* eventually(Effect.sync(() => up.openSockets() === 0))
    })
  )

  it.scopedLive("beyond MAX_CONCURRENT_REQUESTS and the queue, a request gets 503 with Retry-After at once", () =>
    Effect.gen(function* () {
      const { relay } = yield* start({ MAX_CONCURRENT_REQUESTS: "2", MAX_QUEUED_REQUESTS: "0" })
      const slow = { "x-upstream-tokens": "100", "x-upstream-delay-ms": "10" }
      const running = [chat(relay.port, slow, 1), chat(relay.port, slow, 1)]
      yield* eventually(Effect.map(healthz(relay.port), (h) => h.requests.inFlight === 2))
      const third = yield* Effect.promise(() => chat(relay.port))
      assert.strictEqual(third.status, 503)
      assert.strictEqual(third.headers["retry-after"], "1")
      assert.include(JSON.parse(third.body), { reason: "queue-full" })
      yield* Effect.promise(() => Promise.all(running))
      yield* eventually(Effect.map(healthz(relay.port), (h) => h.requests.inFlight === 0 && h.pool.inUse === 0))
    })
  )

  it.scopedLive("mounts the admin API under /admin behind its bearer token", () =>
    Effect.gen(function* () {
      const { relay } = yield* start({})
      yield* Effect.promise(() => chat(relay.port))
      const denied = yield* Effect.promise(() => get(relay.port, "/admin/pools"))
      assert.strictEqual(denied.status, 401)
      const pools = yield* Effect.promise(() =>
        get(relay.port, "/admin/pools", { authorization: `Bearer ${Redacted.value(adminToken)}` })
      )
      assert.strictEqual(pools.status, 200)
      const names = JSON.parse(pools.body).pools.map((p: { name: string }) => p.name)
      assert.deepStrictEqual(names, ["upstreams"])
    })
  )

  it.effect("reads its limits from the environment and names a bad variable", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        Effect.either(Effect.withConfigProvider(relayConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))
      const ok = yield* read({ MAX_CONNECTIONS: "500", STREAM_TIMEOUT_SECONDS: "600", POOL_TIMEOUT_SECONDS: "10" })
      assert.isTrue(Either.isRight(ok))
      const bad = yield* read({ STREAM_TIMEOUT_SECONDS: "-1" })
      assert.isTrue(Either.isLeft(bad) && String(bad.left).includes("STREAM_TIMEOUT_SECONDS"))
      const badLimit = yield* read({ MAX_CONCURRENT_REQUESTS: "0" })
      assert.isTrue(Either.isLeft(badLimit) && String(badLimit.left).includes("MAX_CONCURRENT_REQUESTS"))
    })
  )
})
