import { HttpApiDecodeError } from "@effect/platform/HttpApiError"
import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { maxBodyBytes, PayloadTooLarge } from "../AdminApi.js"

/** @internal */
export const maxDepth = 32

const payloadTooLarge = new PayloadTooLarge({
  limit: maxBodyBytes,
  message: `an admin request body has at most ${maxBodyBytes} bytes`
})

const decodeError = (message: string) => new HttpApiDecodeError({ issues: [], message })

/** @internal */
export const hasBody = (request: HttpServerRequest.HttpServerRequest): boolean => {
  const length = request.headers["content-length"]
  return (length !== undefined && length !== "0") || request.headers["transfer-encoding"] !== undefined
}

const hangUp = (_request: HttpServerRequest.HttpServerRequest, response: HttpServerResponse.HttpServerResponse) =>
  Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close"))

/**
 * Answers with `Connection: close` when the request announced a body: the
 * server then stops reading it instead of draining what is left (a client
 * that announced 5 MB is not waited for).
 *
 * @internal
 */
export const closeIfBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<void> =>
  hasBody(request) ? HttpApp.appendPreResponseHandler(hangUp) : Effect.void

/**
 * The deepest nesting of arrays and objects in a JSON text, outside strings.
 * Schema's messages and the logs render a decoded value recursively, so a
 * body of thousands of nested brackets must be refused before it is parsed.
 */
const depthOf = (text: string): number => {
  let depth = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92 /* \ */) i++
      else if (c === 34 /* " */) inString = false
    } else if (c === 34) inString = true
    else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > deepest) deepest = depth
    } else if (c === 93 /* ] */ || c === 125 /* } */) depth--
  }
  return deepest
}

const isTooLarge = (error: unknown): boolean =>
  typeof error === "object" &&
  error !== null &&
  "cause" in error &&
  error.cause instanceof Error &&
  error.cause.message === "maxBytes exceeded"

/** A Node `IncomingMessage`, as far as reading it goes. */
interface NodeReadable {
  readonly on: (event: string, listener: (...args: Array<any>) => void) => unknown
  readonly removeListener: (event: string, listener: (...args: Array<any>) => void) => unknown
  readonly pause: () => unknown
}

const isNodeReadable = (source: unknown): source is NodeReadable =>
  typeof source === "object" &&
  source !== null &&
  typeof (source as NodeReadable).on === "function" &&
  typeof (source as NodeReadable).removeListener === "function" &&
  typeof (source as NodeReadable).pause === "function"

type ReadFailure = "too-large" | "unreadable"

/**
 * Reads a Node request up to `limit` bytes. Past the limit it stops reading
 * and leaves the socket alone, so the 413 can still be written (the
 * platform's reader destroys the request, and with it the socket, first).
 */
const readNode = (source: NodeReadable, limit: number): Effect.Effect<string, ReadFailure> =>
  Effect.async<string, ReadFailure>((resume) => {
    const chunks: Array<Uint8Array> = []
    let bytes = 0
    const stop = () => {
      source.removeListener("data", onData)
      source.removeListener("end", onEnd)
      source.removeListener("error", onError)
    }
    function onData(chunk: Uint8Array) {
      bytes += chunk.byteLength
      if (bytes > limit) {
        stop()
        source.pause()
        resume(Effect.fail("too-large"))
      } else chunks.push(chunk)
    }
    function onEnd() {
      stop()
      const all = new Uint8Array(bytes)
      let at = 0
      for (const chunk of chunks) {
        all.set(chunk, at)
        at += chunk.byteLength
      }
      resume(Effect.succeed(new TextDecoder().decode(all)))
    }
    function onError() {
      stop()
      resume(Effect.fail("unreadable"))
    }
    source.on("data", onData)
    source.on("end", onEnd)
    source.on("error", onError)
    return Effect.sync(stop)
  })

/** Any other platform: its own reader, with its own limit. */
const readPlatform = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<string, ReadFailure> =>
  request.text.pipe(
    HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)),
    Effect.mapError((error): ReadFailure => (isTooLarge(error) ? "too-large" : "unreadable"))
  )

/**
 * Reads the body as text, at most {@link maxBodyBytes}: an announced length
 * over the limit is refused before a byte is read, a streamed body as soon as
 * it passes the limit (413, and the connection closed).
 */
const readText = (
  request: HttpServerRequest.HttpServerRequest
): Effect.Effect<string, PayloadTooLarge | HttpApiDecodeError> => {
  const announced = Number(request.headers["content-length"] ?? 0)
  const read = !(announced <= maxBodyBytes)
    ? Effect.fail<ReadFailure>("too-large")
    : isNodeReadable(request.source)
      ? readNode(request.source, maxBodyBytes)
      : readPlatform(request)
  return Effect.catchAll(read, (failure) =>
    Effect.zipRight(
      HttpApp.appendPreResponseHandler(hangUp),
      Effect.fail(failure === "too-large" ? payloadTooLarge : decodeError("the request body could not be read"))
    )
  )
}

/**
 * Reads a JSON body (empty means `{}`) and decodes it with `schema`. Every
 * bad body, whatever its shape, is a 400 `HttpApiDecodeError`; one over the
 * size limit is a 413 `PayloadTooLarge`.
 *
 * @internal
 */
export const readJson = <A, I>(
  request: HttpServerRequest.HttpServerRequest,
  schema: Schema.Schema<A, I>
): Effect.Effect<A, PayloadTooLarge | HttpApiDecodeError> => {
  const decode = Schema.decodeUnknown(schema)
  return Effect.flatMap(readText(request), (body) => {
    const text = body.trim() === "" ? "{}" : body
    if (depthOf(text) > maxDepth) {
      return Effect.fail(decodeError(`the request body nests arrays or objects deeper than ${maxDepth} levels`))
    }
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      return Effect.fail(decodeError("the request body is not valid JSON"))
    }
    return decode(json).pipe(
      Effect.catchIf(ParseResult.isParseError, HttpApiDecodeError.refailParseError),
      // A safety net: whatever a value does to the decoder, the answer is a 400, never a 500.
      Effect.catchAllDefect(() => Effect.fail(decodeError("the request body could not be decoded")))
    )
  })
}
