import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FastCheck as fc, Redacted, Ref, type Scope, TestClock } from "effect"
import { AdminApi } from "../src/index.js"
import { captureLogs, makeResources } from "./utils/fixtures.js"
import { openRequest, raw, serve } from "./utils/http.js"

const secret = "hostile-token-4b8e2f6a0c"
const token = Redacted.make(secret)
const bearer = { authorization: `Bearer ${secret}` }
const host = (port: number) => `host: 127.0.0.1:${port}`

/** A pool with three idle items past their idle timeout: a cleanup would destroy them. */
const expiredPool = Effect.gen(function* () {
  const registry = yield* PoolRegistry.make
  const resources = yield* makeResources
  const pool = yield* KeyedPool.make<string, { readonly id: number }, never, Scope.Scope>({
    name: "guarded",
    acquire: resources.acquire,
    maxPerKey: 5,
    idleTimeout: "1 minute",
    cleanupInterval: "1 hour"
  }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
  yield* Effect.forEach(["a", "b", "c"], (key) => pool.use(key, () => Effect.void), { concurrency: "unbounded" })
  yield* TestClock.adjust("2 minutes")
  const server = yield* serve(registry, { token })
  const untouched = Effect.gen(function* () {
    const stats = yield* pool.stats
    assert.deepStrictEqual([stats.idle, yield* Ref.get(resources.alive)], [3, 3], "nothing was cleaned")
  })
  return { server, untouched }
})

/** Before the limit existed, every body was "within" it. */
const limit: number = AdminApi.maxBodyBytes ?? Number.POSITIVE_INFINITY

const nest = (depth: number, open: string, close: string, inner = "1") =>
  `${open.repeat(depth)}${inner}${close.repeat(depth)}`

describe("hostile input to the admin API", () => {
  it.scoped("a cleanup body of any shape, 3,000 nested brackets included, gets a 400 and changes nothing", () =>
    Effect.gen(function* () {
      const { server, untouched } = yield* expiredPool
      const bodies = [
        "[".repeat(3000),
        nest(3000, "[", "]"),
        `{"reason":${"[".repeat(3000)}`,
        `{"reason":${nest(3000, "[", "]")}}`,
        `{"reason":${nest(1300, '{"a":', "}")}}`,
        `{"extra":${nest(3000, "[", "]")}}`,
        nest(1300, '{"a":', "}"),
        '{"reason":"\u0000"}',
        '{"reason":1e999999}',
        "null",
        '"a string"',
        "12",
        "{}{}"
      ]
      for (const body of bodies) {
        const response = yield* raw(server, {
          method: "POST",
          path: "/pools/guarded/cleanup",
          headers: { ...bearer, "content-type": "application/json" },
          body
        })
        assert.strictEqual(response.status, 400, body.slice(0, 40))
        const error = JSON.parse(response.body)
        assert.strictEqual(error._tag, "HttpApiDecodeError", body.slice(0, 40))
        assert.isBelow(response.body.length, 2048, "the message does not repeat the input")
      }
      yield* untouched
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("property: any JSON value or string as a cleanup body gets 200 or 400, never a 5xx", () =>
    Effect.gen(function* () {
      const { server } = yield* expiredPool
      const deep = fc
        .tuple(fc.integer({ min: 1, max: 4000 }), fc.constantFrom(["[", "]"], ['{"a":', "}"], ['{"reason":[', "]}"]))
        .map(([depth, [open, close]]) => nest(depth, open, close))
      const body = fc.oneof(fc.json({ depthSize: "large" }), fc.string({ unit: "binary" }), deep)
      const samples = fc.sample(body, { numRuns: 60, seed: 14 })
      for (const text of samples) {
        const response = yield* raw(server, {
          method: "POST",
          path: "/pools/guarded/cleanup",
          headers: { ...bearer, "content-type": "application/json" },
          body: text
        })
        const valid = (() => {
          try {
            const value = text.trim() === "" ? {} : JSON.parse(text)
            return (
              typeof value === "object" &&
              value !== null &&
              !Array.isArray(value) &&
              (value.reason === undefined ||
                (typeof value.reason === "string" && value.reason.length <= 200 && !/\p{Cc}/u.test(value.reason)))
            )
          } catch {
            return false
          }
        })()
        const expected = valid && Buffer.byteLength(text) <= limit ? 200 : Buffer.byteLength(text) > limit ? 413 : 400
        assert.strictEqual(response.status, expected, `seed 14, body ${JSON.stringify(text.slice(0, 60))}`)
      }
    }).pipe(Effect.provide(captureLogs().layer))
  )
})

describe("admin request bodies are small", () => {
  it.scoped("a body over the limit gets 413: announced, it is refused before it is read", () =>
    Effect.gen(function* () {
      const { server } = yield* expiredPool
      const announced = yield* openRequest(server, [
        "POST /pools/guarded/cleanup HTTP/1.1",
        host(server.port),
        `authorization: Bearer ${secret}`,
        "content-type: application/json",
        `content-length: ${5 * 1024 * 1024}`
      ])
      const refused = yield* announced.response
      assert.strictEqual(refused.status, 413)
      assert.strictEqual(refused.headers.connection, "close")
      const error = JSON.parse(refused.body)
      assert.deepStrictEqual(error, {
        _tag: "PayloadTooLarge",
        limit: AdminApi.maxBodyBytes,
        message: `an admin request body has at most ${AdminApi.maxBodyBytes} bytes`
      })
      yield* announced.closed
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("a chunked body over the limit gets 413 once the limit is passed; one at the limit is read", () =>
    Effect.gen(function* () {
      const { server, untouched } = yield* expiredPool
      const streamed = yield* openRequest(server, [
        "POST /pools/guarded/cleanup HTTP/1.1",
        host(server.port),
        `authorization: Bearer ${secret}`,
        "content-type: application/json",
        "transfer-encoding: chunked"
      ])
      const chunk = `{"reason":"${" ".repeat(4096)}`
      yield* streamed.write(`${Buffer.byteLength(chunk).toString(16)}\r\n${chunk}\r\n`)
      const more = " ".repeat(8192)
      yield* streamed.write(`${more.length.toString(16)}\r\n${more}\r\n`)
      const refused = yield* streamed.response
      assert.strictEqual(refused.status, 413)
      yield* streamed.closed
      yield* untouched

      // JSON may pad with whitespace: exactly the limit is still a request
      const body = `{"reason":"at the limit"}`
      const padded = body + " ".repeat(AdminApi.maxBodyBytes - body.length)
      const accepted = yield* raw(server, {
        method: "POST",
        path: "/pools/guarded/cleanup",
        headers: { ...bearer, "content-type": "application/json" },
        body: padded
      })
      assert.strictEqual(accepted.status, 200)
      assert.strictEqual(JSON.parse(accepted.body).cleaned, 3)
    }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scoped("without a token, a 5 MB upload gets its 401 and the connection closed before any of it is sent", () =>
    Effect.gen(function* () {
      const { server } = yield* expiredPool
      for (const authorization of [[], ["authorization: Bearer wrong"]]) {
        const upload = yield* openRequest(server, [
          "POST /pools/guarded/cleanup HTTP/1.1",
          host(server.port),
          ...authorization,
          "content-type: application/json",
          `content-length: ${5 * 1024 * 1024}`
        ])
        const refused = yield* upload.response
        assert.strictEqual(refused.status, 401)
        assert.strictEqual(refused.headers.connection, "close")
        assert.strictEqual(refused.headers["www-authenticate"], "Bearer")
        // the server hangs up rather than wait for (and read) the 5 MB it was promised
        yield* upload.closed
      }
    }).pipe(Effect.provide(captureLogs().layer))
  )
})

describe("one Authorization header", () => {
  it.scoped("a request with two Authorization headers gets the same 401 as any other, whatever they hold", () =>
    Effect.gen(function* () {
      const { server } = yield* expiredPool
      const reference = yield* raw(server, { path: "/pools" })
      assert.strictEqual(reference.status, 401)
      const right = `Bearer ${secret}`
      const cases = [
        [`Authorization: ${right}`, `Authorization: ${right}`],
        [`Authorization: ${right}`, "Authorization: Bearer wrong"],
        ["Authorization: Bearer wrong", `Authorization: ${right}`],
        [`authorization: ${right}`, `AUTHORIZATION: ${right}`],
        [`Authorization: ${right}`, "Authorization: "]
      ]
      for (const headerLines of cases) {
        for (const path of ["/pools", "/pools/guarded", "/metrics", "/health"]) {
          const response = yield* raw(server, { path, headerLines })
          assert.deepStrictEqual(
            [response.status, response.headerLines, response.body],
            [401, reference.headerLines, reference.body],
            `${path} ${headerLines.join(" | ")}`
          )
        }
        const cleanup = yield* raw(server, { method: "POST", path: "/pools/guarded/cleanup", headerLines, body: "{}" })
        assert.strictEqual(cleanup.status, 401)
      }
      const one = yield* raw(server, { path: "/pools", headerLines: [`Authorization: ${right}`] })
      assert.strictEqual(one.status, 200)
    }).pipe(Effect.provide(captureLogs().layer))
  )
})
