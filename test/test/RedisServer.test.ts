import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as LineClient from "../utils/LineClient.js"
import * as RedisServer from "../utils/RedisServer.js"

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const installed = RedisServer.isInstalled()

describe("RedisServer", () => {
  if (!installed) {
    const reason = `${RedisServer.binary} is not on PATH: run .ci/install-servers.sh to run these tests`
    // CI installs it (.ci/run): missing there is a failure, not a skip.
    if (process.env.CI) {
      it(reason, () => assert.fail(reason))
      return
    }
    console.warn(`@cistern/test: skipping the RedisServer tests, ${reason}`)
    it.skip(reason, () => {})
    return
  }

  it.scopedLive("starts on 127.0.0.1 and answers PING over a raw socket", () =>
    Effect.gen(function* () {
      const redis = yield* RedisServer.make()
      assert.strictEqual(redis.host, "127.0.0.1")
      assert.strictEqual(redis.url, `redis://127.0.0.1:${redis.port}`)
      const client = yield* LineClient.connect({ port: redis.port })
      assert.strictEqual(yield* client.request("PING"), "+PONG")
      assert.strictEqual(yield* client.request("SET cistern ok"), "+OK")
      assert.strictEqual(yield* client.request("GET cistern"), "$2")
      assert.strictEqual(yield* client.readLine, "ok")
      // No persistence: nothing is ever written to disk.
      assert.strictEqual(yield* client.request("CONFIG GET save"), "*2")
      assert.deepStrictEqual(
        [yield* client.readLine, yield* client.readLine, yield* client.readLine],
        ["$4", "save", "$0"]
      )
    })
  )

  it.scopedLive("stops with its scope", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const redis = yield* Scope.extend(RedisServer.make(), scope)
      assert.isTrue(alive(redis.pid))
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(alive(redis.pid), "the process has exited")
      const refused = yield* Effect.flip(Effect.scoped(LineClient.connect({ port: redis.port })))
      assert.strictEqual(refused.code, "ECONNREFUSED")
    })
  )

  it.scopedLive("two servers run side by side on different ports", () =>
    Effect.gen(function* () {
      const [a, b] = yield* Effect.all([RedisServer.make(), RedisServer.make()], { concurrency: 2 })
      assert.notStrictEqual(a.port, b.port)
      const clientA = yield* LineClient.connect({ port: a.port })
      const clientB = yield* LineClient.connect({ port: b.port })
      yield* clientA.request("SET who a")
      assert.strictEqual(yield* clientB.request("EXISTS who"), ":0")
    })
  )
})
