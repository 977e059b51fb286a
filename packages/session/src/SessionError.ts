/**
 * The errors a session store adds: a value that does not fit the store's
 * `Schema`, on its way in (a caller wrote an invalid session) or out (storage
 * holds a corrupted value, or one written by an older version of the app).
 *
 * @since 0.1.0
 */
import * as Schema from "effect/Schema"

/**
 * A session value failed the store's `Schema`. `direction` says where:
 * `"encode"` when a caller's value was refused before it was stored,
 * `"decode"` when what storage holds could not be read back. Only that one
 * session is affected; the failure is counted in `stats.schemaErrors`.
 *
 * @since 0.1.0
 * @category errors
 */
export class SessionSchemaError extends Schema.TaggedError<SessionSchemaError>("@cistern/session/SessionSchemaError")(
  "SessionSchemaError",
  {
    id: Schema.String,
    direction: Schema.Literal("encode", "decode"),
    detail: Schema.String
  }
) {
  override get message(): string {
    const where =
      this.direction === "encode" ? "could not be stored" : "in storage does not match the schema and was not returned"
    return `session ${JSON.stringify(this.id)} ${where}: ${this.detail}`
  }
}

/**
 * Every error a session store operation may fail with.
 *
 * @since 0.1.0
 * @category errors
 */
export type SessionError = SessionSchemaError

/**
 * The schema of {@link SessionError}, for sending it over HTTP.
 *
 * @since 0.1.0
 * @category errors
 */
export const SessionError: Schema.Schema<
  SessionError,
  Schema.Schema.Encoded<typeof SessionSchemaError>
> = SessionSchemaError
