/**
 * One key's circuit breaker, as a plain state machine: the engine feeds it
 * outcomes and the time, and asks it whether a caller may pass.
 *
 * @internal
 */
export interface BreakerSettings {
  /** Consecutive failures that open the circuit. */
  readonly failures: number
  /** Failure rate (0..1] over the last `window` calls that opens it, once `minimumCalls` were seen. */
  readonly failureRate: number
  readonly minimumCalls: number
  readonly window: number
  /** How long it stays open before probing. */
  readonly reset: number
  /** Callers let through while half-open; all must succeed to close. */
  readonly halfOpenProbes: number
}

/** @internal */
export type BreakerState = "closed" | "open" | "half-open"

/** @internal */
export interface Transition {
  /** Epoch milliseconds. */
  readonly at: number
  readonly from: BreakerState
  readonly to: BreakerState
}

/**
 * How one call on a key's item went, as the breaker counts it: a success, a
 * connection failure (the upstream's fault), or no verdict (the caller's own
 * error, or an interruption).
 *
 * @internal
 */
export type Outcome = "success" | "connection" | "caller" | "interrupted"

/** What `admit` answers: pass, pass as a probe, or fail fast for this long. */
export const PASS = 0
/** @internal */
export const PROBE = -1

const transitionsKept = 16

/** @internal */
export class Breaker {
  state: BreakerState = "closed"
  consecutive = 0
  openedAt = 0
  /** Probes admitted in this half-open period. */
  private probes = 0
  private probeSuccesses = 0
  /** Outcomes of the last `window` calls, 1 = failure, as a ring. */
  private readonly outcomes: Uint8Array
  private calls = 0
  private failed = 0
  readonly transitions: Array<Transition> = []

  constructor(
    readonly settings: BreakerSettings,
    /** Added to the breaker's times (the kernel's clock) where they leave it as epoch milliseconds. */
    readonly origin: number
  ) {
    this.outcomes = new Uint8Array(Number.isFinite(settings.failureRate) ? settings.window : 0)
  }

  /** Whether the breaker remembers nothing: its key may be dropped. */
  get pristine(): boolean {
    return this.state === "closed" && this.consecutive === 0 && this.failed === 0
  }

  /** PASS, PROBE, or the milliseconds until the caller may try again. */
  admit(now: number): number {
    if (this.state === "open") {
      if (now < this.openedAt + this.settings.reset) return this.openedAt + this.settings.reset - now
      this.move("half-open", now)
      this.probes = 0
      this.probeSuccesses = 0
    }
    if (this.state === "half-open") {
      if (this.probes >= this.settings.halfOpenProbes) return this.settings.reset
      this.probes++
      return PROBE
    }
    return PASS
  }

  success(now: number, probe: boolean): void {
    if (this.state === "half-open") {
      // Each admitted probe keeps its place: exactly `halfOpenProbes` callers decide.
      if (probe && ++this.probeSuccesses >= this.settings.halfOpenProbes) this.close(now)
      return
    }
    // A lease that began before the circuit opened says nothing about now:
    // only probes may bring an open circuit back (and reset its count).
    if (this.state === "open") return
    this.consecutive = 0
    this.record(0)
  }

  failure(now: number, probe: boolean): void {
    if (this.state === "half-open") {
      if (probe) this.open(now)
      return
    }
    if (this.state === "open") return
    this.consecutive++
    this.record(1)
    const s = this.settings
    const rateTripped =
      this.outcomes.length > 0 &&
      this.calls >= s.minimumCalls &&
      this.failed / Math.min(this.calls, s.window) >= s.failureRate
    if (this.consecutive >= s.failures || rateTripped) this.open(now)
  }

  /**
   * Counts one call's outcome: a success or a connection failure moves the
   * counts (and maybe the circuit); the caller's own error or an interruption
   * only gives a probe's place up. Returns the state the circuit left, if it
   * moved, so the caller can log and count the transition.
   */
  tell(outcome: Outcome, now: number, probe: boolean): BreakerState | undefined {
    const before = this.state
    if (outcome === "success") this.success(now, probe)
    else if (outcome === "connection") this.failure(now, probe)
    else this.abandon(probe)
    return this.state === before ? undefined : before
  }

  /** How long an open circuit still refuses callers (negative once it may be probed). */
  retryAfter(now: number): number {
    return this.openedAt + this.settings.reset - now
  }

  /** A probe ended without a verdict (interrupted, or a caller-fault error). */
  abandon(probe: boolean): void {
    if (probe && this.state === "half-open") this.probes--
  }

  private record(outcome: 0 | 1): void {
    if (this.outcomes.length === 0) return
    const at = this.calls % this.outcomes.length
    if (this.calls >= this.outcomes.length) this.failed -= this.outcomes[at]
    this.outcomes[at] = outcome
    this.failed += outcome
    this.calls++
  }

  private open(now: number): void {
    this.move("open", now)
    this.openedAt = now
  }

  private close(now: number): void {
    this.move("closed", now)
    this.consecutive = 0
    this.calls = 0
    this.failed = 0
    this.outcomes.fill(0)
  }

  private move(to: BreakerState, at: number): void {
    if (this.transitions.push({ at: at + this.origin, from: this.state, to }) > transitionsKept) {
      this.transitions.shift()
    }
    this.state = to
  }
}
