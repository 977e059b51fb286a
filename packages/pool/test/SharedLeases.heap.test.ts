/**
 * The plain, effect-free rules of shared leases (`internal/kernel/leases.ts`),
 * driven directly: thousands of random operations a second, no fiber.
 */
import { assert, describe, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { afterLease, LeaseHeap, needsItem, type Shareable, withRoom } from "../src/internal/kernel/leases.js"

interface Entry extends Shareable {
  readonly id: number
}

type Op =
  | { readonly _tag: "Push" }
  | { readonly _tag: "Remove"; readonly pick: number }
  | { readonly _tag: "Lend"; readonly pick: number }
  | { readonly _tag: "End"; readonly pick: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constant({ _tag: "Push" } as const),
  fc.record({ _tag: fc.constant("Remove" as const), pick: fc.nat() }),
  fc.record({ _tag: fc.constant("Lend" as const), pick: fc.nat() }),
  fc.record({ _tag: fc.constant("End" as const), pick: fc.nat() })
)

describe("shared lease rules", () => {
  it("the heap's top is always an open item with the fewest leases, and withRoom respects the limit", () =>
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.integer({ min: 1, max: 5 }), (ops, max) => {
        const heap = new LeaseHeap<Entry>()
        const open: Array<Entry> = []
        let next = 0
        for (const o of ops) {
          switch (o._tag) {
            case "Push": {
              const entry: Entry = { id: next++, leases: 1, heapIndex: -1 }
              heap.push(entry)
              open.push(entry)
              break
            }
            case "Remove": {
              if (open.length === 0) break
              const [entry] = open.splice(o.pick % open.length, 1)
              heap.remove(entry)
              assert.isFalse(heap.has(entry))
              heap.remove(entry) // twice: a no-op
              break
            }
            case "Lend": {
              // What `lendShared` does: only onto an item with room.
              const entry = withRoom(heap, max)
              if (entry === undefined) {
                assert.isTrue(open.every((e) => e.leases >= max))
                break
              }
              entry.leases++
              heap.update(entry)
              break
            }
            case "End": {
              const busy = open.filter((e) => e.leases > 0)
              if (busy.length === 0) break
              const entry = busy[o.pick % busy.length]
              entry.leases--
              heap.update(entry)
              break
            }
          }
          assert.strictEqual(heap.size, open.length)
          for (const e of open) {
            assert.isTrue(heap.has(e))
            assert.isAtMost(e.leases, Math.max(1, max))
          }
          const fewest = Math.min(...open.map((e) => e.leases))
          assert.strictEqual(heap.top?.leases, open.length === 0 ? undefined : fewest)
          assert.sameMembers(
            [...heap].map((e) => e.id),
            open.map((e) => e.id)
          )
        }
      }),
      { numRuns: 500 }
    ))

  it("a key needs another item only when its waiters outnumber what creations in flight will serve", () => {
    assert.isTrue(needsItem(1, 0, 1))
    assert.isFalse(needsItem(1, 1, 1))
    assert.isFalse(needsItem(100, 1, 100))
    assert.isTrue(needsItem(101, 1, 100))
    assert.isTrue(needsItem(1, 0, Number.POSITIVE_INFINITY))
    assert.isFalse(needsItem(1_000_000, 1, Number.POSITIVE_INFINITY))
  })

  it("an item stays shared while leases remain; after the last it goes back if fit, else it is retired", () => {
    assert.strictEqual(afterLease(2, true), "shared")
    assert.strictEqual(afterLease(2, false), "shared")
    assert.strictEqual(afterLease(0, true), "returned")
    assert.strictEqual(afterLease(0, false), "retired")
  })
})
