/**
 * A TCP proxy on 127.0.0.1 that injects real network faults between a client
 * and a target server: delays, resets, black holes and refused connections,
 * switched at runtime while connections are live.
 *
 * ```ts
 * const proxy = yield* ChaosProxy.make({ target: { port: server.port } })
 * const client = yield* LineClient.connect({ port: proxy.port })
 * yield* proxy.setMode(ChaosProxy.resetAfterBytes(5)) // the next reply is cut off by a reset
 * yield* proxy.setMode(ChaosProxy.refuse)               // connects now get ECONNREFUSED
 * yield* proxy.setMode(ChaosProxy.pass)                 // listening again, same port
 * const { peak } = yield* proxy.stats
 * ```
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import * as Clock from "effect/Clock"
import * as Data from "effect/Data"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import { loopback } from "./Ports.js"

/**
 * What the proxy does with connections and bytes.
 *
 * - `Pass`: forwards everything.
 * - `Delay`: forwards every chunk, in order, `delay` after it arrived. A new
 *   mode applies to chunks still held at once (switching to `Pass` flushes).
 * - `ResetOnAccept`: accepts new connections and resets them at once; the
 *   target never sees them. Live connections are untouched.
 * - `ResetAfterBytes`: each connection forwards at most `bytes` more bytes
 *   (both directions together, counted from the switch or from its accept),
 *   then resets both sides when the next byte would pass that.
 * - `Blackhole`: forwards nothing in either direction and drops it (a peer
 *   that went away without a word). New connections are accepted and never
 *   connected to the target, so they stay dead even after the mode changes.
 * - `Refuse`: stops listening, so connects fail with `ECONNREFUSED`; live
 *   connections carry on. Any other mode listens again on the same port.
 *
 * @since 0.1.0
 * @category models
 */
export type Mode = Data.TaggedEnum<{
  Pass: {}
  Delay: { readonly delay: Duration.Duration }
  ResetOnAccept: {}
  ResetAfterBytes: { readonly bytes: number }
  Blackhole: {}
  Refuse: {}
}>

/**
 * Constructors and matchers for {@link Mode}.
 *
 * @since 0.1.0
 * @category constructors
 */
export const Mode = Data.taggedEnum<Mode>()

/**
 * Forward everything.
 *
 * @since 0.1.0
 * @category constructors
 */
export const pass: Mode = Mode.Pass()

/**
 * Forward every chunk `delay` after it arrived.
 *
 * @since 0.1.0
 * @category constructors
 */
export const delay = (delay: Duration.DurationInput): Mode => Mode.Delay({ delay: Duration.decode(delay) })

/**
 * Reset new connections as soon as they are accepted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resetOnAccept: Mode = Mode.ResetOnAccept()

/**
 * Reset each connection once it has forwarded `bytes` more bytes.
 *
 * @since 0.1.0
 * @category constructors
 */
export const resetAfterBytes = (bytes: number): Mode => {
  if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`resetAfterBytes: bytes = ${bytes}`)
  return Mode.ResetAfterBytes({ bytes })
}

/**
 * Accept, and never forward or answer anything.
 *
 * @since 0.1.0
 * @category constructors
 */
export const blackhole: Mode = Mode.Blackhole()

/**
 * Stop listening: connects fail with `ECONNREFUSED`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const refuse: Mode = Mode.Refuse()

/**
 * The proxy could not listen (at start, or on its port again when leaving
 * `Refuse`).
 *
 * @since 0.1.0
 * @category errors
 */
export class ChaosProxyError extends Data.TaggedError("ChaosProxyError")<{
  readonly port: number
  readonly cause: Error
}> {
  override get message(): string {
    return `chaos proxy could not listen on ${loopback}:${this.port}: ${this.cause.message}`
  }
}

/**
 * Connections as the proxy saw them (client side: a connection counts from
 * its accept until its client socket closes).
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Connections open now. */
  readonly open: number
  /** Connections accepted since the proxy started. */
  readonly total: number
  /** The most connections open at once since the start or the last `resetPeak`. */
  readonly peak: number
}

