import { HttpBody, HttpClient, type HttpClientError, HttpClientRequest } from "@effect/platform"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Either, Fiber, Layer, Schedule, Stream } from "effect"
import { UpstreamHttpClient, UpstreamPool } from "../src/index.js"
import { connectProxy, eventually, settle, Tally, upstream } from "./utils/servers.js"

/** Builds the client layer into the test's scope and returns the client and its pool. */
const clientWith = (options: UpstreamHttpClient.Options) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(UpstreamHttpClient.layer(options))
    const client = yield* Effect.provide(HttpClient.HttpClient, context)
    const pool = yield* Effect.provide(UpstreamPool.UpstreamPool, context)
    return { client, pool }
  })

const text = (client: HttpClient.HttpClient, url: string) =>
  Effect.flatMap(client.get(url), (response) => response.text)

describe("UpstreamHttpClient", () => {
  it.scopedLive("a request's lease ends when its response has arrived, and the connection is reused", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      // Not read at all: a small body arrives whole and is buffered, so the connection is free again.
      const unread = yield* client.get(`${server.url}/hello`)
      assert.strictEqual(unread.status, 200)
      yield* eventually(
        () => 0,
        () => true,
        "tick"
      )
      const stats = yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.inUse === 0,
        "in use"
      )
      assert.strictEqual(stats.idle, 1)
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(yield* unread.text, "hello")
      assert.strictEqual(server.accepted(), 1)
    })
  )

  it.scopedLive("a response whose body is never read does not hold its connection beyond its scope", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({ maxPerKey: 1 })
      const scoped = HttpClient.withScope(client)
      yield* Effect.scoped(
        Effect.gen(function* () {
          const response = yield* scoped.get(`${server.url}/stream`)
          assert.strictEqual(response.status, 200)
          yield* settle("60 millis")
          // The upstream is still sending: the lease and the socket are held while the scope is open.
          assert.strictEqual((yield* pool.stats).inUse, 1)
          assert.strictEqual(server.open(), 1)
        })
      )
      // Cut mid-body: the connection is destroyed, not returned.
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      const stats = yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.size === 0,
        "pool size"
      )
      assert.strictEqual(stats.inUse, 0)
      // The key's only slot is free: the next request is served on a new connection.
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(server.accepted(), 2)
    })
  )

  it.scopedLive("a big body left unread holds its connection until its scope closes", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      yield* Effect.scoped(
        Effect.gen(function* () {
          const response = yield* HttpClient.withScope(client).get(`${server.url}/big`)
          assert.strictEqual(response.status, 200)
          yield* settle("50 millis")
          assert.strictEqual((yield* pool.stats).inUse, 1)
        })
      )
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      yield* eventually(
        () => Effect.runSync(pool.stats).size,
        (n) => n === 0,
        "pool size"
      )
    })
  )

  it.scopedLive("a streamed body read to its end returns the connection; one cut short destroys it", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      const big = yield* client
        .get(`${server.url}/big`)
        .pipe(Effect.flatMap((response) => Stream.runFold(response.stream, 0, (n, chunk) => n + chunk.length)))
      assert.strictEqual(big, 4 * 1024 * 1024)
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.inUse === 0 && s.idle === 1,
        "returned"
      )
      const first = yield* client
        .get(`${server.url}/stream`)
        .pipe(Effect.flatMap((response) => Stream.runCollect(Stream.take(response.stream, 1))))
      assert.strictEqual(Chunk.size(first), 1)
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      yield* eventually(
        () => Effect.runSync(pool.stats).size,
        (n) => n === 0,
        "pool size"
      )
    })
  )

  it.scopedLive("per-upstream and total limits hold under 200 concurrent requests", () =>
    Effect.gen(function* () {
      const tally = new Tally()
      const a = yield* upstream({ tally })
      const b = yield* upstream({ tally })
      const { client, pool } = yield* clientWith({ maxPerKey: 4, maxTotal: 6, acquireTimeout: "20 seconds" })
      const results = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => `${i % 2 === 0 ? a.url : b.url}/slow?ms=${1 + (i % 5)}`),
        (url) => text(client, url),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(results.length, 200)
      assert.isTrue(results.every((body) => body === "slow"))
      assert.strictEqual(a.served() + b.served(), 200)
      assert.isAtMost(a.maxOpen(), 4)
      assert.isAtMost(b.maxOpen(), 4)
      assert.isAtMost(tally.max, 6)
      assert.isAtMost(tally.maxInFlight, 6)
      // Both upstreams were served side by side, each up to its limit.
      assert.isAtLeast(a.maxInFlight(), 2)
      assert.isAtLeast(b.maxInFlight(), 2)
      const stats = yield* pool.stats
      assert.strictEqual(stats.inUse, 0)
      assert.strictEqual(stats.waiting, 0)
      assert.isAtMost(stats.size, 6)
    })
  )

  it.scopedLive("a proxy key goes through the CONNECT proxy, with its credentials, and reuses its tunnel", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const proxy = yield* connectProxy({ require: `Basic ${Buffer.from("relay:s3cret").toString("base64")}` })
      const { client, pool } = yield* clientWith({ proxy: `http://relay:s3cret@127.0.0.1:${proxy.port}` })
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.deepStrictEqual(proxy.connects(), [`127.0.0.1:${server.port}`])
      assert.strictEqual(proxy.tunnels(), 1)
      assert.strictEqual(server.accepted(), 1)
      const [key] = (yield* pool.stats).perKey
      assert.include(key.key, `via 127.0.0.1:${proxy.port}`)
      assert.notInclude(key.key, "s3cret")
    })
  )

  it.scopedLive("a proxy that refuses the tunnel fails the request with the proxy's status", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const proxy = yield* connectProxy({ require: "Basic nope" })
      const { client } = yield* clientWith({ proxy: proxy.url })
      const result = yield* Effect.either(text(client, `${server.url}/hello`))
      assert.isTrue(Either.isLeft(result))
      const error = (result as Either.Left<HttpClientError.HttpClientError, string>).left
      assert.strictEqual(error._tag, "RequestError")
      const cause = error.cause as UpstreamPool.UpstreamConnectError
      assert.strictEqual(cause._tag, "UpstreamConnectError")
      assert.strictEqual(cause.reason, "ProxyRefused")
      assert.strictEqual(cause.proxyStatus, 407)
      assert.strictEqual(server.accepted(), 0)
    })
  )

  it.scopedLive("a reset mid-body destroys that connection and the next request is served on a healthy one", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({ breaker: { failures: 3, reset: "1 minute" } })
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      const result = yield* Effect.either(text(client, `${server.url}/reset`))
      assert.isTrue(Either.isLeft(result))
      assert.isTrue(UpstreamPool.isConnectionError(Either.isLeft(result) ? result.left : undefined))
      const stats = yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.size === 0,
        "pool size"
      )
      // The key stays listed while its breaker remembers the failure.
      assert.strictEqual(stats.perKey[0].health.consecutiveFailures, 1)
      assert.strictEqual(stats.perKey[0].health.breaker, "closed")
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(server.accepted(), 2)
      // An HTTP error status is not a connection failure: the connection is kept.
      const status = yield* client.get(`${server.url}/status/503`)
      assert.strictEqual(status.status, 503)
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.inUse === 0 && s.idle === 1,
        "returned"
      )
      assert.strictEqual(server.accepted(), 2)
    })
  )

  it.scopedLive("a response with Connection: close is not reused", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      assert.strictEqual(yield* text(client, `${server.url}/close`), "bye")
      assert.strictEqual(yield* text(client, `${server.url}/close`), "bye")
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(server.accepted(), 3)
      const stats = yield* pool.stats
      assert.strictEqual(stats.failures ?? 0, 0)
    })
  )

  it.scopedLive("interrupting a request that waits for its response destroys its connection", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      const result = yield* Effect.timeout(text(client, `${server.url}/slow?ms=5000`), "50 millis").pipe(Effect.either)
      assert.isTrue(Either.isLeft(result))
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      yield* eventually(
        () => Effect.runSync(pool.stats).size,
        (n) => n === 0,
        "pool size"
      )
    })
  )

  it.scopedLive("request bodies are sent: bytes, text and streams", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client } = yield* clientWith({})
      const post = (body: HttpBody.HttpBody) =>
        HttpClientRequest.post(`${server.url}/echo`).pipe(
          HttpClientRequest.setBody(body),
          client.execute,
          Effect.flatMap((r) => r.text)
        )
      assert.strictEqual(yield* post(HttpBody.text("plain")), "plain")
      assert.strictEqual(yield* post(HttpBody.uint8Array(new TextEncoder().encode("bytes"))), "bytes")
      const streamed = Stream.make("a", "b", "c").pipe(Stream.map((s) => new TextEncoder().encode(s)))
      assert.strictEqual(yield* post(HttpBody.stream(streamed)), "abc")
      assert.strictEqual(server.accepted(), 1)
    })
  )

  it.scopedLive(
    "Cistern's retry of connection failures is off by default, and replays on a fresh connection when on",
    () =>
      Effect.gen(function* () {
        const off = yield* upstream()
        const plain = yield* clientWith({})
        const failed = yield* Effect.flip(text(plain.client, `${off.url}/drop-first`))
        assert.strictEqual(failed._tag, "RequestError")
        assert.isTrue(UpstreamPool.isConnectionError(failed))
        assert.strictEqual(off.accepted(), 1)

        const on = yield* upstream()
        const retrying = yield* clientWith({ retry: Schedule.recurs(2) })
        assert.strictEqual(yield* text(retrying.client, `${on.url}/drop-first`), "ok")
        assert.strictEqual(on.accepted(), 2)
        // Status codes are answers, not connection failures: never replayed.
        const status = yield* retrying.client.get(`${on.url}/status/503`)
        assert.strictEqual(status.status, 503)
      })
  )

  it.scopedLive("a caller interrupted while waiting for a connection leaves the queue", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({ maxPerKey: 1 })
      const holder = yield* Effect.fork(
        Effect.scoped(Effect.flatMap(HttpClient.withScope(client).get(`${server.url}/stream`), () => Effect.never))
      )
      yield* eventually(
        () => Effect.runSync(pool.stats).inUse,
        (n) => n === 1,
        "held"
      )
      const waiter = yield* Effect.fork(text(client, `${server.url}/hello`))
      yield* eventually(
        () => Effect.runSync(pool.stats).waiting,
        (n) => n === 1,
        "waiting"
      )
      yield* Fiber.interrupt(waiter)
      assert.strictEqual((yield* pool.stats).waiting, 0)
      yield* Fiber.interrupt(holder)
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      const stats = yield* pool.stats
      assert.strictEqual(stats.waiting, 0)
      assert.strictEqual(stats.failures, 0)
    })
  )

  it.scopedLive("closing the client's layer ends the leases still open and closes every socket", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const { client, pool } = yield* clientWith({ drainTimeout: "100 millis" })
          // A streamed response nobody reads or closes: only the pool's shutdown can end its lease.
          yield* client.get(`${server.url}/stream`)
          assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
          assert.strictEqual((yield* pool.stats).inUse, 1)
          assert.strictEqual(server.open(), 2)
        })
      )
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
    })
  )

  it.scopedLive("undici's headers timeout, set on the pool's clients, is a connection failure for the breaker", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({
        client: { headersTimeout: 50 },
        breaker: { failures: 5, reset: "1 minute" }
      })
      const error = yield* Effect.flip(text(client, `${server.url}/slow?ms=2000`))
      assert.strictEqual((error.cause as { code?: string }).code, "UND_ERR_HEADERS_TIMEOUT")
      assert.isTrue(UpstreamPool.isConnectionError(error))
      const stats = yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.size === 0,
        "pool size"
      )
      assert.strictEqual(stats.perKey[0].health.consecutiveFailures, 1)
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
    })
  )
})
