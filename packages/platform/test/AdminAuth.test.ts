import { PoolRegistry } from "@cistern/pool"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Exit, Layer, Redacted } from "effect"
import { AdminAuth } from "../src/index.js"
import { captureLogs } from "./utils/fixtures.js"
import { raw, serve } from "./utils/http.js"

const secret = "c1stern-admin-token-0123456789abcdef"
const token = Redacted.make(secret)

describe("AdminAuth", () => {
  it("verifier accepts only the token, in constant time over digests, and never throws", () => {
    const verify = AdminAuth.verifier(token)
    assert.isTrue(verify(`Bearer ${secret}`))
    assert.isTrue(verify(`bearer ${secret}`), "the scheme is case-insensitive")
    assert.isTrue(verify(`Bearer   ${secret}`))
    for (const header of [
      undefined,
      "",
      "Bearer",
      "Bearer ",
      `Basic ${secret}`,
      `Beaver ${secret}`,
      `${secret}`,
      `Bearer ${secret.slice(0, -1)}x`,
      `Bearer ${secret}x`,
      `Bearer ${"y".repeat(10_000)}`,
      `Bearer ${secret} extra`
    ]) {
      assert.isFalse(verify(header), `${header?.slice(0, 40)}`)
    }
  })

  it.effect(
    "layerConfig reads the token from CISTERN_ADMIN_TOKEN and names the variable when it is missing or empty",
    () =>
      Effect.gen(function* () {
        const build = (env: Record<string, string>, variable?: string) =>
          Layer.build(AdminAuth.layerConfig({ variable })).pipe(
            Effect.scoped,
            Effect.withConfigProvider(ConfigProvider.fromJson(env)),
            Effect.exit
          )
        assert.isTrue(Exit.isSuccess(yield* build({ CISTERN_ADMIN_TOKEN: secret })))
        assert.isTrue(Exit.isSuccess(yield* build({ OPS_TOKEN: secret }, "OPS_TOKEN")))
        for (const [env, variable] of [
          [{}, undefined],
          [{ CISTERN_ADMIN_TOKEN: "" }, undefined],
          [{ CISTERN_ADMIN_TOKEN: "two words" }, undefined],
          [{ CISTERN_ADMIN_TOKEN: secret }, "OPS_TOKEN"]
        ] as const) {
          const exit = yield* build(env, variable)
          assert.isTrue(Exit.isFailure(exit))
          assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), variable ?? "CISTERN_ADMIN_TOKEN")
        }
      })
  )
})

describe("AdminAuth over HTTP", () => {
  it.scopedLive(
    "only the right token gets 200; every other request gets a byte-identical 401 with WWW-Authenticate",
    () =>
      Effect.gen(function* () {
        const registry = yield* PoolRegistry.make
        const server = yield* serve(registry, { token })
        const other = secret.replace(/.$/, "X")
        const cases: ReadonlyArray<readonly [string, Record<string, string>, string]> = [
          ["no header", {}, "/pools"],
          ["empty", { authorization: "" }, "/pools"],
          ["empty bearer", { authorization: "Bearer " }, "/pools"],
          ["malformed scheme", { authorization: `Basic ${secret}` }, "/pools"],
          ["scheme of the same length", { authorization: `Beaver ${secret}` }, "/pools"],
          ["token without scheme", { authorization: secret }, "/pools"],
          ["wrong token, same length", { authorization: `Bearer ${other}` }, "/pools"],
          ["wrong token, other length", { authorization: "Bearer short" }, "/pools"],
          ["wrong token, very long", { authorization: `Bearer ${"z".repeat(4096)}` }, "/pools"],
          ["token in the query string", {}, `/pools?access_token=${secret}`],
          ["token in the query string, other name", {}, `/pools?token=${secret}`]
        ]
        const rejected = yield* Effect.forEach(cases, ([, headers, path]) => raw(server, { path, headers }))
        const first = rejected[0]
        assert.strictEqual(first.status, 401)
        assert.strictEqual(first.headers["www-authenticate"], "Bearer")
        assert.deepStrictEqual(JSON.parse(first.body), {
          _tag: "Unauthorized",
          message: "a valid bearer token is required (Authorization: Bearer <token>)"
        })
        rejected.forEach((response, i) => {
          assert.strictEqual(response.status, 401, cases[i][0])
          assert.deepStrictEqual(response.headerLines, first.headerLines, cases[i][0])
          assert.strictEqual(response.body, first.body, cases[i][0])
        })
        for (const path of ["/pools/x", "/metrics", "/health"]) {
          const response = yield* raw(server, { path, headers: { authorization: `Bearer ${other}` } })
          assert.deepStrictEqual(
            [response.status, response.headerLines, response.body],
            [401, first.headerLines, first.body]
          )
        }
        const cleanup = yield* raw(server, { method: "POST", path: "/pools/x/cleanup", body: "{}" })
        assert.deepStrictEqual([cleanup.status, cleanup.body], [401, first.body])

        const accepted = yield* raw(server, { path: "/pools", headers: { authorization: `Bearer ${secret}` } })
        assert.strictEqual(accepted.status, 200)
        assert.deepStrictEqual(JSON.parse(accepted.body), { pools: [] })
        assert.isUndefined(accepted.headers["www-authenticate"])
      }).pipe(Effect.provide(captureLogs().layer))
  )

  it.scopedLive("/health can be public while everything else still needs the token", () =>
    Effect.gen(function* () {
      const registry = yield* PoolRegistry.make
      const server = yield* serve(registry, { token, publicHealth: true })
      const health = yield* raw(server, { path: "/health" })
      assert.strictEqual(health.status, 200)
      assert.strictEqual(JSON.parse(health.body).status, "healthy")
      assert.strictEqual((yield* raw(server, { path: "/pools" })).status, 401)
      assert.strictEqual((yield* raw(server, { path: "/metrics" })).status, 401)
    }).pipe(Effect.provide(captureLogs().layer))
  )
})
