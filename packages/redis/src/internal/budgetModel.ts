/**
 * The cluster budget as plain data: the same rules as the Lua script in
 * `budgetScript.ts`, in TypeScript, with time as an argument. It is the
 * reference the script is tested against (a differential property test runs
 * one random history through both and compares every answer), and the
 * shared vocabulary of the client: {@link Op} and {@link Reply}.
 *
 * @internal
 */

/** What one call asks. @internal */
export type Op =
  | {
      readonly _tag: "acquire"
      readonly id: string
      readonly tenant: string
      readonly limit: number
      readonly tenantLimit: number
      readonly held: number
      readonly waiting: number
    }
  | { readonly _tag: "release"; readonly id: string }
  | {
      readonly _tag: "heartbeat"
      readonly waiting: number
      readonly limit: number
      readonly permits: ReadonlyArray<readonly [id: string, tenant: string]>
    }
  | { readonly _tag: "leave" }
  | {
      readonly _tag: "adopt"
      /** Permits granted while Redis was unreachable: counted now whatever the limits say (their connections exist). */
      readonly permits: ReadonlyArray<readonly [id: string, tenant: string]>
    }

/** Who calls, and what it knows. @internal */
export interface Caller {
  readonly instance: string
  readonly epoch: string
  readonly leaseMillis: number
}

/** @internal */
export type Status =
  | "granted"
  | "exhausted"
  | "learning"
  | "lost"
  | "released"
  | "unknown"
  | "ok"
  | "reasserted"
  | "left"
  | "adopted"

/** The script's answer, decoded. @internal */
export interface Reply {
  readonly status: Status
  /** The budget's time (server ms) when it answered. */
  readonly now: number
  readonly epoch: string
  /** Permits counted across all instances. */
  readonly used: number
  /** Permits counted for the tenant (acquire only, otherwise 0). */
  readonly tenantUsed: number
  /** Permits counted for the calling instance. */
  readonly held: number
  /** Permits other instances are waiting for. */
  readonly wantsElsewhere: number
  /** Permits of expired instances this call gave back. */
  readonly reclaimed: number
  /** How far the caller is above its fair share while others wait (heartbeat only). */
  readonly over: number
  /** Instances with a lease in the budget (live, or expired and not yet reclaimed), the caller included. */
  readonly instances: number
  /** Whether the call published a `freed` notification. */
  readonly published?: boolean | undefined
}

/** Decodes the script's array reply. @internal */
export const decodeReply = (raw: unknown): Reply => {
  const a = raw as ReadonlyArray<string | number>
  const n = (i: number) => Number(a[i])
  return {
    status: String(a[0]) as Status,
    now: n(1),
    epoch: String(a[2]),
    used: n(3),
    tenantUsed: n(4),
    held: n(5),
    wantsElsewhere: n(6),
    reclaimed: n(7),
    over: n(8),
    instances: n(9)
  }
}

/** The script's arguments after the keys, for one call. @internal */
export const encodeArgs = (caller: Caller, op: Op, channel: string, clock: number | undefined): Array<string> => {
  const head = [
    op._tag,
    clock === undefined ? "" : String(clock),
    caller.instance,
    caller.epoch,
    String(caller.leaseMillis),
    channel
  ]
  switch (op._tag) {
    case "acquire":
      return [...head, op.id, op.tenant, String(op.limit), String(op.tenantLimit), String(op.held), String(op.waiting)]
    case "release":
      return [...head, op.id]
    case "heartbeat":
      return [...head, String(op.waiting), String(op.limit), ...op.permits.flat()]
    case "leave":
      return head
    case "adopt":
      return [...head, ...op.permits.flat()]
  }
}

/** Orders instance ids by their UTF-8 bytes, as the script does. */
const bytesOrder = (x: string, y: string): number => Buffer.compare(Buffer.from(x), Buffer.from(y))

const reclaimBatch = 16

/**
 * The budget's state, as Redis holds it (the five keys), with the script's
 * rules as methods. `flush` is what `FLUSHALL` does to it.
 *
 * @internal
 */
export class Model {
  private epoch: string | undefined = undefined
  private born = 0
  private last = 0
  private learnUntil = 0
  private readonly instances = new Map<string, number>()
  private readonly permits = new Map<string, { readonly owner: string; readonly tenant: string }>()
  private readonly used = new Map<string, number>()
  private readonly wants = new Map<string, number>()

  /** Redis lost its data. */
  flush(): void {
    this.epoch = undefined
    this.born = 0
    this.last = 0
    this.learnUntil = 0
    this.instances.clear()
    this.permits.clear()
    this.used.clear()
    this.wants.clear()
  }

  /** Permits counted in total (for invariants). */
  get total(): number {
    return this.count("*")
  }

  /** The number of permit entries (for invariants: always equal to `total`). */
  get permitCount(): number {
    return this.permits.size
  }

  private count(field: string): number {
    return this.used.get(field) ?? 0
  }

  private incr(field: string): void {
    this.used.set(field, this.count(field) + 1)
  }

  private decr(field: string): void {
    const n = this.count(field) - 1
    if (n <= 0) this.used.delete(field)
    else this.used.set(field, n)
  }

  private setWants(instance: string, n: number): void {
    if (n > 0) this.wants.set(instance, n)
    else this.wants.delete(instance)
  }

