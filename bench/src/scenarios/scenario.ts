/** What a scenario is, and the helpers its repetitions share. */
import type { AdapterId } from "../adapters/index.js"
import { settledHeap } from "../measure.js"
import { Ledger } from "../resource.js"
import type { Adapter, Shape, Subject } from "../subject.js"
import { runPlan } from "../workload.js"

/** How a figure is named and printed. */
export interface Metric {
  readonly id: string
  readonly label: string
  readonly format: (value: number) => string
}

/** What one child process reports: each metric's value per timed repetition, and remarks. */
export interface Measured {
  readonly values: Record<string, Array<number>>
  readonly notes: Array<string>
  readonly repetitions: number
}

/** Sizes and repetitions: the full run, or a smoke run that only checks everything runs. */
export interface RunOptions {
  readonly quick: boolean
  readonly repetitions: number
}

/** One benchmark scenario, run once per adapter, each in a fresh process. */
export interface Scenario {
  readonly id: string
  /** A heading and a one-line description of the workload at the chosen size. */
  readonly title: (quick: boolean) => string
  /** Ratios are to this adapter's medians, measured in the same run. */
  readonly baseline: AdapterId
  /** Run in this order; the baseline first. */
  readonly adapters: ReadonlyArray<AdapterId>
  readonly metrics: ReadonlyArray<Metric>
  /** Runs in the child: warm-up, then timed repetitions (see {@link repeat}). */
  readonly run: (id: AdapterId, adapter: Adapter, options: RunOptions) => Promise<Measured>
  /** Markdown lines printed under the table: figures derived from several rows of this run. */
  readonly footer?: (results: ReadonlyMap<string, Measured | Error>, options: RunOptions) => Array<string>
}

/** Makes a fresh pool with its own ledger, runs `f`, and closes the pool. */
export const withPool = async <A>(
  adapter: Adapter,
  shape: Shape,
  f: (subject: Subject, ledger: Ledger) => Promise<A>
): Promise<A> => {
  const ledger = new Ledger()
  const subject = await adapter.make(shape, ledger)
  try {
    return await f(subject, ledger)
  } finally {
    await subject.close()
  }
}

/** A pair's timed repetitions stop early once they have used this much time… */
export const repetitionBudgetMs = 45_000

/** …but never before this many. */
export const minimumRepetitions = 3

/**
 * Runs `repetition` up to `wanted` times, stopping after
 * {@link minimumRepetitions} when one more would overrun
 * {@link repetitionBudgetMs}: only the slowest pairs (Effect's pools under
 * load) are cut, which keeps a full run within its time. Returns how many ran.
 */
export const repeat = async (wanted: number, repetition: (index: number) => Promise<void>): Promise<number> => {
  const started = performance.now()
  let done = 0
  while (done < wanted) {
    await repetition(done)
    done++
    const elapsed = performance.now() - started
    if (done >= minimumRepetitions && elapsed + elapsed / done > repetitionBudgetMs) break
  }
  return done
}

/** Collects per-repetition values by metric id. */
export class Recorder {
  readonly values: Record<string, Array<number>> = {}
  readonly notes: Array<string> = []
  repetitions = 0

  record(metrics: Record<string, number | undefined>): void {
    for (const [id, value] of Object.entries(metrics)) {
      if (value === undefined || Number.isNaN(value)) continue
      ;(this.values[id] ??= []).push(value)
    }
  }

  note(text: string): void {
    if (!this.notes.includes(text)) this.notes.push(text)
  }

  get measured(): Measured {
    return { values: this.values, notes: this.notes, repetitions: this.repetitions }
  }
}

/**
 * The heap baseline for a fresh pool: leases one `key` the measured run never
 * uses, then reads the settled heap. Without that first lease V8 can keep the
 * previous repetition's pool reachable (through its caches of the last closures
 * called) until the new pool's code has run, which skews the difference.
 */
export const primedHeap = async (subject: Subject, key: number): Promise<number> => {
  await runPlan(subject, { callers: 1, opsPerCaller: 1, keys: Uint32Array.of(key), work: "noop", recordWaits: false })
  return settledHeap()
}
