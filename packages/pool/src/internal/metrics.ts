import type * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import * as PoolMetrics from "../PoolMetrics.js"

/**
 * Label sets for one pool or one key, built once and reused: Effect caches a
 * metric's registry hook by the identity of the label array, so a stable
 * array makes `unsafeUpdate` a cheap, allocation-free call.
 *
 * @internal
 */
export class Tags {
  private readonly extended = new Map<string, ReadonlyArray<MetricLabel.MetricLabel>>()

  constructor(readonly labels: ReadonlyArray<MetricLabel.MetricLabel>) {}

  /** These labels plus `name=value`, cached. */
  with(name: string, value: string): ReadonlyArray<MetricLabel.MetricLabel> {
    const id = `${name}=${value}`
    let labels = this.extended.get(id)
    if (labels === undefined) {
      labels = [...this.labels, MetricLabel.make(name, value)]
      this.extended.set(id, labels)
    }
    return labels
  }

  /** Adds `n` to a counter (or records `n` in a histogram) under these labels. */
  update(
    metric: Metric.Metric<any, number, any>,
    n: number,
    labels: ReadonlyArray<MetricLabel.MetricLabel> = this.labels
  ) {
    metric.unsafeUpdate(n, labels)
  }
}

/**
 * Hands out label sets: the pool's own, and per key for the first
 * `perKey` keys (the rest share `key="other"`).
 *
 * @internal
 */
export class PoolTags {
  readonly pool: Tags
  private readonly other: Tags
  /** Keys with labels of their own, by description: a key that comes back keeps its series. */
  private readonly keyed = new Map<string, Tags>()

  constructor(
    name: string,
    private readonly perKey: number,
    /** The label naming a key (or, for tenant groups, `group`). */
    private readonly label = "key"
  ) {
    this.pool = new Tags([MetricLabel.make("pool", name)])
    this.other = perKey > 0 ? new Tags([...this.pool.labels, MetricLabel.make(label, "other")]) : this.pool
  }

  /** The labels shared by keys (or groups) beyond the cap. */
  get others(): Tags {
    return this.other
  }

  forKey(description: string): Tags {
    let tags = this.keyed.get(description)
    if (tags !== undefined) return tags
    if (this.keyed.size >= this.perKey) return this.other
    tags = new Tags([...this.pool.labels, MetricLabel.make(this.label, description)])
    this.keyed.set(description, tags)
    return tags
  }

  /** Whether `tags` belong to one key alone (so its gauges are sampled). */
  isOwn(tags: Tags): boolean {
    return tags !== this.other && tags !== this.pool
  }
}

/** @internal */
export interface Occupancy {
  readonly size: number
  readonly idle: number
  readonly inUse: number
  readonly creating: number
  readonly waiting: number
}

/** Sets a tenant group's gauges under `tags`. */
export const sampleGroup = (tags: Tags, size: number, idle: number): void => {
  PoolMetrics.groupSize.unsafeUpdate(size, tags.labels)
  PoolMetrics.groupIdle.unsafeUpdate(idle, tags.labels)
}

/** Sets the occupancy gauges under `tags`. */
export const sample = (tags: Tags, o: Occupancy, keys?: number): void => {
  PoolMetrics.size.unsafeUpdate(o.size, tags.labels)
  PoolMetrics.idle.unsafeUpdate(o.idle, tags.labels)
  PoolMetrics.inUse.unsafeUpdate(o.inUse, tags.labels)
  PoolMetrics.creating.unsafeUpdate(o.creating, tags.labels)
  PoolMetrics.waiting.unsafeUpdate(o.waiting, tags.labels)
  if (keys !== undefined) PoolMetrics.keys.unsafeUpdate(keys, tags.labels)
}