  private wantsElsewhere(me: string): number {
    let n = 0
    for (const [who, w] of this.wants) if (who !== me) n += w
    return n
  }

  private drop(set: ReadonlySet<string>): number {
    let n = 0
    for (const [id, p] of this.permits) {
      if (set.has(p.owner)) {
        this.permits.delete(id)
        this.decr("*")
        this.decr(`t:${p.tenant}`)
        n++
      }
    }
    for (const owner of set) {
      this.instances.delete(owner)
      this.wants.delete(owner)
      this.used.delete(`i:${owner}`)
    }
    return n
  }

  private grant(me: string, id: string, tenant: string): void {
    this.permits.set(id, { owner: me, tenant })
    this.incr("*")
    this.incr(`t:${tenant}`)
    this.incr(`i:${me}`)
  }

  /** One call of the script at server time `clock`. */
  step(clock: number, caller: Caller, op: Op): Reply {
    const me = caller.instance
    const lease = caller.leaseMillis
    let last = this.last
    let now = Math.max(clock, last)
    let epoch = this.epoch
    if (epoch === undefined) {
      epoch = `${now}-${me}`
      this.epoch = epoch
      this.born = now
      this.learnUntil = 0
      last = now
    }
    let learnUntil = this.learnUntil
    const total = this.count("*")
    if (now - last > lease && total > 0 && now + lease > learnUntil) learnUntil = now + lease
    const stale = caller.epoch !== "" && caller.epoch !== epoch
    if (stale && now < this.born + lease && this.born + lease > learnUntil) learnUntil = this.born + lease
    const learning = now < learnUntil

    let reclaimed = 0
    if (!learning) {
      const dead = [...this.instances]
        .filter(([, expiry]) => expiry <= now)
        .sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0))
        .slice(0, reclaimBatch)
        .map(([who]) => who)
      if (dead.length > 0) reclaimed = this.drop(new Set(dead))
    }

    let status: Status = "ok"
    let tenantUsed = 0
    let over = 0
    let freed = reclaimed
    const registered = this.instances.has(me)

    switch (op._tag) {
      case "acquire": {
        tenantUsed = this.count(`t:${op.tenant}`)
        if (this.permits.has(op.id)) {
          status = "granted"
          this.instances.set(me, now + lease)
        } else if (stale && !learning) {
          status = "lost"
        } else if (op.held > 0 && !registered && !stale) {
          // Its entry was reclaimed. A stale caller is one whose data Redis lost: it may acquire before its
          // heartbeat re-asserts, and hears "learning" (or "lost" above, once learning is over).
          status = "lost"
        } else {
          this.instances.set(me, now + lease)
          if (learning) {
            status = "learning"
            this.setWants(me, op.waiting)
          } else if (this.count("*") >= op.limit || tenantUsed >= op.tenantLimit) {
            status = "exhausted"
            this.setWants(me, op.waiting)
          } else {
            status = "granted"
            this.grant(me, op.id, op.tenant)
            tenantUsed++
            this.setWants(me, op.waiting - 1)
          }
        }
        break
      }
      case "release": {
        const p = this.permits.get(op.id)
        if (p !== undefined) {
          this.permits.delete(op.id)
          this.decr("*")
          this.decr(`t:${p.tenant}`)
          this.decr(`i:${p.owner}`)
          status = "released"
          freed++
        } else {
          status = "unknown"
        }
        break
      }
      case "heartbeat": {
        if (stale && learning) {
          status = "reasserted"
          for (const [id, tenant] of op.permits) if (!this.permits.has(id)) this.grant(me, id, tenant)
        } else if (stale || (op.permits.length > 0 && !registered)) {
          status = "lost"
        }
        if (status !== "lost") {
          this.instances.set(me, now + lease)
          this.setWants(me, op.waiting)
          if (this.wantsElsewhere(me) > 0) {
            const demand = new Set<string>()
            for (const field of this.used.keys()) if (field.startsWith("i:")) demand.add(field.slice(2))
            for (const who of this.wants.keys()) demand.add(who)
            // The remainder: one each to the instances that want more first, then to the others (see the script).
            const wanting = (who: string) => this.wants.has(who)
            const ranked = [...demand].sort((x, y) =>
              wanting(x) === wanting(y) ? bytesOrder(x, y) : wanting(x) ? -1 : 1
            )
            const rank = ranked.indexOf(me)
            const share = Math.floor(op.limit / demand.size) + (rank >= 0 && rank < op.limit % demand.size ? 1 : 0)
            over = Math.max(0, this.count(`i:${me}`) - share)
          }
        }
        break
      }
      case "leave": {
        freed += this.drop(new Set([me]))
        status = "left"
        break
      }
      case "adopt": {
        // Counting connections that exist never causes an overshoot: no limit, learning or epoch check.
        status = "adopted"
        this.instances.set(me, now + lease)
        for (const [id, tenant] of op.permits) if (!this.permits.has(id)) this.grant(me, id, tenant)
        break
      }
    }

    const published = freed > 0 && this.wantsElsewhere(me) > 0
    this.last = now
    this.learnUntil = learnUntil
    now = Math.floor(now)
    return {
      status,
      now,
      epoch,
      used: this.count("*"),
      tenantUsed,
      held: this.count(`i:${me}`),
      wantsElsewhere: this.wantsElsewhere(me),
      reclaimed,
      over,
      instances: this.instances.size,
      published
    }
  }
}
