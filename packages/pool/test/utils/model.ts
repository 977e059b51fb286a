/**
 * What the model-based tests share: commands that pick a caller or a pending
 * creation by a number, and time passing.
 */
import { FastCheck as fc } from "effect"

/** The `n`-th element of `xs`, wrapping around; `undefined` when there is none to pick. */
export const pick = <A>(xs: ReadonlyArray<A>, n: number): A | undefined =>
  xs.length === 0 ? undefined : xs[n % xs.length]

/** A command acting on one of the live callers, chosen later with {@link pick}. */
export const picking = <Tag extends string>(tag: Tag) => fc.record({ _tag: fc.constant(tag), pick: fc.nat() })

/** A pending creation succeeding or failing. */
export const completing = fc.record({ _tag: fc.constant("Complete" as const), pick: fc.nat(), ok: fc.boolean() })

/** The clock moving 1–40 seconds (idle expiry, health checks and backoffs come due). */
export const advancing = fc.record({ _tag: fc.constant("Advance" as const), seconds: fc.integer({ min: 1, max: 40 }) })
