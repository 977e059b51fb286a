import { assert, describe, it } from "@effect/vitest"
import { HealthCheck } from "../src/index.js"

/** What undici's `fetch` rejects with when the socket dies: a TypeError whose `cause` carries the code. */
const fetchFailed = (code: string) =>
  Object.assign(new TypeError("fetch failed"), { cause: Object.assign(new Error("other side closed"), { code }) })

describe("HealthCheck.isConnectionError", () => {
  it("recognises undici's socket errors, as fetch wraps them (a reset mid-body was taken for a caller fault)", () => {
    for (const code of [
      "UND_ERR_SOCKET",
      "UND_ERR_CONNECT_TIMEOUT",
      "UND_ERR_CLOSED",
      "UND_ERR_HEADERS_TIMEOUT",
      "UND_ERR_BODY_TIMEOUT"
    ]) {
      assert.isTrue(HealthCheck.isConnectionError(fetchFailed(code)), code)
      assert.isTrue(HealthCheck.isConnectionError({ code }), `${code} unwrapped`)
    }
    assert.isFalse(HealthCheck.isConnectionError(fetchFailed("UND_ERR_INVALID_ARG")))
  })
})
