/**
 * Eviction on demand: idle items given back because a limit shared with
 * others asks for them (a creation gate whose budget is full, an instance
 * above its fair share of a cluster budget), and every item retired at once
 * when the permits behind them are gone.
 *
 * @internal
 */
import { Checks } from "./checks.js"
import type { Item, KeySlot } from "./model.js"

/** Eviction: idle items and whole pools given back on demand. */
export abstract class Eviction<K, A> extends Checks<K, A> {
  /**
   * Destroys the least recently used idle item of a key other than `slot`'s,
   * of its group first (at a tenant's limit, only the tenant's own item makes
   * room), for a gate whose limit is full. Whether there was one.
   */
  evictIdleFor(slot: KeySlot<K, A>): boolean {
    const victim = firstOfOtherKey(slot.group?.idle, slot) ?? firstOfOtherKey(this.lru, slot)
    if (victim === undefined) return false
    this.destroy(victim, "evicted")
    return true
  }

  /** Destroys up to `count` idle items, least recently used first; how many. */
  evictIdle(count: number): number {
    let evicted = 0
    let victim: Item<K, A> | undefined
    while (evicted < count && (victim = this.lru.head) !== undefined) {
      this.destroy(victim, "evicted")
      evicted++
    }
    return evicted
  }

  /**
   * Retires every live item: idle ones are destroyed now, leased ones when
   * their lease ends (shared ones take no new lease). How many.
   */
  retireAll(): number {
    const live = Array.from(this.items)
    for (const item of live) {
      if (item.state === "idle") {
        this.destroy(item, "invalidated")
      } else {
        item.invalid ??= "invalidated"
        if (this.shares) this.closeShare(item)
      }
    }
    return live.length
  }
}

/** The first item of `list` (an idle list, least recently used first) of a key other than `slot`'s. */
const firstOfOtherKey = <K, A>(list: Iterable<Item<K, A>> | undefined, slot: KeySlot<K, A>): Item<K, A> | undefined => {
  if (list === undefined) return undefined
  for (const item of list) if (item.slot !== slot) return item
  return undefined
}
