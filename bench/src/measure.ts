/** Small measuring tools: heap after a full collection, percentiles, a seeded random source. */

const collect: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    throw new Error("run with node --expose-gc: heap figures need a full collection")
  })

/** Heap in use after full collections, in bytes. */
export const settledHeap = (): number => {
  for (let i = 0; i < 2; i++) collect()
  return process.memoryUsage().heapUsed
}

/** The `qs`-quantiles (each 0..1, nearest rank) of `values`, from one sorted copy. */
export const quantiles = (values: Float64Array, qs: ReadonlyArray<number>): Array<number> => {
  const sorted = Float64Array.from(values).sort()
  return qs.map((q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!)
}

/** Median, min and max of repeated measurements. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
}

/** Summarises repetitions; `undefined` when there are none. */
export const summarize = (values: ReadonlyArray<number>): Summary | undefined => {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]! }
}

/** A seeded PRNG (mulberry32): every library gets the same "random" keys. */
export const random = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Waits `ms` of real time. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
