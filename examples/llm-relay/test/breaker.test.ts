import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, TestClock } from "effect"
import * as Breaker from "../src/Breaker.js"

const options = { failures: 3, window: "60 seconds", reset: "60 seconds" } as const

const circuitOf = (breaker: Breaker.AccountBreaker, account: string) =>
  Effect.map(breaker.circuits, (circuits) => circuits.get(account)?.circuit)

describe("the relay's breaker: failures within a time window", () => {
  it.effect("three failures within 60 s open the circuit, successes between them or not", () =>
    Effect.gen(function* () {
      const breaker = Breaker.make(["a", "b"], options)
      for (let i = 0; i < 3; i++) {
        yield* breaker.admit("a")
        yield* breaker.failure("a")
        if (i === 2) break
        // Requests between the failures succeed: a breaker counting failures in a row would never open.
        yield* breaker.admit("a")
        yield* breaker.success("a")
        yield* TestClock.adjust("20 seconds")
      }
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(yield* circuitOf(breaker, "a"), "open")
      const refused = yield* Effect.either(breaker.admit("a"))
      assert.isTrue(Either.isLeft(refused))
      if (Either.isLeft(refused)) {
        assert.strictEqual(refused.left._tag, "AccountOpen")
        // opened at 40 s, 60 s ago is 100 s: now is 60 s
        assert.strictEqual(refused.left.retryAfterMillis, 40_000)
      }
      assert.strictEqual(yield* circuitOf(breaker, "b"), "closed", "each account has its own circuit")
    })
  )

  it.effect("failures spread over more than 60 s do not open it; the window slides", () =>
    Effect.gen(function* () {
      const breaker = Breaker.make(["a"], options)
      yield* breaker.failure("a") // 0 s
      yield* TestClock.adjust("30 seconds")
      yield* breaker.failure("a") // 30 s
      yield* TestClock.adjust("31 seconds")
      yield* breaker.failure("a") // 61 s: the one at 0 s has left the window
      assert.strictEqual(yield* circuitOf(breaker, "a"), "closed")
      yield* breaker.admit("a")
      yield* TestClock.adjust("1 second")
      yield* breaker.failure("a") // 62 s: 30, 61, 62 are within 60 s
      assert.strictEqual(yield* circuitOf(breaker, "a"), "open")
    })
  )

  it.effect("past its reset one probe goes: its failure opens the circuit again, its success closes it", () =>
    Effect.gen(function* () {
      const breaker = Breaker.make(["a"], options)
      for (let i = 0; i < 3; i++) yield* breaker.failure("a")
      yield* TestClock.adjust("59 seconds")
      assert.isTrue(Either.isLeft(yield* Effect.either(breaker.admit("a"))), "still open at 59 s")
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* circuitOf(breaker, "a"), "half-open")
      yield* breaker.admit("a") // the probe
      assert.isTrue(Either.isLeft(yield* Effect.either(breaker.admit("a"))), "one probe at a time")
      yield* breaker.failure("a")
      assert.strictEqual(yield* circuitOf(breaker, "a"), "open")
      yield* TestClock.adjust("30 seconds")
      assert.isTrue(Either.isLeft(yield* Effect.either(breaker.admit("a"))), "open for another reset")
      yield* TestClock.adjust("30 seconds")
      yield* breaker.admit("a")
      // A probe that ended with neither outcome (its client went away) lets another go.
      yield* breaker.settle("a")
      yield* breaker.admit("a")
      yield* breaker.success("a")
      assert.strictEqual(yield* circuitOf(breaker, "a"), "closed")
      // Closed with an empty window: two failures are not enough.
      yield* breaker.failure("a")
      yield* breaker.failure("a")
      assert.strictEqual(yield* circuitOf(breaker, "a"), "closed")
    })
  )
})
