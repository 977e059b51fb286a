/**
 * A binary min-heap of expiry times. Entries are never updated in place: a
 * session whose expiry moves pushes a new node, and the old one is skipped
 * when it surfaces (its owner no longer matches). That keeps every push
 * O(log n) and sweeps proportional to what actually expired.
 *
 * @internal
 */
export interface Node<T> {
  readonly at: number
  readonly item: T
}

/** @internal */
export class ExpiryHeap<T> {
  private nodes: Array<Node<T>> = []

  get length(): number {
    return this.nodes.length
  }

  push(at: number, item: T): void {
    const nodes = this.nodes
    nodes.push({ at, item })
    let i = nodes.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (nodes[parent]!.at <= nodes[i]!.at) break
      const swap = nodes[parent]!
      nodes[parent] = nodes[i]!
      nodes[i] = swap
      i = parent
    }
  }

  /** Removes and returns the earliest node due at or before `now`. */
  popDue(now: number): Node<T> | undefined {
    const nodes = this.nodes
    const top = nodes[0]
    if (top === undefined || top.at > now) return undefined
    const last = nodes.pop()!
    if (nodes.length > 0) {
      nodes[0] = last
      this.siftDown(0)
    }
    return top
  }

  /** Replaces the contents (used to drop stale nodes once they outnumber live ones). */
  rebuild(nodes: Array<Node<T>>): void {
    this.nodes = nodes
    for (let i = (nodes.length >> 1) - 1; i >= 0; i--) this.siftDown(i)
  }

  private siftDown(start: number): void {
    const nodes = this.nodes
    const n = nodes.length
    let i = start
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let min = i
      if (l < n && nodes[l]!.at < nodes[min]!.at) min = l
      if (r < n && nodes[r]!.at < nodes[min]!.at) min = r
      if (min === i) return
      const swap = nodes[min]!
      nodes[min] = nodes[i]!
      nodes[i] = swap
      i = min
    }
  }
}
