import * as childProcess from "node:child_process"
import * as Http from "node:http"
import * as Net from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Redacted, TestClock } from "effect"
import { accountHeader, listen, relayConfig, sessionHeader } from "../src/Relay.js"
import * as Upstream from "../src/Upstream.js"

const adminToken = Redacted.make("relay-admin-token-0123456789abcdef")
const bearer = { authorization: `Bearer ${Redacted.value(adminToken)}` }
const accounts = { "account-a": "sk-up-a", "account-b": "sk-up-b", "account-c": "sk-up-c" } as const
type Name = keyof typeof accounts
const UPSTREAM_ACCOUNTS = Object.entries(accounts)
  .map(([name, key]) => `${name}=${key}`)
  .join(",")

/** The relay with three accounts in front of a stand-in upstream, in the current scope. */
const start = (env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const up = yield* Upstream.start({ tokens: 3, delayMs: 1 })
    const config = yield* Effect.withConfigProvider(
      relayConfig,
      ConfigProvider.fromMap(new Map(Object.entries({ UPSTREAM_ACCOUNTS, ...env })))
    )
    const relay = yield* listen({ upstream: up.url, config, adminToken }, 0)
    /** Requests the upstream got per account. */
    const upstreamCount = (name: Name) => up.requestsByKey().get(accounts[name]) ?? 0
    return { up, relay, upstreamCount }
  })

interface Reply {
  readonly status: number
  readonly account: string | undefined
  readonly body: string
}

const call = (port: number, method: string, path: string, headers: Record<string, string>, body?: string) =>
  Effect.promise(
    () =>
      new Promise<Reply>((resolve, reject) => {
        const req = Http.request(
          {
            host: "127.0.0.1",
            port,
            path,
            method,
            agent: false,
            headers: { "content-type": "application/json", ...headers }
          },
          (res) => {
            let text = ""
            res.setEncoding("utf8")
            res.on("data", (chunk: string) => {
              text += chunk
            })
            res.on("end", () => {
              const account = res.headers[accountHeader]
              resolve({
                status: res.statusCode ?? 0,
                account: typeof account === "string" ? account : undefined,
                body: text
              })
            })
          }
        )
        req.setTimeout(5_000, () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)))
        req.on("error", reject)
        req.end(body)
      })
  )

/** One chat completion of `session` (none: no session header). */
const chat = (port: number, session: string | undefined, headers: Record<string, string> = {}) =>
  call(
    port,
    "POST",
    "/v1/chat/completions",
    session === undefined ? headers : { [sessionHeader]: session, ...headers },
    '{"model":"relay-demo","stream":true,"messages":[{"role":"user","content":"hi"}]}'
  )

/** `n` requests of `session` one after another: the accounts they went to. */
const accountsOf = (port: number, session: string, n: number) =>
  Effect.gen(function* () {
    const seen: Array<string | undefined> = []
    for (let i = 0; i < n; i++) {
      const reply = yield* chat(port, session)
      assert.strictEqual(reply.status, 200, reply.body)
      assert.include(reply.body, "data: [DONE]")
      seen.push(reply.account)
    }
    return seen
  })

const sessionsOf = (port: number, query: string, headers: Record<string, string> = bearer) =>
  call(port, "GET", `/admin/sessions?${query}`, headers)

/** Runs `self` with the relay's stores in memory, then (when redis-server is installed) in Redis. */
const stores = ["memory", "redis"] as const

const freePort = Effect.async<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** A throwaway redis-server on 127.0.0.1 and a free port, stopped with the scope; its URL. */
const redisServer = Effect.gen(function* () {
  const port = yield* freePort
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      childProcess.spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        {
          stdio: "ignore"
        }
      )
    ),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )
  const deadline = performance.now() + 10_000
  while (
    !(yield* Effect.promise(
      () =>
        new Promise<boolean>((resolve) => {
          const socket = Net.connect(port, "127.0.0.1", () => {
            socket.end()
            resolve(true)
          })
          socket.on("error", () => resolve(false))
        })
    ))
  ) {
    if (performance.now() > deadline || child.exitCode !== null) return yield* Effect.die("redis-server did not start")
    yield* Effect.promise(() => new Promise((r) => setTimeout(r, 20)))
  }
  return `redis://127.0.0.1:${port}`
})

