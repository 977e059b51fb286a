import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Scope from "effect/Scope"
import * as ChaosProxy from "../utils/ChaosProxy.js"
import * as EchoServer from "../utils/EchoServer.js"
import { eventually } from "../utils/Eventually.js"
import * as LineClient from "../utils/LineClient.js"

const setup = Effect.gen(function* () {
  const server = yield* EchoServer.make
  const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
  const connect = LineClient.connect({ port: proxy.port })
  return { server, proxy, connect }
})

/**
 * Asserts that `fiber` has not finished after a short while. One-sided: a
 * held reply cannot arrive early, however loaded the machine.
 */
const assertStillPending = <A, E>(fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    yield* Effect.sleep("100 millis")
    assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "expected the request to be held")
  })

const resetCodes = ["ECONNRESET", "EPIPE"]

describe("ChaosProxy", () => {
  it.scopedLive("pass forwards both ways and counts connections", () =>
    Effect.gen(function* () {
      const { connect, proxy, server } = yield* setup
      const a = yield* connect
      const b = yield* connect
      assert.strictEqual(yield* a.request("PING"), "PONG")
      assert.strictEqual(yield* b.request("through the proxy"), "through the proxy")
      assert.deepStrictEqual(yield* proxy.stats, { open: 2, total: 2, peak: 2 })
      assert.strictEqual(yield* server.connections, 2)

      yield* a.destroy
      yield* b.destroy
      yield* eventually(proxy.stats, (s) => s.open === 0, { label: "proxy open" })
      yield* eventually(server.connections, (n) => n === 0, { label: "server connections" })
      assert.deepStrictEqual(yield* proxy.stats, { open: 0, total: 2, peak: 2 })

      yield* proxy.resetPeak
      const c = yield* connect
      yield* c.request("PING")
      assert.deepStrictEqual(yield* proxy.stats, { open: 1, total: 3, peak: 1 })
    })
  )

  it.scopedLive("delay holds data until the delay is over or the mode changes", () =>
    Effect.gen(function* () {
      const { connect, proxy } = yield* setup
      const client = yield* connect
      yield* proxy.setMode(ChaosProxy.delay("1 minute"))
      const reply = yield* Effect.fork(client.request("PING"))
      yield* assertStillPending(reply)
      yield* proxy.setMode(ChaosProxy.delay("1 millis"))
      assert.strictEqual(yield* Fiber.join(reply), "PONG")
      // Order is kept across chunks and mode changes.
      yield* proxy.setMode(ChaosProxy.delay("20 millis"))
      yield* client.write("1\n2\n")
      yield* proxy.setMode(ChaosProxy.pass)
      yield* client.write("3\n")
      assert.deepStrictEqual([yield* client.readLine, yield* client.readLine, yield* client.readLine], ["1", "2", "3"])
    })
  )

  it.scopedLive("resetOnAccept resets new connections before they reach the target", () =>
    Effect.gen(function* () {
      const { connect, proxy, server } = yield* setup
      const live = yield* connect
      yield* live.request("PING")
      yield* proxy.setMode(ChaosProxy.resetOnAccept)
      const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(connect, (c) => c.request("PING"))))
      assert.include(resetCodes, error.code)
      assert.strictEqual(yield* server.accepted, 1)
      assert.strictEqual(yield* live.request("still here"), "still here")
      assert.strictEqual((yield* proxy.stats).total, 2)
    })
  )

  it.scopedLive("resetAfterBytes forwards that many bytes, then resets both sides", () =>
    Effect.gen(function* () {
      const { connect, proxy, server } = yield* setup
      const client = yield* connect
      yield* client.request("PING")
      // "PING\n" out and "PONG\n" back: 10 bytes; the next request is cut.
      yield* proxy.setMode(ChaosProxy.resetAfterBytes(10))
      assert.strictEqual(yield* client.request("PING"), "PONG")
      const error = yield* Effect.flip(client.request("PING"))
      assert.strictEqual(error.code, "ECONNRESET")
      assert.strictEqual((yield* client.ended).code, "ECONNRESET")
      yield* eventually(server.connections, (n) => n === 0, { label: "server connections" })

      // New connections get the budget from their accept: the request goes, the reply is cut.
      yield* proxy.setMode(ChaosProxy.resetAfterBytes(5))
      const next = yield* connect
      const cut = yield* Effect.flip(next.request("PING"))
      assert.strictEqual(cut.code, "ECONNRESET")
    })
  )

  it.scopedLive("resetAll resets every live connection at once", () =>
    Effect.gen(function* () {
      const { connect, proxy, server } = yield* setup
      const clients = yield* Effect.all([connect, connect, connect])
      yield* Effect.forEach(clients, (c) => c.request("PING"))
      assert.strictEqual(yield* proxy.resetAll, 3)
      for (const client of clients) assert.strictEqual((yield* client.ended).code, "ECONNRESET")
      assert.strictEqual((yield* proxy.stats).open, 0)
      yield* eventually(server.connections, (n) => n === 0, { label: "server connections" })
      const after = yield* connect
      assert.strictEqual(yield* after.request("PING"), "PONG")
    })
  )

  it.scopedLive("blackhole accepts and never answers, live connections included", () =>
    Effect.gen(function* () {
      const { connect, proxy, server } = yield* setup
      const live = yield* connect
      yield* live.request("PING")
      yield* proxy.setMode(ChaosProxy.blackhole)

      const lost = yield* Effect.fork(live.request("PING"))
      const hole = yield* connect
      const unanswered = yield* Effect.fork(hole.request("PING"))
      yield* assertStillPending(lost)
      yield* assertStillPending(unanswered)
      assert.strictEqual(yield* server.accepted, 1, "a blackholed connect never reaches the target")
      assert.strictEqual((yield* proxy.stats).open, 2)
      assert.isTrue(yield* live.isOpen)

      // Dropped bytes stay dropped; new bytes on a live connection flow again.
      yield* proxy.setMode(ChaosProxy.pass)
      yield* Fiber.interrupt(lost)
      assert.strictEqual(yield* live.request("back"), "back")
      // A connection accepted by the hole stays dead.
      yield* assertStillPending(unanswered)
      assert.strictEqual(yield* server.accepted, 1)
    })
  )

  it.scopedLive("refuse stops listening and listens again on the same port", () =>
    Effect.gen(function* () {
      const { connect, proxy } = yield* setup
      const port = proxy.port
      const live = yield* connect
      yield* live.request("PING")
      yield* proxy.setMode(ChaosProxy.refuse)
      const refused = yield* Effect.flip(Effect.scoped(connect))
      assert.strictEqual(refused.code, "ECONNREFUSED")
      assert.strictEqual(yield* live.request("live ones carry on"), "live ones carry on")

      yield* proxy.setMode(ChaosProxy.pass)
      assert.strictEqual(proxy.port, port)
      const back = yield* connect
      assert.strictEqual(yield* back.request("PING"), "PONG")
      assert.strictEqual((yield* proxy.stats).total, 2)
    })
  )

  it.scopedLive("a target that is down reaches the client as a reset", () =>
    Effect.gen(function* () {
      const { connect, server } = yield* setup
      yield* server.stop
      const error = yield* Effect.flip(Effect.scoped(Effect.flatMap(connect, (c) => c.request("PING"))))
      assert.include(resetCodes, error.code)
    })
  )

  it.scopedLive("closing its scope resets live connections and stops listening", () =>
    Effect.gen(function* () {
      const echo = yield* EchoServer.make
      const scope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
      const proxy = yield* Scope.extend(ChaosProxy.make({ target: { port: echo.port } }), scope)
      const client = yield* LineClient.connect({ port: proxy.port })
      yield* client.request("PING")
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual((yield* client.ended).code, "ECONNRESET")
      const refused = yield* Effect.flip(Effect.scoped(LineClient.connect({ port: proxy.port })))
      assert.strictEqual(refused.code, "ECONNREFUSED")
      yield* eventually(echo.connections, (n) => n === 0, { label: "server connections" })
    })
  )
})
