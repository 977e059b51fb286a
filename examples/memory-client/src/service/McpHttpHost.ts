/**
 * Hosts an MCP server over Streamable HTTP on 127.0.0.1, the way a real MCP
 * service is deployed: one stateful session per client (the
 * `Mcp-Session-Id` header), a bearer API key checked on every request, JSON
 * responses, `DELETE` to end a session, `GET` refused with 405 (no
 * server-initiated stream).
 *
 * Nothing here knows about memories: `makeServer` builds the `McpServer` of
 * one session (given the account its API key belongs to), so any MCP server a
 * test or an example needs (a memory service, the tools behind a multi-user
 * gateway) can be hosted the same way.
 *
 * For tests and demos it has switches a real network provides by itself:
 * reset every open connection, reset or hang the next requests of a method
 * (before the server handles them, or after, so the work is done but the
 * answer is lost), stop, start and restart (sessions are forgotten, the port
 * stays), hold matching requests until released (to see how many a client
 * has in flight at once). It counts what it received per JSON-RPC method, and
 * the most requests one session had in flight at once.
 */
import { randomUUID } from "node:crypto"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { Socket } from "node:net"
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js"
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"
import { isInitializeRequest } from "@modelcontextprotocol/sdk/types.js"
import { type Duration, Effect, type Scope } from "effect"

/** What a fault does to a request: reset its TCP connection, or never answer it. */
export type FaultKind = "reset" | "hang"

/** `before`: the server never sees the request. `after`: it is handled, then the answer is lost. */
export type FaultWhen = "before" | "after"

/** A fault applied to the next `count` requests whose method starts with `method`. */
export interface Fault {
  readonly kind: FaultKind
  readonly when: FaultWhen
  /** Default 1. */
  readonly count?: number | undefined
  /** A JSON-RPC method (`"tools/call"`, `"ping"`) or `"tools/call add_memory"`; default `"tools/call"`. */
  readonly method?: string | undefined
}

/** What the host received and did. */
export interface HostCounts {
  readonly httpRequests: number
  /** JSON-RPC requests per method; tool calls as `"tools/call <tool>"`. */
  readonly methods: Readonly<Record<string, number>>
  readonly unauthorized: number
  readonly sessionsOpened: number
  readonly sessionsOpen: number
  /** Requests naming a session the host does not know (it restarted, or the session ended). */
  readonly sessionNotFound: number
  readonly resets: number
  readonly hangs: number
  readonly restarts: number
  /** Requests being held right now (see `hold`). */
  readonly held: number
  /** The most requests of one session that were being handled at the same time. */
  readonly maxInFlight: number
}

/** A running MCP host. */
export interface McpHttpHost {
  readonly port: number
  /** The MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  readonly url: string
  readonly counts: Effect.Effect<HostCounts>
  /** Applies `fault` to the next matching requests (queued after faults already waiting). */
  readonly injectFault: (fault: Fault) => Effect.Effect<void>
  /**
   * Holds every next request of a session whose method starts with `method`
   * (default `"tools/call"`) before the server handles it, until `release`.
   */
  readonly hold: (method?: string) => Effect.Effect<void>
  /** Lets the held requests through and stops holding. */
  readonly release: Effect.Effect<void>
  /** Resets every open TCP connection now (idle keep-alive ones too); answers how many. */
  readonly resetConnections: Effect.Effect<number>
  /** Replaces the accepted API keys (key → account); sessions opened with a removed key get 401 from now on. */
  readonly setApiKeys: (keys: ReadonlyMap<string, string>) => Effect.Effect<void>
  /** Stops listening, drops every connection and forgets every session. */
  readonly stop: Effect.Effect<void>
  /** Listens again on the same port. */
  readonly start: Effect.Effect<void>
  /** `stop`, wait `downtime`, `start`. */
  readonly restart: (downtime: Duration.DurationInput) => Effect.Effect<void>
}

/** How to host. */
export interface HostOptions {
  /** Default 0: any free port. */
  readonly port?: number | undefined
  /** Bearer API key → account. Every request must carry one of them. */
  readonly apiKeys: ReadonlyMap<string, string>
  /** Builds the server of one new session, for the account its key belongs to. */
  readonly makeServer: (account: string) => McpServer
}

interface Session {
  readonly transport: WebStandardStreamableHTTPServerTransport
  readonly server: McpServer
  readonly account: string
}

