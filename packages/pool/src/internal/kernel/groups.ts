import { LinkedList } from "./linkedList.js"

/**
 * A tenant's share of the pool: the keys that `group(key)` maps to one id
 * (a user across all of their upstreams) count against `maxPerGroup`
 * together. Plain counters and one list, so checking the limit on admission
 * is O(1); only a pool given `group` makes any.
 *
 * @internal
 */
export class Group<I> {
  /** Items of the group's keys, counting those being created. */
  size = 0
  /** Live keys in the group: the group is forgotten with its last key. */
  keys = 0
  /** Idle items of the group's keys, least recently released first: the first to evict at the limit. */
  readonly idle = new LinkedList<I>()

  constructor(
    readonly id: string,
    readonly max: number
  ) {}

  get full(): boolean {
    return this.size >= this.max
  }
}

/**
 * The groups of a pool, made with their first key and dropped with their
 * last, so they are bounded by `maxKeys` like keys are.
 *
 * @internal
 */
export class Groups<I> {
  readonly byId = new Map<string, Group<I>>()

  constructor(private readonly maxOf: (group: string) => number) {}

  /** The group of a new key (made on first use; its limit read then). */
  join(id: string): Group<I> {
    let group = this.byId.get(id)
    if (group === undefined) {
      group = new Group<I>(id, this.maxOf(id))
      this.byId.set(id, group)
    }
    group.keys++
    return group
  }

  /** A key of `group` was dropped. */
  leave(group: Group<I>): void {
    if (--group.keys === 0 && this.byId.get(group.id) === group) this.byId.delete(group.id)
  }
}
