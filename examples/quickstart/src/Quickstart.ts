/**
 * The quickstart program: real TCP sockets pooled per user with
 * `KeyedPool.layer`, a burst of concurrent work, an acquire timeout, a
 * credential change, and the stats.
 *
 * @since 0.1.0
 */
import { KeyedPool, type PoolError, type PoolStats } from "@cistern/pool"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Ref from "effect/Ref"
import * as Schedule from "effect/Schedule"
import * as EchoServer from "./EchoServer.js"
import * as Socket from "./Socket.js"

/**
 * Who a connection belongs to. Connections are shared per `user`; the
 * credential hash is their version: when it changes, older ones are retired.
 *
 * @since 0.1.0
 * @category models
 */
export interface UserKey {
  readonly user: string
  readonly credentialHash: string
}

/**
 * The application's pool of echo-server connections.
 *
 * @since 0.1.0
 * @category services
 */
export class Sockets extends Context.Tag("quickstart/Sockets")<
  Sockets,
  KeyedPool.KeyedPool<UserKey, Socket.Socket, Socket.SocketError>
>() {}

/**
 * A socket the pool opened, and for which key.
 *
 * @since 0.1.0
 * @category models
 */
export interface Opened {
  readonly key: UserKey
  readonly socket: Socket.Socket
}

/**
 * The pool's limits: 3 sockets per user, 6 in all, and a caller waits at most
 * 2 seconds for one (the burst's callers queue for sockets still connecting:
 * on a busy machine that takes more than a few hundred milliseconds).
 *
 * @since 0.1.0
 * @category constants
 */
export const limits = { maxPerKey: 3, maxTotal: 6, acquireTimeout: "2 seconds" } as const

/**
 * The pool: sockets to `server`, logged in as their user (the echo of the
 * login line stands in for the server's answer), within {@link limits}. Every
 * socket it opens is recorded in `opened`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (server: EchoServer.EchoServer, opened: Ref.Ref<ReadonlyArray<Opened>>) =>
  KeyedPool.layer(Sockets, {
    name: "echo",
    acquire: (key) =>
      Socket.connect(server).pipe(
        Effect.tap((socket) => socket.request(`LOGIN ${key.user} ${key.credentialHash}`)),
        Effect.tap((socket) => Ref.update(opened, (all) => [...all, { key, socket }]))
      ),
    keyId: (key) => key.user,
    fingerprint: (key) => key.credentialHash,
    describeKey: (key) => key.user,
    ...limits
  })

/**
 * What the program saw, for its test.
 *
 * @since 0.1.0
 * @category models
 */
export interface Report {
  /** Operations of the burst, and how many came back exactly as sent. */
  readonly operations: number
  readonly echoed: number
  /** What a caller got while its user's sockets were all leased. */
  readonly timeout: PoolError.PoolError | Socket.SocketError | undefined
  /** The credential change: sockets of the old credential, how many are closed, whether one was reused. */
  readonly rotation: {
    readonly oldSockets: number
    readonly oldClosed: number
    readonly oldReused: boolean
  }
  /** The pool's stats just before it closed. */
  readonly stats: PoolStats.PoolStats
  /** Sockets the pool opened in all, and how many are still open after it closed. */
  readonly socketsOpened: number
  readonly socketsOpenAfter: number
  /** Connections the server still sees after the pool closed. */
  readonly serverConnectionsAfter: number
}

const alice: UserKey = { user: "alice", credentialHash: "a1c3" }
const bob: UserKey = { user: "bob", credentialHash: "b0b5" }
const aliceRotated: UserKey = { user: "alice", credentialHash: "77f2" }

const keyLine = (stats: PoolStats.PoolStats, user: string): string => {
  const k = stats.perKey.find((s) => s.key === user)
  return k === undefined
    ? `${user}: no key`
    : `${user}: size ${k.size} (idle ${k.idle}, in use ${k.inUse}), created ${k.created}, destroyed ${k.destroyed}, timeouts ${k.timeouts}`
}

/** 24 concurrent request/echo round trips, 12 per user, over at most 3 sockets each. */
const burst = Effect.gen(function* () {
  const pool = yield* Sockets
  const operations = Array.from({ length: 24 }, (_, i) => ({ key: i % 2 === 0 ? alice : bob, line: `hello #${i}` }))
  const echoes = yield* Effect.forEach(
    operations,
    ({ key, line }) => pool.use(key, (socket) => socket.request(`${key.user} ${line}`)),
    { concurrency: "unbounded" }
  )
  const echoed = echoes.filter((echo, i) => echo === `${operations[i].key.user} ${operations[i].line}`).length
  const stats = yield* pool.stats
  yield* Effect.log(`burst: ${echoed}/${operations.length} echoed over ${stats.created} sockets`)
  yield* Effect.log(`  ${keyLine(stats, "alice")}`)
  yield* Effect.log(`  ${keyLine(stats, "bob")}`)
  return { operations: operations.length, echoed }
})

