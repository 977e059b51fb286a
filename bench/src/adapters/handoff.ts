/**
 * Wake-up floors: two fibers handing a value back and forth, and nothing
 * else — no pool, no item, no I/O. Each hand-off parks the receiving fiber
 * and resumes it from the sending one, which is the least a contended lease
 * costs in Effect: the releasing caller's item goes to a parked waiter, who
 * must be woken.
 *
 * - Through a `Deferred`: the receiver awaits a fresh `Deferred` (one is
 *   completed once, so each hand-off makes one), the sender completes it.
 *   What an Effect user writes for a hand-off.
 * - Through `Effect.async`: the receiver parks with `Effect.async` and the
 *   sender calls its `resume` — the primitive under `Deferred`, without the
 *   `Deferred` object, and what Cistern's waiters use.
 *
 * They are not pools: the contended scenario runs them instead of its
 * workload, with as many hand-offs as the workload has leases.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import type { Adapter } from "../subject.js"

const notAPool = async (): Promise<never> => {
  throw new Error("a hand-off floor is not a pool: the contended scenario runs its hand-offs instead")
}

/** Times `program` (two fibers, `handOffs` hand-offs in all) from start to end. */
const timed = async (program: Effect.Effect<void>): Promise<number> => {
  const started = performance.now()
  await Effect.runPromise(program)
  return performance.now() - started
}

/** Ping-pong through a fresh `Deferred` per hand-off: `a` sends even numbers, `b` answers with the next odd one. */
const deferredPingPong = (handOffs: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const rounds = handOffs >> 1
    let toA = Deferred.unsafeMake<number>(FiberId.none)
    let toB = Deferred.unsafeMake<number>(FiberId.none)
    let receivedByB = 0
    const b = Effect.whileLoop({
      while: () => receivedByB < rounds,
      body: () =>
        Effect.flatMap(Deferred.await(toB), (n) => {
          receivedByB++
          // The next message to `b` needs its own Deferred before `a` can send it.
          toB = Deferred.unsafeMake<number>(FiberId.none)
          return Deferred.succeed(toA, n + 1)
        }),
      step: () => {}
    })
    let sent = 0
    const a = Effect.whileLoop({
      while: () => sent < rounds,
      body: () =>
        Effect.suspend(() => {
          const reply = toA
          return Effect.zipRight(
            Deferred.succeed(toB, 2 * sent),
            Effect.flatMap(Deferred.await(reply), () => {
              toA = Deferred.unsafeMake<number>(FiberId.none)
              return Effect.void
            })
          )
        }),
      step: () => {
        sent++
      }
    })
    return Effect.zipRight(Effect.fork(b), a)
  })

/** One parked fiber's mailbox: `send` resumes it if it waits, or leaves the value for its next `receive`. */
class Mailbox {
  private resume: ((effect: Effect.Effect<number>) => void) | undefined = undefined
  private box: number | undefined = undefined

  readonly receive: Effect.Effect<number> = Effect.async<number>((resume) => {
    const value = this.box
    if (value === undefined) {
      this.resume = resume
    } else {
      this.box = undefined
      resume(Effect.succeed(value))
    }
  })

  send(value: number): void {
    const resume = this.resume
    if (resume === undefined) {
      this.box = value
    } else {
      this.resume = undefined
      resume(Effect.succeed(value))
    }
  }
}

/** Ping-pong through `Effect.async` callbacks. */
const asyncPingPong = (handOffs: number): Effect.Effect<void> =>
  Effect.suspend(() => {
    const rounds = handOffs >> 1
    const toA = new Mailbox()
    const toB = new Mailbox()
    let receivedByB = 0
    const b = Effect.whileLoop({
      while: () => receivedByB < rounds,
      body: () => Effect.map(toB.receive, (n) => toA.send(n + 1)),
      step: () => {
        receivedByB++
      }
    })
    let sent = 0
    const a = Effect.whileLoop({
      while: () => sent < rounds,
      body: () =>
        Effect.suspend(() => {
          toB.send(2 * sent)
          return toA.receive
        }),
      step: () => {
        sent++
      }
    })
    return Effect.zipRight(Effect.fork(b), a)
  })

/** Floor: two fibers handing a value back and forth through a `Deferred`. */
export const deferredHandOff: Adapter = {
  label: "floor: Deferred hand-off (2 fibers)",
  make: notAPool,
  handOff: (handOffs) => timed(deferredPingPong(handOffs))
}

/** Floor: two fibers handing a value back and forth through `Effect.async` resumes. */
export const asyncHandOff: Adapter = {
  label: "floor: Effect.async hand-off (2 fibers)",
  make: notAPool,
  handOff: (handOffs) => timed(asyncPingPong(handOffs))
}
