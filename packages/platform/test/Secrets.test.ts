import { createHash, randomBytes } from "node:crypto"
import { KeyedPool, PoolRegistry } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Redacted, TestClock } from "effect"
import { AdminHttp } from "../src/index.js"
import { captureLogs, makeResources, settle } from "./utils/fixtures.js"
import { client, httpClient, type RawRequest, raw, serve } from "./utils/http.js"

interface Key {
  readonly user: string
  readonly server: string
  readonly apiKey: string
}

describe("secrets", () => {
  it.scoped("the token and a credential in a key appear nowhere in responses, logs or failure causes", () => {
    const logs = captureLogs()
    const secret = randomBytes(24).toString("hex")
    const credential = `sk-live-${randomBytes(16).toString("hex")}`
    const token = Redacted.make(secret)
    return Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const resources = yield* makeResources
      const pool = yield* KeyedPool.make({
        name: "vault",
        acquire: (key: Key) => resources.acquire(key),
        keyId: (key) => `${key.user}:${key.server}`,
        describeKey: (key) => `${key.user}:${key.server}`,
        fingerprint: (key) => createHash("sha256").update(key.apiKey).digest("hex"),
        maxPerKey: 1,
        acquireTimeout: "1 second",
        idleTimeout: "1 minute"
      }).pipe(Effect.provideService(PoolRegistry.PoolRegistry, registry))
      const server = yield* serve(registry, { token })
      const alice: Key = { user: "alice", server: "github", apiKey: credential }

      // a lease, a caller that times out (its PoolTimeout names the key), a waiter, an idle key
      const hold = yield* Deferred.make<void>()
      yield* Effect.forkScoped(pool.use(alice, () => Deferred.await(hold)))
      const late = yield* Effect.fork(Effect.exit(pool.use(alice, () => Effect.void)))
      yield* settle
      yield* TestClock.adjust("1 second")
      const timeout = yield* Fiber.join(late)
      yield* Effect.forkScoped(pool.use(alice, () => Effect.void))
      yield* pool.use({ user: "bob", server: "slack", apiKey: credential }, () => Effect.void)
      yield* settle

      const bearer = { authorization: `Bearer ${secret}` }
      const requests: Array<RawRequest> = [
        { path: "/pools", headers: bearer },
        { path: "/pools/vault", headers: bearer },
        { path: "/health", headers: bearer },
        { path: "/metrics", headers: bearer },
        { path: "/openapi.json" },
        { method: "POST", path: "/pools/vault/cleanup", headers: bearer, body: '{"reason":"rotation"}' },
        { method: "POST", path: "/pools/vault/cleanup", headers: bearer, body: '{"reason":' },
        { path: "/pools/none", headers: bearer },
        { path: "/pools" },
        { path: "/pools", headers: { authorization: `Basic ${Buffer.from(`admin:${secret}`).toString("base64")}` } },
        { path: "/pools", headers: { authorization: `Bearer ${secret.slice(1)}` } },
        { path: "/pools", headers: { authorization: secret } },
        { path: `/pools?access_token=${secret}` },
        { path: `/pools/vault?token=${secret}` },
        { path: `/health?access_token=${secret}`, headers: bearer },
        { path: `/nowhere?access_token=${secret}`, headers: bearer },
        { method: "DELETE", path: `/pools/vault?access_token=${secret}` }
      ]
      const responses = yield* Effect.forEach(requests, (request) => raw(server, request))
      assert.deepStrictEqual(
        responses.map((r) => r.status),
        [200, 200, 200, 200, 200, 200, 400, 404, 401, 401, 401, 401, 401, 401, 200, 404, 404]
      )

      // the typed client, right and wrong token: what its failures carry
      const exits: Array<Exit.Exit<unknown, unknown>> = []
      const good = yield* client(server, token)
      const bad = yield* client(server, Redacted.make(`${secret}0`))
      exits.push(yield* Effect.exit(good.cistern.listPools()))
      exits.push(yield* Effect.exit(good.cistern.getPool({ path: { name: "none" } })))
      exits.push(yield* Effect.exit(bad.cistern.listPools()))
      exits.push(yield* Effect.exit(bad.cistern.cleanupPool({ path: { name: "vault" }, payload: {} })))
      exits.push(timeout)
      assert.deepStrictEqual(
        exits.map((e) => e._tag),
        ["Success", "Failure", "Failure", "Failure", "Failure"]
      )

      const entry = Option.getOrThrow(yield* registry.get("vault"))
      const mapped = [yield* AdminHttp.poolStatusResponse(entry), yield* AdminHttp.cleanupConnectionsResponse(entry)]

      const haystack = Buffer.concat([
        ...responses.map((r) => r.raw),
        Buffer.from(logs.lines.join("\n")),
        Buffer.from(
          exits
            .map((exit) =>
              Exit.isFailure(exit)
                ? `${Cause.pretty(exit.cause, { renderErrorCause: true })}\n${JSON.stringify(exit.cause)}\n${String(Cause.squash(exit.cause))}`
                : JSON.stringify(exit.value)
            )
            .join("\n")
        ),
        Buffer.from(JSON.stringify(mapped))
      ])
      for (const needle of [secret, credential, Buffer.from(secret).toString("base64")]) {
        const at = haystack.indexOf(needle)
        assert.strictEqual(at, -1, `a secret leaked: …${haystack.subarray(Math.max(0, at - 300), at).toString()}`)
      }

      // and the places searched were not empty: the logs saw these requests
      const logged = logs.lines.join("\n")
      assert.include(logged, "http.path=/nowhere")
      assert.include(logged, "http.path=/pools/vault/cleanup")
      assert.include(logged, "rotation")
      assert.include(logged, "RouteNotFound")
      assert.include(responses[1].body, "alice:github")
      assert.include(String(Cause.squash((timeout as Exit.Failure<unknown, unknown>).cause)), "alice:github")
      yield* Deferred.succeed(hold, undefined)
    }).pipe(Effect.provide(httpClient), Effect.provide(logs.layer))
  })
})
