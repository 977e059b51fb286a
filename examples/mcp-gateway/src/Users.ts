/**
 * The gateway's users: each has a bearer token to call the gateway with and
 * a credential per MCP server, from a small JSON file:
 *
 * ```json
 * { "users": [{ "id": "alice", "token": "…", "credentials": { "local-tools": "…", "remote-tools": "…" } }] }
 * ```
 *
 * Tokens are looked up by their SHA-256 digest (never compared or kept in the
 * clear beside the user); tokens and credentials are `Redacted`, so no log or
 * error can print them. A user may replace their own credential for a server
 * at run time: the pool then opens a new connection for them (the key's
 * fingerprint changed) and closes the old one once its call returns.
 */
import { createHash } from "node:crypto"
import { readFile } from "node:fs/promises"
import { Context, Data, Effect, Layer, Option, Redacted, Schema } from "effect"

const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9._-]{1,64}$/, { message: () => "letters, digits, '.', '_' or '-' (1 to 64)" })
)
const Secret = Schema.String.pipe(
  Schema.pattern(/^\S{8,512}$/, { message: () => "at least 8 characters, no whitespace" })
)

/** One user of the file. */
export const UserEntry = Schema.Struct({
  id: Name,
  token: Schema.Redacted(Secret),
  credentials: Schema.Record({ key: Name, value: Schema.Redacted(Secret) })
})

/** One user: id, gateway token, credential per server. */
export interface UserEntry extends Schema.Schema.Type<typeof UserEntry> {}

/** The users file. */
export const UsersFile = Schema.Struct({ users: Schema.Array(UserEntry) })

/** The users file, decoded. */
export interface UsersFile extends Schema.Schema.Type<typeof UsersFile> {}

/** The users file cannot be read or is invalid; says which file and why (never a token). */
export class InvalidUsers extends Data.TaggedError("InvalidUsers")<{ readonly file: string; readonly detail: string }> {
  override get message() {
    return `invalid users file ${this.file}: ${this.detail}`
  }
}

/** What the gateway asks of its users. */
export interface Service {
  /** The user an `Authorization: Bearer <token>` header belongs to. */
  readonly authenticate: (authorization: string | undefined) => Effect.Effect<Option.Option<string>>
  /** The user's credential for `server`, if they have one. */
  readonly credential: (userId: string, server: string) => Effect.Effect<Option.Option<Redacted.Redacted<string>>>
  /** Replaces (or adds) the user's credential for `server`. */
  readonly setCredential: (userId: string, server: string, credential: Redacted.Redacted<string>) => Effect.Effect<void>
  /** Every user id. */
  readonly users: ReadonlyArray<string>
}

/** The users directory. */
export class Users extends Context.Tag("example/Users")<Users, Service>() {}

const digest = (token: string) => createHash("sha256").update(token).digest("hex")

/** A directory over decoded users; fails on duplicate ids or tokens. */
export const make = (file: UsersFile, source = "users"): Effect.Effect<Service, InvalidUsers> =>
  Effect.gen(function* () {
    const byDigest = new Map<string, string>()
    const credentials = new Map<string, Map<string, Redacted.Redacted<string>>>()
    for (const user of file.users) {
      if (credentials.has(user.id)) {
        return yield* new InvalidUsers({ file: source, detail: `user ${user.id} appears twice` })
      }
      const hash = digest(Redacted.value(user.token))
      if (byDigest.has(hash)) {
        return yield* new InvalidUsers({ file: source, detail: `user ${user.id} has another user's token` })
      }
      byDigest.set(hash, user.id)
      credentials.set(user.id, new Map(Object.entries(user.credentials)))
    }
    return Users.of({
      authenticate: (authorization) =>
        Effect.sync(() => {
          const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? "")?.[1]
          return token === undefined ? Option.none() : Option.fromNullable(byDigest.get(digest(token)))
        }),
      credential: (userId, server) => Effect.sync(() => Option.fromNullable(credentials.get(userId)?.get(server))),
      setCredential: (userId, server, credential) =>
        Effect.sync(() => {
          credentials.get(userId)?.set(server, credential)
        }),
      users: [...credentials.keys()]
    })
  })

/** Reads and decodes a users file. */
export const fromFile = (path: string): Effect.Effect<Service, InvalidUsers> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (error) => new InvalidUsers({ file: path, detail: error instanceof Error ? error.message : String(error) })
  }).pipe(
    Effect.flatMap((text) =>
      Effect.try({
        try: () => JSON.parse(text) as unknown,
        catch: () => new InvalidUsers({ file: path, detail: "not JSON" })
      })
    ),
    Effect.flatMap(Schema.decodeUnknown(UsersFile, { onExcessProperty: "error" })),
    Effect.mapError((error) =>
      error instanceof InvalidUsers ? error : new InvalidUsers({ file: path, detail: error.message })
    ),
    Effect.flatMap((file) => make(file, path))
  )

/** The directory of a users file. */
export const layerFile = (path: string): Layer.Layer<Users, InvalidUsers> => Layer.effect(Users, fromFile(path))