interface PendingFault {
  readonly kind: FaultKind
  readonly when: FaultWhen
  readonly method: string
  left: number
}

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body))
}

/**
 * Hands a request to the SDK's web-standard transport and writes its answer
 * (JSON responses only: the host never streams) to the Node response.
 */
const forward = async (
  transport: WebStandardStreamableHTTPServerTransport,
  req: IncomingMessage,
  res: ServerResponse,
  body?: unknown
): Promise<void> => {
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) {
    if (typeof value === "string") headers.set(name, value)
  }
  const request = new Request(`http://127.0.0.1${req.url ?? "/"}`, { method: req.method ?? "POST", headers })
  const response = await transport.handleRequest(request, { parsedBody: body })
  const text = await response.text()
  res.writeHead(response.status, Object.fromEntries(response.headers)).end(text)
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (body += chunk))
    req.on("end", () => resolve(body))
    req.on("error", reject)
  })

/** The JSON-RPC methods of a body (one message or a batch); tool calls name their tool. */
const methodsOf = (body: unknown): ReadonlyArray<string> =>
  (Array.isArray(body) ? body : [body]).flatMap((message: unknown) => {
    if (typeof message !== "object" || message === null || !("method" in message)) return []
    const m = message as { method: unknown; params?: { name?: unknown } }
    if (typeof m.method !== "string") return []
    return m.method === "tools/call" && typeof m.params?.name === "string"
      ? [`tools/call ${m.params.name}`]
      : [m.method]
  })

/** Makes every write of `res` do nothing: `reset` resets the socket at the first one instead of answering. */
const swallow = (res: ServerResponse, socket: Socket, kind: FaultKind) => {
  let done = false
  const drop = () => {
    if (!done && kind === "reset") socket.resetAndDestroy()
    done = true
    return res
  }
  res.writeHead = drop as typeof res.writeHead
  res.write = (() => true) as typeof res.write
  res.end = drop as typeof res.end
  res.flushHeaders = () => undefined
}

