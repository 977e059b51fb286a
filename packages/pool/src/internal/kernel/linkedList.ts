/**
 * An intrusive doubly-linked list: every member owns its `Link`, so push,
 * shift, pop and removal from the middle are O(1) and allocate nothing.
 *
 * @internal
 */
export class Link<T> {
  prev: Link<T> | undefined = undefined
  next: Link<T> | undefined = undefined
  list: LinkedList<T> | undefined = undefined
  constructor(readonly value: T) {}
}

/** @internal */
export class LinkedList<T> {
  head: Link<T> | undefined = undefined
  tail: Link<T> | undefined = undefined
  size = 0

  /** Appends at the tail. */
  push(link: Link<T>): void {
    link.list = this
    link.prev = this.tail
    link.next = undefined
    if (this.tail === undefined) this.head = link
    else this.tail.next = link
    this.tail = link
    this.size++
  }

  /** Removes `link` wherever it is; a no-op when it is not in this list. */
  remove(link: Link<T>): void {
    if (link.list !== this) return
    if (link.prev === undefined) this.head = link.next
    else link.prev.next = link.next
    if (link.next === undefined) this.tail = link.prev
    else link.next.prev = link.prev
    link.prev = link.next = link.list = undefined
    this.size--
  }

  /** Removes and returns the most recently pushed member. */
  pop(): T | undefined {
    const link = this.tail
    if (link === undefined) return undefined
    this.remove(link)
    return link.value
  }

  /** Removes and returns the oldest member. */
  shift(): T | undefined {
    const link = this.head
    if (link === undefined) return undefined
    this.remove(link)
    return link.value
  }

  *[Symbol.iterator](): IterableIterator<T> {
    let link = this.head
    while (link !== undefined) {
      const next = link.next
      yield link.value
      link = next
    }
  }
}
