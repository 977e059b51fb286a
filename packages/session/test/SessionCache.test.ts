import { assert, describe, it } from "@effect/vitest"
import * as fc from "effect/FastCheck"
import * as SessionCache from "../src/SessionCache.js"

/** The obvious, slow model: an array in LRU order (least recent first). */
interface ModelEntry {
  readonly id: string
  readonly user: string
  readonly expiresAt: number
}

type Op =
  | { readonly _tag: "set"; readonly id: string; readonly user: string; readonly ttl: number }
  | { readonly _tag: "get"; readonly id: string }
  | { readonly _tag: "delete"; readonly id: string }
  | { readonly _tag: "advance"; readonly by: number }
  | { readonly _tag: "sweep" }
  | { readonly _tag: "find"; readonly user: string }

const id = fc.constantFrom("a", "b", "c", "d", "e", "f")
const user = fc.constantFrom("u1", "u2", "u3")
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ _tag: fc.constant("set" as const), id, user, ttl: fc.integer({ min: 1, max: 50 }) }),
  fc.record({ _tag: fc.constant("get" as const), id }),
  fc.record({ _tag: fc.constant("delete" as const), id }),
  fc.record({ _tag: fc.constant("advance" as const), by: fc.integer({ min: 0, max: 30 }) }),
  fc.record({ _tag: fc.constant("sweep" as const) }),
  fc.record({ _tag: fc.constant("find" as const), user })
)

describe("SessionCache", () => {
  it.prop(
    "behaves like an LRU list with expiry and an index, never above capacity",
    [fc.integer({ min: 1, max: 4 }), fc.array(op, { maxLength: 80 })],
    ([capacity, ops]) => {
      const cache = SessionCache.make<{ readonly user: string }>({ capacity, indexes: { user: (v) => v.user } })
      let model: Array<ModelEntry> = []
      let now = 0
      const live = (e: ModelEntry) => e.expiresAt > now
      for (const o of ops) {
        switch (o._tag) {
          case "set": {
            cache.set(o.id, { user: o.user }, now + o.ttl, now + o.ttl)
            model = model.filter((e) => e.id !== o.id)
            model.push({ id: o.id, user: o.user, expiresAt: now + o.ttl })
            // Eviction takes the least recently used, expired or not.
            while (model.length > capacity) model.shift()
            break
          }
          case "get": {
            const got = cache.get(o.id, now)
            const m = model.find((e) => e.id === o.id)
            if (m !== undefined && live(m)) {
              assert.strictEqual(got?.value.user, m.user)
              model = model.filter((e) => e !== m)
              model.push(m)
            } else {
              assert.isUndefined(got)
              model = model.filter((e) => e.id !== o.id)
            }
            break
          }
          case "delete": {
            cache.delete(o.id)
            model = model.filter((e) => e.id !== o.id)
            break
          }
          case "advance": {
            now += o.by
            break
          }
          case "sweep": {
            const removed = cache.sweep(now)
            assert.strictEqual(removed, model.filter((e) => !live(e)).length)
            model = model.filter(live)
            break
          }
          case "find": {
            const found = cache.findBy("user", o.user, now).map((e) => e.id)
            const expected = model.filter((e) => live(e) && e.user === o.user)
            assert.deepStrictEqual([...found].sort(), expected.map((e) => e.id).sort())
            // Expired entries of that user go; found ones become most recently used, in found order.
            model = model.filter((e) => !(e.user === o.user && !live(e)))
            for (const foundId of found) {
              const m = model.find((e) => e.id === foundId)!
              model = model.filter((e) => e !== m)
              model.push(m)
            }
            break
          }
        }
        assert.isAtMost(cache.size, capacity)
        assert.strictEqual(cache.size, model.length)
      }
    }
  )

  it("evicts the least recently used entry, and a read makes an entry recent", () => {
    let evicted: Array<string> = []
    const cache = SessionCache.make<number>({ capacity: 2, onRemove: (e, why) => evicted.push(`${e.id}:${why}`) })
    cache.set("a", 1, 100, 100)
    cache.set("b", 2, 100, 100)
    cache.get("a", 0)
    cache.set("c", 3, 100, 100)
    assert.deepStrictEqual(evicted, ["b:evicted"])
    assert.strictEqual(cache.evictions, 1)
    evicted = []
    assert.strictEqual(cache.sweep(100), 2)
    assert.deepStrictEqual(evicted.sort(), ["a:expired", "c:expired"])
  })

  it("a capacity that is not a positive integer is a RangeError", () => {
    assert.throws(() => SessionCache.make({ capacity: 0 }), RangeError)
    assert.throws(() => SessionCache.make({ capacity: 1.5 }), RangeError)
  })
})
