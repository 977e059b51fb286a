/**
 * A TCP proxy on 127.0.0.1 in front of Redis that can lose one reply: armed
 * with a marker (a word of the command, such as `acquire`) and a word of the
 * reply (such as `granted`), it forwards the marked command to Redis, then
 * swallows the first reply containing that word and resets the client's
 * connection, as a network failure between the server's answer and the
 * client would. Everything else passes through. Closed with its scope.
 */
import * as net from "node:net"
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"

export interface Proxy {
  readonly port: number
  readonly url: string
  /** Loses the reply containing `reply` to the next command containing `command` (on whichever connection sends it). */
  readonly loseReply: (command: string, reply: string) => void
  /** Replies lost so far. */
  readonly lost: () => number
}

export const proxy = (targetPort: number): Effect.Effect<Proxy, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ server: net.Server; sockets: Set<net.Socket>; proxy: Proxy }>((resume) => {
      let armed: { command: string; reply: string } | undefined
      let lost = 0
      const sockets = new Set<net.Socket>()
      const server = net.createServer((client) => {
        const upstream = net.connect({ port: targetPort, host: "127.0.0.1" })
        sockets.add(client)
        sockets.add(upstream)
        let dropping: string | undefined
        const close = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on("data", (chunk: Buffer) => {
          if (armed !== undefined && chunk.toString("utf8").includes(armed.command)) {
            dropping = armed.reply
            armed = undefined
          }
          upstream.write(chunk)
        })
        upstream.on("data", (chunk: Buffer) => {
          if (dropping !== undefined && chunk.toString("utf8").includes(dropping)) {
            lost++
            // A reset, not a clean close: the client learns nothing of the answer.
            client.resetAndDestroy()
            close()
            return
          }
          client.write(chunk)
        })
        client.on("error", close)
        upstream.on("error", close)
        client.on("close", close)
        upstream.on("close", close)
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as net.AddressInfo
        resume(
          Effect.succeed({
            server,
            sockets,
            proxy: {
              port,
              url: `redis://127.0.0.1:${port}`,
              loseReply: (command, reply) => {
                armed = { command, reply }
              },
              lost: () => lost
            }
          })
        )
      })
    }),
    ({ server, sockets }) =>
      Effect.async<void>((resume) => {
        for (const s of sockets) s.destroy()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ proxy }) => proxy))