/**
 * A running proxy.
 *
 * @since 0.1.0
 * @category models
 */
export interface ChaosProxy {
  readonly host: string
  /** Fixed for the proxy's life, across `Refuse`. */
  readonly port: number
  readonly target: { readonly host: string; readonly port: number }
  readonly mode: Effect.Effect<Mode>
  /** Switches the mode; fails only when leaving `Refuse` cannot listen again. */
  readonly setMode: (mode: Mode) => Effect.Effect<void, ChaosProxyError>
  /** Resets every live connection (both sides) now; returns how many, once they are closed. */
  readonly resetAll: Effect.Effect<number>
  readonly stats: Effect.Effect<Stats>
  /** Sets `peak` to the connections open now, to measure the peak of a phase. */
  readonly resetPeak: Effect.Effect<void>
}

/** A chunk to forward (`null`: the sender ended its side) and when it arrived. */
interface Chunk {
  readonly data: Buffer | null
  readonly at: number
}

interface Link {
  readonly client: net.Socket
  upstream: net.Socket | undefined
  /** Bytes left before a reset, in `ResetAfterBytes` mode. */
  budget: number
  readonly toUpstream: Queue.Queue<Chunk>
  readonly toClient: Queue.Queue<Chunk>
  readonly closed: Deferred.Deferred<void>
}

const reset = (socket: net.Socket | undefined): void => {
  if (socket === undefined || socket.destroyed) return
  if (socket.connecting) socket.destroy()
  else socket.resetAndDestroy()
}

const swallow = () => {}

