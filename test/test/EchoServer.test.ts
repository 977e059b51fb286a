import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import * as EchoServer from "../utils/EchoServer.js"
import { eventually } from "../utils/Eventually.js"
import * as LineClient from "../utils/LineClient.js"

describe("EchoServer", () => {
  it.scopedLive("answers PING with PONG and echoes other lines", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const client = yield* LineClient.connect({ port: server.port })
      assert.strictEqual(yield* client.request("PING"), "PONG")
      assert.strictEqual(yield* client.request("hello there"), "hello there")
      yield* client.write("one\ntwo\nPI")
      yield* client.write("NG\n")
      assert.deepStrictEqual(
        [yield* client.readLine, yield* client.readLine, yield* client.readLine],
        ["one", "two", "PONG"]
      )
    })
  )

  it.scopedLive("counts open and accepted connections", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const first = yield* LineClient.connect({ port: server.port })
      const second = yield* LineClient.connect({ port: server.port })
      yield* first.request("PING")
      yield* second.request("PING")
      assert.strictEqual(yield* server.connections, 2)
      yield* first.destroy
      yield* eventually(server.connections, (n) => n === 1, { label: "server connections" })
      assert.strictEqual(yield* server.accepted, 2)
    })
  )

  it.scopedLive("restarts on the same port, closing the connections it had", () =>
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      const port = server.port
      const before = yield* LineClient.connect({ port })
      yield* before.request("PING")

      yield* server.stop
      assert.isFalse(yield* server.listening)
      assert.strictEqual(yield* server.connections, 0)
      assert.strictEqual((yield* before.ended).code, "CLOSED")
      const refused = yield* Effect.flip(Effect.scoped(LineClient.connect({ port })))
      assert.strictEqual(refused.code, "ECONNREFUSED")

      yield* server.start
      assert.strictEqual(server.port, port)
      const after = yield* LineClient.connect({ port })
      assert.strictEqual(yield* after.request("PING"), "PONG")
      assert.strictEqual(yield* server.accepted, 2)

      yield* server.restart
      const again = yield* LineClient.connect({ port })
      assert.strictEqual(yield* again.request("PING"), "PONG")
      assert.strictEqual((yield* after.ended).code, "CLOSED")
    })
  )

  it.scopedLive("stops with its scope", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const server = yield* Scope.extend(EchoServer.make, scope)
      const client = yield* Scope.extend(LineClient.connect({ port: server.port }), scope)
      yield* client.request("PING")
      yield* Scope.close(scope, Exit.void)
      assert.isFalse(yield* server.listening)
      assert.strictEqual(yield* server.connections, 0)
      const refused = yield* Effect.flip(Effect.scoped(LineClient.connect({ port: server.port })))
      assert.strictEqual(refused.code, "ECONNREFUSED")
    })
  )
})