const redisInstalled = childProcess.spawnSync("redis-server", ["--version"], { stdio: "ignore" }).status === 0
const storeEnv = (store: (typeof stores)[number]) =>
  store === "memory" ? Effect.succeed({}) : Effect.map(redisServer, (url) => ({ REDIS_URL: url }))

describe("llm-relay sessions", () => {
  for (const store of stores) {
    const runs = store === "memory" || redisInstalled || process.env.CI !== undefined
    it.scoped.skipIf(!runs)(
      `[${store}] a session keeps its account; three failures open that account's circuit and the session moves, never back while it is open (TestClock)`,
      () =>
        Effect.gen(function* () {
          const { relay, upstreamCount } = yield* start(yield* storeEnv(store))
          // Sticky: every request of the session goes to one account.
          const first = yield* accountsOf(relay.port, "s-1", 5)
          const home = first[0] as Name
          assert.include(Object.keys(accounts), home)
          assert.deepStrictEqual(first, [home, home, home, home, home])
          assert.strictEqual(upstreamCount(home), 5)

          // The account fails three times (the upstream drops the connection before answering):
          // the session stays on it until its circuit opens, each failure a 502.
          for (let i = 0; i < 3; i++) {
            const failed = yield* chat(relay.port, "s-1", { "x-upstream-mode": "drop" })
            assert.strictEqual(failed.status, 502)
            assert.strictEqual(failed.account, home)
          }
          assert.strictEqual(upstreamCount(home), 8)

          // Its circuit is open: the session moves, and stays where it moved.
          const moved = yield* accountsOf(relay.port, "s-1", 4)
          const away = moved[0] as Name
          assert.notStrictEqual(away, home)
          assert.deepStrictEqual(moved, [away, away, away, away])
          // New sessions are not given the open account either.
          for (let i = 0; i < 12; i++) {
            const [account] = yield* accountsOf(relay.port, `fresh-${i}`, 1)
            assert.notStrictEqual(account, home)
          }
          assert.strictEqual(upstreamCount(home), 8, "no request reached the open account")

          // Still open at 59 s; at 61 s its circuit half-opens, and still the session does not flap back.
          yield* TestClock.adjust("59 seconds")
          assert.deepStrictEqual(yield* accountsOf(relay.port, "s-1", 2), [away, away])
          yield* TestClock.adjust("2 seconds")
          assert.deepStrictEqual(yield* accountsOf(relay.port, "s-1", 3), [away, away, away])
          assert.strictEqual(upstreamCount(home), 8)
          // The circuit's time is the TestClock's: past 60 s it lets a probe through and closes,
          // so new sessions are given the account again, while s-1 stays where it is.
          const later: Array<string | undefined> = []
          for (let i = 0; i < 12; i++) later.push(...(yield* accountsOf(relay.port, `later-${i}`, 1)))
          assert.include(later, home)
          assert.isAbove(upstreamCount(home), 8)
          assert.deepStrictEqual(yield* accountsOf(relay.port, "s-1", 1), [away])

          const found = yield* sessionsOf(relay.port, "user=anonymous")
          const s1 = JSON.parse(found.body).sessions.find((s: { id: string }) => s.id === "s-1")
          assert.include(s1, { account: away, requests: 18, moves: 1 })
        })
    )

    if (store === "memory") {
      it.scoped(
        "[memory] three failures within 60 s open an account's circuit though successes come between; spread wider they do not (TestClock)",
        () =>
          Effect.gen(function* () {
            const { relay, upstreamCount } = yield* start()
            const [home] = (yield* accountsOf(relay.port, "w-1", 1)) as Array<Name>
            const drop = Effect.map(chat(relay.port, "w-1", { "x-upstream-mode": "drop" }), (r) => r.status)
            assert.strictEqual(yield* drop, 502) // 0 s
            assert.deepStrictEqual(yield* accountsOf(relay.port, "w-1", 1), [home])
            yield* TestClock.adjust("35 seconds")
            assert.strictEqual(yield* drop, 502) // 35 s
            assert.deepStrictEqual(yield* accountsOf(relay.port, "w-1", 1), [home])
            yield* TestClock.adjust("30 seconds")
            assert.strictEqual(yield* drop, 502) // 65 s: the first has left the window, two remain
            assert.deepStrictEqual(yield* accountsOf(relay.port, "w-1", 1), [home], "not open: two failures in 60 s")
            assert.strictEqual(yield* drop, 502) // 65 s: 35, 65, 65
            const count = upstreamCount(home!)
            const [moved] = yield* accountsOf(relay.port, "w-1", 1)
            assert.notStrictEqual(moved, home, "three failures within 60 s opened the circuit")
            assert.strictEqual(upstreamCount(home!), count)
          })
      )
    }

    it.scoped.skipIf(!runs)(`[${store}] the admin route finds sessions by user and by API key, behind the token`, () =>
      Effect.gen(function* () {
        const { relay } = yield* start(yield* storeEnv(store))
        const as = (user: string, key: string) => ({ "x-user-id": user, authorization: `Bearer ${key}` })
        for (const [session, user, key] of [
          ["alice-1", "alice", "sk-client-1"],
          ["alice-2", "alice", "sk-client-2"],
          ["bob-1", "bob", "sk-client-1"]
        ] as const) {
          const reply = yield* chat(relay.port, session, as(user, key))
          assert.strictEqual(reply.status, 200)
        }
        // no session header: served, but nothing is recorded
        assert.strictEqual((yield* chat(relay.port, undefined, as("carol", "sk-client-3"))).status, 200)

        assert.strictEqual((yield* sessionsOf(relay.port, "user=alice", {})).status, 401)
        assert.strictEqual((yield* sessionsOf(relay.port, "user=alice", { authorization: "Bearer wrong" })).status, 401)
        assert.strictEqual((yield* sessionsOf(relay.port, "")).status, 400)

        const ids = (body: string) =>
          JSON.parse(body)
            .sessions.map((s: { id: string }) => s.id)
            .sort()
        const byUser = yield* sessionsOf(relay.port, "user=alice")
        assert.strictEqual(byUser.status, 200)
        assert.deepStrictEqual(ids(byUser.body), ["alice-1", "alice-2"])
        const byKey = yield* sessionsOf(relay.port, "apiKey=sk-client-1")
        assert.deepStrictEqual(ids(byKey.body), ["alice-1", "bob-1"])
        assert.notInclude(byKey.body, "sk-client-1", "API keys are stored and shown as fingerprints only")
        assert.deepStrictEqual(ids((yield* sessionsOf(relay.port, "user=carol")).body), [])
        const [alice1] = JSON.parse(byUser.body).sessions.filter((s: { id: string }) => s.id === "alice-1")
        assert.include(alice1, { userId: "alice", requests: 1, moves: 0, accountOpen: false })
        assert.include(Object.keys(accounts), alice1.account)
      })
    )
  }

  it.effect("reads UPSTREAM_ACCOUNTS and rejects a bad one without echoing its keys", () =>
    Effect.gen(function* () {
      const read = (env: Record<string, string>) =>
        Effect.either(Effect.withConfigProvider(relayConfig, ConfigProvider.fromMap(new Map(Object.entries(env)))))
      const ok = yield* read({ UPSTREAM_ACCOUNTS })
      assert.isTrue(Either.isRight(ok) && ok.right.accounts.length === 3)
      for (const bad of ["a=sk-secret,a=sk-secret-2", "nokey", "a=sk-secret,=x"]) {
        const result = yield* read({ UPSTREAM_ACCOUNTS: bad })
        assert.isTrue(Either.isLeft(result))
        if (Either.isLeft(result)) {
          assert.include(String(result.left), "UPSTREAM_ACCOUNTS")
          assert.notInclude(String(result.left), "sk-secret")
        }
      }
    })
  )
})
