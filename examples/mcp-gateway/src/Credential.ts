/**
 * What the gateway and the servers may say about a credential: a short
 * SHA-256 fingerprint. The credential itself is never logged, returned or
 * compared in the clear outside the connection that sends it.
 */
import { createHash } from "node:crypto"

/** The first 12 hex digits of the SHA-256 of `credential`. */
export const fingerprint = (credential: string): string =>
  createHash("sha256").update(credential).digest("hex").slice(0, 12)
