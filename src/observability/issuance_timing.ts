import type { Histogram } from 'prom-client';
import { grantLabel } from './metric_labels.js';

/**
 * The issuance latency split into its phases (metric `tether_issuance_phase_duration_seconds`):
 *
 * - policy: from the grant handler's start until minting starts (client state, resource and scope
 *   policy, subject token checks, binding and the DPoP replay insert), or until it refused;
 * - signing: minting the token (JWT signature, or the opaque token's store write);
 * - ledger: waiting for the issuance event's commit (the batched issuance statement).
 *
 * The grant handler is wrapped by {@link timedGrant}; the steps it takes call {@link timedStep}.
 * The clock lives on the request (`ctx.state`), so with metrics off the steps just run.
 */

export type TimedPhase = 'signing' | 'ledger';

interface IssuanceClock {
  /** Ends the policy phase (the first timed step does), and records a phase. */
  enter(): void;
  observe(phase: 'policy' | TimedPhase, seconds: number): void;
}

const CLOCK = 'tetherIssuanceClock';

function clockOf(ctx: { state?: Record<string, unknown> }): IssuanceClock | undefined {
  return ctx.state?.[CLOCK] as IssuanceClock | undefined;
}

/**
 * The grant handler for `grantType` (as given to oidc-provider's `registerGrantType`), timing its
 * phases into `histogram`; without a histogram (metrics off), the handler itself.
 */
export function timedGrant<C extends { state: Record<string, unknown> }>(
  histogram: Histogram<'grant' | 'phase'> | undefined,
  grantType: string,
  handler: (ctx: C) => Promise<void>,
): (ctx: C) => Promise<void> {
  if (!histogram) return handler;
  const grant = grantLabel(grantType);
  return async function timedGrantHandler(ctx) {
    const started = performance.now();
    let policyEnded = false;
    const endPolicy = () => {
      if (policyEnded) return;
      policyEnded = true;
      histogram.observe({ grant, phase: 'policy' }, (performance.now() - started) / 1000);
    };
    ctx.state[CLOCK] = {
      enter: endPolicy,
      observe: (phase, seconds) => histogram.observe({ grant, phase }, seconds),
    } satisfies IssuanceClock;
    try {
      await handler(ctx);
    } finally {
      endPolicy();
    }
  };
}

/** Runs one phase of the issuance under the request's clock (if metrics are on). */
export async function timedStep<T>(ctx: object, phase: TimedPhase, step: () => Promise<T>): Promise<T> {
  const clock = clockOf(ctx as { state?: Record<string, unknown> });
  if (!clock) return step();
  clock.enter();
  const started = performance.now();
  try {
    return await step();
  } finally {
    clock.observe(phase, (performance.now() - started) / 1000);
  }
}