/** Starts an MCP host on 127.0.0.1; closing the scope stops it. */
export const make = (options: HostOptions): Effect.Effect<McpHttpHost, never, Scope.Scope> =>
  Effect.gen(function* () {
    let apiKeys = options.apiKeys
    const sessions = new Map<string, Session>()
    const sockets = new Set<Socket>()
    const faults: Array<PendingFault> = []
    const methods: Record<string, number> = {}
    const counts = {
      httpRequests: 0,
      unauthorized: 0,
      sessionsOpened: 0,
      sessionNotFound: 0,
      resets: 0,
      hangs: 0,
      restarts: 0,
      maxInFlight: 0
    }
    // Requests of each session being handled right now.
    const inFlight = new Map<string, number>()
    let holding: string | undefined
    let held: Array<() => void> = []
    const releaseHeld = () => {
      const waiting = held
      held = []
      for (const resume of waiting) resume()
    }

    const account = (req: IncomingMessage): string | undefined => {
      const match = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")
      return match === null ? undefined : apiKeys.get(match[1])
    }

    const takeFault = (names: ReadonlyArray<string>): PendingFault | undefined => {
      const index = faults.findIndex((f) => names.some((name) => name.startsWith(f.method)))
      if (index < 0) return undefined
      const fault = faults[index]
      if (--fault.left === 0) faults.splice(index, 1)
      if (fault.kind === "reset") counts.resets++
      else counts.hangs++
      return fault
    }

    const openSession = async (req: IncomingMessage, res: ServerResponse, body: unknown, owner: string) => {
      const server = options.makeServer(owner)
      const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
        sessionIdGenerator: randomUUID,
        enableJsonResponse: true,
        onsessioninitialized: (id) => {
          counts.sessionsOpened++
          sessions.set(id, { transport, server, account: owner })
        }
      })
      transport.onclose = () => {
        if (transport.sessionId !== undefined) sessions.delete(transport.sessionId)
      }
      await server.connect(transport)
      await forward(transport, req, res, body)
    }

    const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
      counts.httpRequests++
      if (new URL(req.url ?? "/", "http://127.0.0.1").pathname !== "/mcp") {
        return json(res, 404, { error: "not found" })
      }
      const owner = account(req)
      if (owner === undefined) {
        counts.unauthorized++
        return json(res, 401, { error: "invalid or missing API key" }, { "www-authenticate": "Bearer" })
      }
      const header = req.headers["mcp-session-id"]
      const session = typeof header === "string" ? sessions.get(header) : undefined
      if (req.method === "DELETE" || req.method === "POST") {
        if (header !== undefined && (session === undefined || session.account !== owner)) {
          counts.sessionNotFound++
          return json(res, 404, { jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null })
        }
      }
      if (req.method === "DELETE" && session !== undefined) return forward(session.transport, req, res)
      if (req.method !== "POST") {
        return json(res, 405, { error: "method not allowed" }, { allow: "POST, DELETE" })
      }
      let body: unknown
      try {
        body = JSON.parse(await readBody(req))
      } catch {
        return json(res, 400, { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null })
      }
      const names = methodsOf(body)
      for (const name of names) methods[name] = (methods[name] ?? 0) + 1
      const fault = takeFault(names)
      if (fault?.when === "before") {
        if (fault.kind === "reset") req.socket.resetAndDestroy()
        return // a hang: never answered; the socket is dropped when the client gives up or the host stops
      }
      if (fault !== undefined) swallow(res, req.socket, fault.kind)
      if (session !== undefined && typeof header === "string") {
        const prefix = holding
        if (prefix !== undefined && names.some((name) => name.startsWith(prefix))) {
          await new Promise<void>((resume) => held.push(resume))
        }
        const now = (inFlight.get(header) ?? 0) + 1
        inFlight.set(header, now)
        counts.maxInFlight = Math.max(counts.maxInFlight, now)
        try {
          return await forward(session.transport, req, res, body)
        } finally {
          const left = (inFlight.get(header) ?? 1) - 1
          if (left === 0) inFlight.delete(header)
          else inFlight.set(header, left)
        }
      }
      if (!isInitializeRequest(body)) {
        return json(res, 400, { jsonrpc: "2.0", error: { code: -32000, message: "No session" }, id: null })
      }
      return openSession(req, res, body, owner)
    }

    const http = createServer((req, res) => {
      handle(req, res).catch((error: unknown) => {
        if (!res.headersSent && !res.destroyed) json(res, 500, { error: String(error) })
      })
    })
    http.on("connection", (socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
    })

    let port = options.port ?? 0
    const start = Effect.async<void>((resume) => {
      if (http.listening) return resume(Effect.void)
      const onError = (error: Error) => resume(Effect.die(error))
      http.once("error", onError)
      http.listen(port, "127.0.0.1", () => {
        http.off("error", onError)
        const address = http.address()
        if (address !== null && typeof address === "object") port = address.port
        resume(Effect.void)
      })
    })

    const stop = Effect.async<void>((resume) => {
      holding = undefined
      releaseHeld()
      for (const { transport, server } of sessions.values()) {
        void server.close().catch(() => undefined)
        void transport.close().catch(() => undefined)
      }
      sessions.clear()
      if (!http.listening) return resume(Effect.void)
      http.close(() => resume(Effect.void))
      http.closeAllConnections()
      for (const socket of sockets) socket.destroy()
    })

    yield* Effect.acquireRelease(start, () => stop)

    return {
      port,
      url: `http://127.0.0.1:${port}/mcp`,
      counts: Effect.sync(() => ({
        ...counts,
        methods: { ...methods },
        sessionsOpen: sessions.size,
        held: held.length
      })),
      hold: (method) =>
        Effect.sync(() => {
          holding = method ?? "tools/call"
        }),
      release: Effect.sync(() => {
        holding = undefined
        releaseHeld()
      }),
      injectFault: (fault) =>
        Effect.sync(() => {
          faults.push({
            kind: fault.kind,
            when: fault.when,
            method: fault.method ?? "tools/call",
            left: Math.max(1, fault.count ?? 1)
          })
        }),
      resetConnections: Effect.sync(() => {
        const open = [...sockets]
        for (const socket of open) socket.resetAndDestroy()
        counts.resets += open.length
        return open.length
      }),
      setApiKeys: (keys) =>
        Effect.sync(() => {
          apiKeys = keys
        }),
      stop,
      start,
      restart: (downtime) =>
        Effect.sync(() => counts.restarts++).pipe(
          Effect.zipRight(stop),
          Effect.zipRight(Effect.sleep(downtime)),
          Effect.zipRight(start)
        )
    } satisfies McpHttpHost
  })
