import { HttpClient } from "@effect/platform"
import { NodeStream } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Effect, Layer, Stream, TestClock } from "effect"
import { errors } from "undici"
import { UpstreamHttpClient, UpstreamPool } from "../src/index.js"
import { connectProxy, eventually, loopbackTls, settle, upstream } from "./utils/servers.js"

const clientWith = (options: UpstreamHttpClient.Options) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(UpstreamHttpClient.layer(options))
    const client = yield* Effect.provide(HttpClient.HttpClient, context)
    const pool = yield* Effect.provide(UpstreamPool.UpstreamPool, context)
    return { client, pool }
  })

const text = (client: HttpClient.HttpClient, url: string) =>
  Effect.flatMap(client.get(url), (response) => response.text)

describe("UpstreamPool", () => {
  it.scoped("idle expiry closes upstream sockets, on the pool's clock", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({
        idleTimeout: "30 seconds",
        cleanupInterval: "5 seconds",
        // undici's own keep-alive would close idle sockets after 4 s of real time: let the pool decide.
        client: { keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 }
      })
      yield* Effect.all(
        [1, 2, 3].map(() => text(client, `${server.url}/slow?ms=30`)),
        { concurrency: "unbounded" }
      )
      yield* eventually(
        () => Effect.runSync(pool.stats),
        (s) => s.idle === 3,
        "idle connections"
      )
      assert.strictEqual(server.open(), 3)

      yield* TestClock.adjust("25 seconds")
      yield* settle("50 millis")
      assert.strictEqual(server.open(), 3, "not idle long enough yet")
      assert.strictEqual((yield* pool.stats).idle, 3)

      yield* TestClock.adjust("10 seconds")
      yield* eventually(server.open, (n) => n === 0, "upstream sockets")
      const stats = yield* pool.stats
      assert.strictEqual(stats.size, 0)
      assert.strictEqual(stats.destroyed, 3)
      // The pool serves on as before, on a new socket.
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(server.accepted(), 4)
    })
  )

  it.scoped("minIdlePerKey keeps that many sockets open through idle expiry", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({
        idleTimeout: "30 seconds",
        cleanupInterval: "5 seconds",
        minIdlePerKey: 1,
        client: { keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 }
      })
      yield* Effect.all(
        [1, 2].map(() => text(client, `${server.url}/slow?ms=30`)),
        { concurrency: "unbounded" }
      )
      yield* eventually(
        () => Effect.runSync(pool.stats).idle,
        (n) => n === 2,
        "idle"
      )
      yield* TestClock.adjust("40 seconds")
      yield* eventually(server.open, (n) => n === 1, "upstream sockets")
      assert.strictEqual((yield* pool.stats).idle, 1)
    })
  )

  it.scopedLive("a socket the upstream closes while idle leaves the pool at once", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const { client, pool } = yield* clientWith({})
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual((yield* pool.stats).idle, 1)
      server.dropAll()
      yield* eventually(
        () => Effect.runSync(pool.stats).size,
        (n) => n === 0,
        "pool size"
      )
      // No request ever meets the dead socket: the next one opens a new connection and succeeds.
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      const stats = yield* pool.stats
      assert.strictEqual(stats.failures, 0)
      assert.strictEqual(server.accepted(), 2)
    })
  )

  it.scopedLive("a connection leased directly speaks undici's API on its one socket, through the proxy", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const proxy = yield* connectProxy()
      const pool = yield* UpstreamPool.make({ maxPerKey: 2 })
      const key = UpstreamPool.key(server.url, { proxy: proxy.url })
      const bodies = yield* Effect.forEach([1, 2, 3], () =>
        pool.use(key, (connection) =>
          Effect.promise(async () => {
            const response = await connection.dispatcher.request({ method: "GET", path: "/hello" })
            return response.body.text()
          })
        )
      )
      assert.deepStrictEqual(bodies, ["hello", "hello", "hello"])
      assert.strictEqual(proxy.connects().length, 1)
      assert.strictEqual(server.accepted(), 1)
      assert.strictEqual(server.served(), 3)
    })
  )

  it.scopedLive(
    "request ties a response to the lease's scope: ended whole, the connection is reused; cut, destroyed",
    () =>
      Effect.gen(function* () {
        const server = yield* upstream()
        const pool = yield* UpstreamPool.make({ maxPerKey: 1 })
        const key = UpstreamPool.key(server.url)
        const whole = yield* Effect.scoped(
          Effect.gen(function* () {
            const connection = yield* pool.get(key)
            const response = yield* UpstreamPool.request(connection, { method: "GET", path: "/hello" })
            return yield* Effect.promise(() => response.body.text())
          })
        )
        assert.strictEqual(whole, "hello")
        assert.strictEqual((yield* pool.stats).idle, 1)
        // A streaming helper's shape: the body is a stream inside the lease, cut after two chunks.
        const events = yield* pool
          .stream(key, (connection) =>
            Stream.unwrapScoped(
              Effect.map(UpstreamPool.request(connection, { method: "GET", path: "/stream" }), (response) =>
                NodeStream.fromReadable(
                  () => response.body,
                  (e) => e
                )
              )
            )
          )
          .pipe(Stream.take(2), Stream.runCollect)
        assert.strictEqual(Chunk.size(events), 2)
        yield* eventually(server.open, (n) => n === 0, "upstream sockets")
        const stats = yield* eventually(
          () => Effect.runSync(pool.stats),
          (s) => s.size === 0,
          "pool size"
        )
        assert.strictEqual(stats.inUse, 0)
        assert.strictEqual(stats.failures, 0)
        // The key's one slot is free again, on a new connection.
        const again = yield* Effect.scoped(
          Effect.flatMap(pool.get(key), (connection) =>
            Effect.flatMap(UpstreamPool.request(connection, { method: "GET", path: "/hello" }), (response) =>
              Effect.promise(() => response.body.text())
            )
          )
        )
        assert.strictEqual(again, "hello")
        assert.strictEqual(server.accepted(), 2)
      })
  )

  it.scopedLive("https upstreams, direct and through a CONNECT tunnel (TLS inside it), with the connector's CA", () =>
    Effect.gen(function* () {
      const server = yield* upstream({ tls: loopbackTls })
      const proxy = yield* connectProxy()
      const direct = yield* clientWith({ connect: { ca: loopbackTls.cert } })
      assert.strictEqual(yield* text(direct.client, `${server.url}/hello`), "hello")
      assert.strictEqual(yield* text(direct.client, `${server.url}/hello`), "hello")
      assert.strictEqual(server.accepted(), 1)
      const tunnelled = yield* clientWith({ connect: { ca: loopbackTls.cert }, proxy: proxy.url })
      assert.strictEqual(yield* text(tunnelled.client, `${server.url}/hello`), "hello")
      assert.strictEqual(yield* text(tunnelled.client, `${server.url}/hello`), "hello")
      assert.deepStrictEqual(proxy.connects(), [`127.0.0.1:${server.port}`])
      assert.strictEqual(server.accepted(), 2)
    })
  )

  it.scopedLive("an https proxy: TLS to the proxy (proxyConnect), then TLS to the upstream inside the tunnel", () =>
    Effect.gen(function* () {
      const server = yield* upstream({ tls: loopbackTls })
      const proxy = yield* connectProxy({ tls: loopbackTls })
      assert.isTrue(proxy.url.startsWith("https:"))
      const { client } = yield* clientWith({
        connect: { ca: loopbackTls.cert },
        proxyConnect: { ca: loopbackTls.cert },
        proxy: proxy.url
      })
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.strictEqual(yield* text(client, `${server.url}/hello`), "hello")
      assert.deepStrictEqual(proxy.connects(), [`127.0.0.1:${server.port}`])
      assert.strictEqual(server.accepted(), 1)
    })
  )

  it.scopedLive("a certificate the connector does not trust fails the connection and closes the tunnel", () =>
    Effect.gen(function* () {
      const server = yield* upstream({ tls: loopbackTls })
      const proxy = yield* connectProxy()
      const { client, pool } = yield* clientWith({ proxy: proxy.url })
      const error = yield* Effect.flip(text(client, `${server.url}/hello`))
      const cause = error.cause as UpstreamPool.UpstreamConnectError
      assert.strictEqual(cause._tag, "UpstreamConnectError")
      assert.strictEqual(cause.reason, "Connect")
      assert.strictEqual(proxy.connects().length, 1)
      yield* eventually(proxy.tunnels, (n) => n === 0, "open tunnels")
      assert.strictEqual((yield* pool.stats).size, 0)
    })
  )

  it.scopedLive("connections of different credentials or proxies are never shared", () =>
    Effect.gen(function* () {
      const server = yield* upstream()
      const proxy = yield* connectProxy()
      const { client, pool } = yield* clientWith({
        credential: (request) => request.headers["x-api-key"],
        proxy: (request) => (request.headers["x-via"] === "proxy" ? proxy.url : undefined)
      })
      const get = (apiKey: string, via = "direct") =>
        client
          .get(`${server.url}/hello`, { headers: { "x-api-key": apiKey, "x-via": via } })
          .pipe(Effect.flatMap((r) => r.text))
      yield* get("alice")
      yield* get("alice")
      yield* get("bob")
      yield* get("alice", "proxy")
      assert.strictEqual(server.accepted(), 3)
      assert.strictEqual(proxy.connects().length, 1)
      const keys = (yield* pool.stats).perKey.map((k) => k.key)
      assert.strictEqual(keys.length, 3)
      for (const described of keys) {
        assert.notInclude(described, "alice")
        assert.notInclude(described, "bob")
      }
    })
  )

  it.scopedLive("connection failures open the upstream's breaker; callers then fail at once without connecting", () =>
    Effect.gen(function* () {
      // A port that was just free: connecting is refused.
      const closed = yield* Effect.scoped(Effect.map(upstream(), (s) => s.url))
      const { client, pool } = yield* clientWith({
        breaker: { failures: 2, reset: "1 minute" },
        createBackoff: false
      })
      const attempt = Effect.flip(text(client, `${closed}/hello`))
      const first = yield* attempt
      assert.strictEqual((first.cause as UpstreamPool.UpstreamConnectError)._tag, "UpstreamConnectError")
      // The second failure opens the circuit (its caller sees either error, as the engine reports it).
      const second = yield* attempt
      assert.include(["UpstreamConnectError", "CircuitOpen"], (second.cause as { _tag: string })._tag)
      const third = yield* attempt
      assert.strictEqual((third.cause as { _tag: string })._tag, "CircuitOpen")
      // No connection was attempted for the third: the key's creation failures stay at two.
      const [key] = (yield* pool.stats).perKey
      assert.strictEqual(key.failures, 2)
      assert.strictEqual(key.health.breaker, "open")
    })
  )

  it("key: identity is origin × proxy × credential fingerprint, and holds no secret", () => {
    const a = UpstreamPool.key("https://api.example.com/v1/chat", { credential: "sk-secret" })
    const b = UpstreamPool.key(new URL("https://api.example.com"), { credential: "sk-secret" })
    const c = UpstreamPool.key("https://api.example.com", { credential: "sk-other" })
    const d = UpstreamPool.key("https://api.example.com", { proxy: "http://u:pw@proxy:3128", credential: "sk-secret" })
    const e = UpstreamPool.key("https://api.example.com", { proxy: "http://u:pw2@proxy:3128", credential: "sk-secret" })
    assert.strictEqual(a.id, b.id)
    assert.strictEqual(a.origin, "https://api.example.com")
    assert.notStrictEqual(a.id, c.id)
    assert.notStrictEqual(a.id, d.id)
    assert.notStrictEqual(d.id, e.id)
    for (const key of [a, c, d, e]) {
      assert.notInclude(key.id, "secret")
      assert.notInclude(key.id, "pw")
      assert.notInclude(UpstreamPool.describeKey(key), "secret")
    }
    assert.strictEqual(UpstreamPool.describeKey(d).startsWith("https://api.example.com via proxy:3128 as "), true)
    assert.throws(() => UpstreamPool.key("ftp://files.example.com"))
  })

  it("isConnectionError: broken sockets and timeouts, not aborts, bad arguments or status codes", () => {
    assert.isTrue(UpstreamPool.isConnectionError(new errors.SocketError("other side closed")))
    assert.isTrue(UpstreamPool.isConnectionError(new errors.HeadersTimeoutError()))
    assert.isTrue(UpstreamPool.isConnectionError(new errors.BodyTimeoutError()))
    assert.isTrue(UpstreamPool.isConnectionError(new errors.ConnectTimeoutError()))
    assert.isTrue(UpstreamPool.isConnectionError(new errors.ClientClosedError()))
    assert.isTrue(UpstreamPool.isConnectionError(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })))
    assert.isTrue(UpstreamPool.isConnectionError({ _tag: "RequestError", cause: new errors.SocketError("closed") }))
    assert.isFalse(UpstreamPool.isConnectionError(new errors.RequestAbortedError()))
    assert.isFalse(UpstreamPool.isConnectionError(new errors.InvalidArgumentError("invalid header")))
    assert.isFalse(UpstreamPool.isConnectionError({ _tag: "ResponseError", reason: "StatusCode", status: 503 }))
  })
})
