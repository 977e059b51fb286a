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

/**
 * An intrusive doubly-linked list whose members are their own nodes: a
 * subclass names the two fields of a member that link it here, so one
 * member can be in several lists with no node object per membership (an
 * idle item is in its key's list and the pool's LRU: two `Link`s would cost
 * it ~100 B). It keeps no record of membership: only members are removed.
 *
 * @internal
 */
export abstract class Chain<T> {
  head: T | undefined = undefined
  tail: T | undefined = undefined
  size = 0

  abstract prev(member: T): T | undefined
  abstract next(member: T): T | undefined
  protected abstract setPrev(member: T, prev: T | undefined): void
  protected abstract setNext(member: T, next: T | undefined): void

  /** Appends at the tail. */
  push(member: T): void {
    const tail = this.tail
    this.setPrev(member, tail)
    this.setNext(member, undefined)
    if (tail === undefined) this.head = member
    else this.setNext(tail, member)
    this.tail = member
    this.size++
  }

  /** Removes a member, wherever it is (it must be one: nothing tells it from a stranger). */
  remove(member: T): void {
    const prev = this.prev(member)
    const next = this.next(member)
    if (prev === undefined) this.head = next
    else this.setNext(prev, next)
    if (next === undefined) this.tail = prev
    else this.setPrev(next, prev)
    this.setPrev(member, undefined)
    this.setNext(member, undefined)
    this.size--
  }

  *[Symbol.iterator](): IterableIterator<T> {
    let member = this.head
    while (member !== undefined) {
      const next = this.next(member)
      yield member
      member = next
    }
  }
}