/**
 * Starts a proxy on 127.0.0.1 and a free port in front of `target` (host
 * 127.0.0.1 unless given), in `mode` (default `pass`). Closing the scope stops
 * listening and resets every live connection.
 *
 * Delays run on the live clock whatever the test's `Clock`: the network does
 * not follow `TestClock`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly target: { readonly port: number; readonly host?: string | undefined }
  readonly mode?: Mode | undefined
}): Effect.Effect<ChaosProxy, ChaosProxyError, Scope.Scope> =>
  Effect.gen(function* () {
    const target = { host: options.target.host ?? loopback, port: options.target.port }
    const clock = Clock.make()
    const run = yield* FiberSet.makeRuntime<never, void, never>()
    const links = new Set<Link>()
    let mode: Mode = pass
    let changed = Deferred.unsafeMake<void>(FiberId.none)
    let server: net.Server | undefined
    let port = 0
    let total = 0
    let peak = 0

    const resetLink = (link: Link) => {
      reset(link.client)
      reset(link.upstream)
    }

    const forward = (link: Link, chunk: Chunk, to: net.Socket): Effect.Effect<void> =>
      Effect.suspend(() => {
        const now = mode
        if (now._tag === "Delay") {
          const wait = chunk.at + Duration.toMillis(now.delay) - clock.unsafeCurrentTimeMillis()
          if (wait > 0) {
            // Sleep, but wake on a mode change and look again.
            return Effect.zipRight(
              Effect.raceFirst(Effect.sleep(wait), Deferred.await(changed)),
              forward(link, chunk, to)
            )
          }
        }
        if (now._tag === "Blackhole" || to.destroyed) return Effect.void
        if (chunk.data === null) {
          to.end()
          return Effect.void
        }
        if (now._tag === "ResetAfterBytes" && chunk.data.length > link.budget) {
          const head = chunk.data.subarray(0, link.budget)
          link.budget = 0
          if (head.length === 0) return Effect.sync(() => resetLink(link))
          return Effect.async<void>((resume) => {
            to.write(head, () => {
              resetLink(link)
              resume(Effect.void)
            })
          })
        }
        if (now._tag === "ResetAfterBytes") link.budget -= chunk.data.length
        to.write(chunk.data)
        return Effect.void
      })

    const pump = (link: Link, queue: Queue.Queue<Chunk>, to: net.Socket) =>
      Queue.take(queue).pipe(
        Effect.flatMap((chunk) => forward(link, chunk, to)),
        Effect.forever,
        Effect.raceFirst(Deferred.await(link.closed)),
        Effect.withClock(clock)
      )

    const onConnection = (client: net.Socket) => {
      client.on("error", swallow)
      const link: Link = {
        client,
        upstream: undefined,
        budget: mode._tag === "ResetAfterBytes" ? mode.bytes : 0,
        toUpstream: Effect.runSync(Queue.unbounded<Chunk>()),
        toClient: Effect.runSync(Queue.unbounded<Chunk>()),
        closed: Deferred.unsafeMake<void>(FiberId.none)
      }
      total++
      links.add(link)
      peak = Math.max(peak, links.size)
      client.on("close", () => {
        links.delete(link)
        if (link.upstream !== undefined && !link.upstream.destroyed) link.upstream.destroy()
        Deferred.unsafeDone(link.closed, Effect.void)
      })

      if (mode._tag === "ResetOnAccept") return reset(client)
      // A black hole never connects onwards, and never reads (so never sees an end).
      if (mode._tag === "Blackhole") return

      const arrived = (queue: Queue.Queue<Chunk>) => (data: Buffer | null) =>
        Queue.unsafeOffer(queue, { data, at: clock.unsafeCurrentTimeMillis() })
      client.on("data", arrived(link.toUpstream))
      client.on("end", () => arrived(link.toUpstream)(null))

      const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
      link.upstream = upstream
      upstream.on("error", swallow)
      upstream.on("data", arrived(link.toClient))
      upstream.on("end", () => arrived(link.toClient)(null))
      // A failed connect or a reset from the target reaches the client as a reset.
      upstream.on("close", (hadError) => {
        if (hadError) reset(client)
      })
      upstream.once("connect", () => {
        run(pump(link, link.toUpstream, upstream))
        run(pump(link, link.toClient, client))
      })
    }

    const listen = Effect.async<void, ChaosProxyError>((resume) => {
      const next = net.createServer({ allowHalfOpen: true }, onConnection)
      next.once("error", (cause) => resume(Effect.fail(new ChaosProxyError({ port, cause }))))
      next.listen(port, loopback, () => {
        next.removeAllListeners("error")
        next.on("error", swallow)
        server = next
        port = (next.address() as net.AddressInfo).port
        resume(Effect.void)
      })
    })

    const stopListening = () => {
      // Closing the handle stops accepting at once; the callback would wait
      // for the live connections, which stay.
      server?.close()
      server = undefined
    }

    const closeAll = Effect.suspend(() => {
      const live = [...links]
      for (const link of live) resetLink(link)
      return Effect.as(
        Effect.forEach(live, (link) => Deferred.await(link.closed), { discard: true }),
        live.length
      )
    })

    const setMode = (next: Mode): Effect.Effect<void, ChaosProxyError> =>
      Effect.suspend(() => {
        const relisten = next._tag !== "Refuse" && server === undefined ? listen : Effect.void
        return Effect.map(relisten, () => {
          mode = next
          if (next._tag === "Refuse") stopListening()
          if (next._tag === "ResetAfterBytes") for (const link of links) link.budget = next.bytes
          const wake = changed
          changed = Deferred.unsafeMake<void>(FiberId.none)
          Deferred.unsafeDone(wake, Effect.void)
        })
      })

    yield* Effect.acquireRelease(listen, () =>
      Effect.suspend(() => {
        stopListening()
        return closeAll
      })
    )
    yield* setMode(options.mode ?? pass)

    return {
      host: loopback,
      port,
      target,
      mode: Effect.sync(() => mode),
      setMode,
      resetAll: closeAll,
      stats: Effect.sync(() => ({ open: links.size, total, peak })),
      resetPeak: Effect.sync(() => {
        peak = links.size
      })
    }
  })
