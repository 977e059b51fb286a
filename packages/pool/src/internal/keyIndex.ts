import * as Equal from "effect/Equal"
import * as Hash from "effect/Hash"

/**
 * Finds per-key state by a key that is either a primitive / reference (a
 * native `Map`, the common and fastest case) or a value implementing `Equal`
 * (hash buckets, so structurally equal keys share one entry).
 *
 * @internal
 */
export class KeyIndex<K, V> {
  private readonly byReference = new Map<K, V>()
  private readonly byHash = new Map<number, Array<readonly [K, V]>>()
  private hashedSize = 0

  get size(): number {
    return this.byReference.size + this.hashedSize
  }

  get(key: K): V | undefined {
    if (!Equal.isEqual(key)) return this.byReference.get(key)
    const bucket = this.byHash.get(Hash.hash(key))
    if (bucket === undefined) return undefined
    for (const [k, v] of bucket) if (Equal.equals(k, key)) return v
    return undefined
  }

  set(key: K, value: V): void {
    if (!Equal.isEqual(key)) {
      this.byReference.set(key, value)
      return
    }
    const hash = Hash.hash(key)
    const bucket = this.byHash.get(hash)
    if (bucket === undefined) {
      this.byHash.set(hash, [[key, value]])
    } else {
      const at = bucket.findIndex(([k]) => Equal.equals(k, key))
      if (at >= 0) {
        bucket[at] = [key, value]
        return
      }
      bucket.push([key, value])
    }
    this.hashedSize++
  }

  delete(key: K): void {
    if (!Equal.isEqual(key)) {
      this.byReference.delete(key)
      return
    }
    const hash = Hash.hash(key)
    const bucket = this.byHash.get(hash)
    if (bucket === undefined) return
    const at = bucket.findIndex(([k]) => Equal.equals(k, key))
    if (at < 0) return
    bucket.splice(at, 1)
    if (bucket.length === 0) this.byHash.delete(hash)
    this.hashedSize--
  }

  *values(): IterableIterator<V> {
    yield* this.byReference.values()
    for (const bucket of this.byHash.values()) for (const [, v] of bucket) yield v
  }
}
