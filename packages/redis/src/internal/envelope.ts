/**
 * How a session is stored in Redis: one JSON string holding the encoded value
 * (`v`), its expiry in epoch millis of the store's `Clock` (`e`), and its
 * index values (`i`), which the write script reads to remove the old index
 * entries when a session is rewritten or deleted.
 *
 * @internal
 */
import * as Either from "effect/Either"

/** @internal */
export interface Stored<A> {
  readonly value: A
  readonly expiresAt: number
}

/**
 * The index name / value pairs the write script takes, for the index values that are defined.
 *
 * @internal
 */
export const indexArgs = (names: ReadonlyArray<string>, values: ReadonlyArray<string | undefined>): Array<string> => {
  const args: Array<string> = []
  for (let i = 0; i < names.length; i++) {
    const v = values[i]
    if (v !== undefined) args.push(names[i]!, v)
  }
  return args
}

/** @internal */
export const write = (encoded: unknown, expiresAt: number, pairs: ReadonlyArray<string>): string => {
  const i: Record<string, string> = {}
  for (let k = 0; k < pairs.length; k += 2) i[pairs[k]!] = pairs[k + 1]!
  return JSON.stringify({ v: encoded, e: expiresAt, i })
}

/**
 * Reads a stored string back; the failure is a sentence saying what is wrong with it.
 *
 * @internal
 */
export const read = <A>(
  decode: (u: unknown) => Either.Either<A, { readonly message: string }>,
  raw: string
): Either.Either<Stored<A>, string> => {
  let envelope: { v?: unknown; e?: unknown }
  try {
    envelope = JSON.parse(raw)
  } catch (cause) {
    return Either.left(`not JSON: ${(cause as Error).message}`)
  }
  if (typeof envelope !== "object" || envelope === null || typeof envelope.e !== "number") {
    return Either.left("not a session envelope")
  }
  const decoded = decode(envelope.v)
  if (Either.isLeft(decoded)) return Either.left(decoded.left.message)
  return Either.right({ value: decoded.right, expiresAt: envelope.e })
}
