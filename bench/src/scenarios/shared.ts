/**
 * Shared leases: 1,000 concurrent callers × 100 leases on one key, a
 * `setImmediate` hop inside each use, each item lent to up to 100 callers at
 * once (an HTTP/2 session, an undici `Pool`, an MCP client). The pools may
 * make up to 1,000 items, so only their sharing rule keeps them at 10: a new
 * item is due only when every item has 100 leases. Measures throughput, how
 * many items were made, and the most leases one item held at once (counted
 * around each use, the same way for every pool).
 *
 * For scale, the exclusive row runs the same workload on 10 items each lent
 * to one caller at a time (990 callers wait): what a user gets without shared
 * leases and without making 1,000 connections.
 */
import * as Effect from "effect/Effect"
import type { AdapterId } from "../adapters/index.js"
import * as format from "../format.js"
import { quantiles } from "../measure.js"
import type { Shape, Subject } from "../subject.js"
import { runPlan } from "../workload.js"
import { Recorder, repeat, type Scenario, withPool } from "./scenario.js"

const sizes = (quick: boolean) =>
  quick ? { callers: 100, ops: 10, perItem: 10 } : { callers: 1_000, ops: 100, perItem: 100 }

const exclusive: AdapterId = "cistern-keyed"

/** The pool each row gets: shared rows may grow to one item per caller; the exclusive row has 10 items. */
const shapeOf = (id: AdapterId, quick: boolean): Shape => {
  const { callers, perItem } = sizes(quick)
  return id === exclusive ? { maxPerKey: callers / perItem } : { maxPerKey: callers, leasesPerItem: perItem }
}

/** Wraps `subject` to count, per item, the leases it holds at once. */
const counting = (subject: Subject): { readonly subject: Subject; readonly most: () => number } => {
  if (subject.style !== "effect") throw new Error("the shared scenario runs Effect pools only")
  const holding = new Map<number, number>()
  let most = 0
  return {
    subject: {
      ...subject,
      lease: (key, body) =>
        subject.lease(key, (item) => {
          const now = (holding.get(item.id) ?? 0) + 1
          holding.set(item.id, now)
          if (now > most) most = now
          return Effect.zipRight(
            body(item),
            Effect.sync(() => {
              holding.set(item.id, holding.get(item.id)! - 1)
            })
          )
        })
    },
    most: () => most
  }
}

/** The shared-lease scenario. */
export const shared: Scenario = {
  id: "shared",
  title: (quick) => {
    const { callers, ops, perItem } = sizes(quick)
    return (
      `Shared leases: ${format.integer(callers)} callers × ${ops} leases on one key, up to ${perItem} leases ` +
      `per item, a setImmediate hop inside each use`
    )
  },
  baseline: "effect-pool-shared",
  adapters: ["effect-pool-shared", "cistern-keyed-shared", "cistern-keyed"],
  metrics: [
    { id: "opsPerSec", label: "leases/s", format: format.count },
    { id: "micros", label: "µs per lease", format: format.micros },
    { id: "created", label: "items created", format: format.count },
    { id: "most", label: "most leases on one item", format: format.count },
    { id: "waitP99", label: "wait p99", format: format.millis },
    { id: "firstDone", label: "first caller done", format: format.percent }
  ],
  run: async (id, adapter, { quick, repetitions }) => {
    const recorder = new Recorder()
    const { callers, ops } = sizes(quick)
    const shape = shapeOf(id, quick)
    const plan = { callers, opsPerCaller: ops, work: "immediate", recordWaits: true } as const
    await withPool(adapter, shape, (subject) => runPlan(subject, { ...plan, opsPerCaller: Math.max(1, ops / 10) }))
    recorder.repetitions = await repeat(repetitions, () =>
      withPool(adapter, shape, async (subject, ledger) => {
        const counted = counting(subject)
        const outcome = await runPlan(counted.subject, plan)
        const [p99] = quantiles(outcome.waitsMs!, [0.99])
        recorder.record({
          opsPerSec: (callers * ops * 1000) / outcome.elapsedMs,
          micros: (outcome.elapsedMs * 1000) / (callers * ops),
          created: ledger.created,
          most: counted.most(),
          waitP99: p99,
          firstDone: (100 * Math.min(...outcome.doneAtMs)) / outcome.elapsedMs
        })
      })
    )
    if (id === exclusive)
      recorder.note(`${adapter.label}: the exclusive row, ${shape.maxPerKey} items of one lease each`)
    return recorder.measured
  }
}
