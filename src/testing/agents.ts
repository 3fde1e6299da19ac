/**
 * undici dispatchers that trust a given CA and, optionally, present a client certificate: the
 * harness hands out many, and every one of them must be closed when the harness stops.
 */
import { Agent } from 'undici';

/** A certificate and private key to present on TLS connections (PEM). */
export interface PresentedCertificate {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

/** Creates dispatchers and closes them all at once. */
export interface AgentPool {
  /**
   * A dispatcher trusting `ca` (PEM; default: the pool's CA) and presenting `certificate` when given.
   * Dispatchers are reused per (CA, certificate), so asking twice costs nothing.
   */
  agentFor(certificate?: PresentedCertificate, ca?: string): Agent;
  /** Like {@link AgentPool.agentFor}, but always a new dispatcher (its own connections). */
  newAgent(certificate?: PresentedCertificate, ca?: string): Agent;
  /** Closes every dispatcher this pool created. */
  close(): Promise<void>;
}

/**
 * A pool whose dispatchers trust `defaultCa` (PEM) unless told otherwise; without any CA, the
 * system's trust store applies.
 */
export function createAgentPool(defaultCa?: string): AgentPool {
  const shared = new Map<string, Agent>();
  const all = new Set<Agent>();
  const create = (certificate: PresentedCertificate | undefined, ca: string | undefined) => {
    const agent = new Agent({
      connect: {
        ...(ca ? { ca } : {}),
        ...(certificate ? { cert: certificate.certificatePem, key: certificate.privateKeyPem } : {}),
      },
    });
    all.add(agent);
    return agent;
  };
  return {
    agentFor(certificate, ca = defaultCa) {
      const key = `${ca ?? ''}\0${certificate?.certificatePem ?? ''}`;
      let agent = shared.get(key);
      if (agent === undefined) {
        agent = create(certificate, ca);
        shared.set(key, agent);
      }
      return agent;
    },
    newAgent(certificate, ca = defaultCa) {
      return create(certificate, ca);
    },
    async close() {
      const open = [...all];
      all.clear();
      shared.clear();
      // A caller may have closed one already; closing it again must not fail the whole close.
      await Promise.all(open.map((agent) => (agent.closed ? undefined : agent.close().catch(() => undefined))));
    },
  };
}
