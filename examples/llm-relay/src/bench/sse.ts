/**
 * An upstream's SSE body as the bare Effect routes of the benchmarks answer
 * with it: as an Effect `Stream`, or handed to the server to pipe.
 */
import type { Readable } from "node:stream"
import { HttpServerResponse } from "@effect/platform"
import { NodeStream } from "@effect/platform-node"

const contentType = "text/event-stream"

/** The body as an Effect `Stream` of bytes; a read error fails it as it is. */
export const bodyStream = (body: Readable) =>
  NodeStream.fromReadable(
    () => body,
    (e) => e
  )

/** The body as a streamed response, or (`piped`) as a raw Node stream the server pipes. */
export const sseResponse = (body: Readable, piped = false): HttpServerResponse.HttpServerResponse =>
  piped ? HttpServerResponse.raw(body, { contentType }) : HttpServerResponse.stream(bodyStream(body), { contentType })
