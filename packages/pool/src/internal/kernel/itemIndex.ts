/**
 * The live items of a pool, found by the value they hold. Values need not be
 * distinct (permits, numbers, interned objects): each item is tracked by its
 * own identity, and a value maps to the one item holding it or, rarely, to a
 * list of them.
 *
 * @internal
 */
export class ItemIndex<T extends { readonly value: V }, V> {
  private readonly byValue = new Map<V, T | Array<T>>()
  size = 0

  add(item: T): void {
    const entry = this.byValue.get(item.value)
    if (entry === undefined) this.byValue.set(item.value, item)
    else if (Array.isArray(entry)) entry.push(item)
    else this.byValue.set(item.value, [entry, item])
    this.size++
  }

  delete(item: T): void {
    const entry = this.byValue.get(item.value)
    if (entry === item) {
      this.byValue.delete(item.value)
    } else if (Array.isArray(entry)) {
      const at = entry.indexOf(item)
      if (at < 0) return
      entry.splice(at, 1)
      if (entry.length === 1) this.byValue.set(item.value, entry[0])
    } else {
      return
    }
    this.size--
  }

  /** Every item holding `value`, in the order they were added. */
  holding(value: V): ReadonlyArray<T> {
    const entry = this.byValue.get(value)
    return entry === undefined ? [] : Array.isArray(entry) ? entry : [entry]
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (const entry of this.byValue.values()) {
      if (Array.isArray(entry)) yield* entry
      else yield entry
    }
  }
}