/** Alice's 3 sockets are all leased: her next caller times out, Bob is served meanwhile. */
const acquireTimeout = Effect.gen(function* () {
  const pool = yield* Sockets
  return yield* Effect.scoped(
    Effect.gen(function* () {
      yield* Effect.all([pool.get(alice), pool.get(alice), pool.get(alice)], { concurrency: "unbounded" })
      const [error, bobEcho] = yield* Effect.all(
        [
          pool
            .use(alice, (socket) => socket.request("alice once more"))
            .pipe(Effect.match({ onFailure: (error) => error, onSuccess: () => undefined })),
          pool.use(bob, (socket) => socket.request("bob meanwhile"))
        ],
        { concurrency: "unbounded" }
      )
      yield* Effect.log(`acquire timeout: ${error?._tag ?? "none"}: ${error?.message ?? "alice was served"}`)
      yield* Effect.log(`  bob was served meanwhile: "${bobEcho}"`)
      return error
    })
  )
})

/**
 * Alice's credential changes while one of her old sockets is leased: the idle
 * old ones are closed at once, the leased one when it is returned, and none is
 * handed out again.
 */
const credentialChange = (opened: Ref.Ref<ReadonlyArray<Opened>>) =>
  Effect.gen(function* () {
    const pool = yield* Sockets
    yield* Effect.log(`credential change: alice ${alice.credentialHash} -> ${aliceRotated.credentialHash}`)
    yield* Effect.log(`  before: ${keyLine(yield* pool.stats, "alice")}`)
    yield* Effect.scoped(
      Effect.gen(function* () {
        const held = yield* pool.get(alice)
        const fresh = yield* pool.use(aliceRotated, (socket) =>
          Effect.as(socket.request("alice with the new credential"), socket)
        )
        yield* Effect.log(`  old socket :${held.id} still leased, new socket :${fresh.id} served the new credential`)
        yield* Effect.log(`  while leased: ${keyLine(yield* pool.stats, "alice")}`)
      })
    )
    // Serves from the pool again: it must not hand out an old socket.
    const served = yield* pool.use(aliceRotated, Effect.succeed)
    const old = (yield* Ref.get(opened)).filter(
      (o) => o.key.user === "alice" && o.key.credentialHash === alice.credentialHash
    )
    // The pool closes retired sockets on fibers of its own, so a slow close never holds a caller:
    // give those finalizers a moment (bounded: 5 s, well past a close's own 1 s wait for the peer) before counting.
    const stillOpen = Effect.filter(old, (o) => o.socket.isOpen)
    const oldOpen = yield* stillOpen.pipe(
      Effect.filterOrFail((open) => open.length === 0),
      Effect.retry({ schedule: Schedule.spaced("10 millis"), times: 500 }),
      Effect.orElse(() => stillOpen)
    )
    yield* Effect.log(`  after return: ${keyLine(yield* pool.stats, "alice")}`)
    yield* Effect.log(`  ${old.length - oldOpen.length} of ${old.length} old sockets closed`)
    return {
      oldSockets: old.length,
      oldClosed: old.length - oldOpen.length,
      oldReused: old.some((o) => o.socket === served)
    }
  })

const printStats = (stats: PoolStats.PoolStats) =>
  Effect.gen(function* () {
    yield* Effect.log(
      `stats of pool "${stats.name}": ${stats.keys} keys, size ${stats.size} (idle ${stats.idle}, in use ${stats.inUse}), ` +
        `created ${stats.created}, destroyed ${stats.destroyed}, timeouts ${stats.timeouts}, failures ${stats.failures}`
    )
    for (const key of stats.perKey) yield* Effect.log(`  ${keyLine(stats, key.key)}`)
  })

/**
 * Runs the whole quickstart against a running echo server: builds the pool,
 * runs the demos, closes the pool, and checks that every socket is closed.
 *
 * @since 0.1.0
 * @category programs
 */
export const run = (server: EchoServer.EchoServer): Effect.Effect<Report, Socket.SocketError | PoolError.PoolError> =>
  Effect.gen(function* () {
    const opened = yield* Ref.make<ReadonlyArray<Opened>>([])
    const report = yield* Effect.gen(function* () {
      const { echoed, operations } = yield* burst
      const timeout = yield* acquireTimeout
      const rotation = yield* credentialChange(opened)
      const stats = yield* Effect.flatMap(Sockets, (pool) => pool.stats)
      yield* printStats(stats)
      return { operations, echoed, timeout, rotation, stats }
    }).pipe(Effect.provide(layer(server, opened)))

    // The pool is closed: every socket's finalizer has run. The server notices
    // the last ones closing a moment later.
    const serverConnectionsAfter = yield* server.connections.pipe(
      Effect.repeat({ schedule: Schedule.spaced("10 millis"), until: (n) => n === 0 }),
      Effect.timeout("10 seconds"),
      Effect.orElse(() => server.connections)
    )
    const sockets = yield* Ref.get(opened)
    const stillOpen = yield* Effect.filter(sockets, (o) => o.socket.isOpen)
    yield* Effect.log(
      `pool closed: ${stillOpen.length} of ${sockets.length} sockets open, the server sees ${serverConnectionsAfter} connections`
    )
    return {
      ...report,
      socketsOpened: sockets.length,
      socketsOpenAfter: stillOpen.length,
      serverConnectionsAfter
    }
  })

/**
 * The quickstart from start to end: starts the echo server, runs
 * {@link run}, stops the server.
 *
 * @since 0.1.0
 * @category programs
 */
export const program: Effect.Effect<Report, EchoServer.EchoServerError | Socket.SocketError | PoolError.PoolError> =
  Effect.scoped(
    Effect.gen(function* () {
      const server = yield* EchoServer.make
      yield* Effect.log(`echo server listening on ${server.host}:${server.port}`)
      return yield* run(server)
    })
  )
