/**
 * The probe: sends the catalogue of bad tokens to one API URL and judges each answer against what an
 * API that enforces audience, lifetime, signature, binding and scope must answer.
 *
 * It contacts nothing but the given URL: every request goes to exactly that URL, redirects are not
 * followed, and the only other party involved is the Tether that issued the tokens.
 */
import { fetch } from 'undici';
import { REFUSED_BY_HEADER } from 'tether-oauth-resource-server';
import { createAgentPool, type AgentPool } from './agents.js';
import { describeAnswer, errorCodeOf, type ApiAnswer } from './api_answer.js';
import type { BadTokenCase, ExpectedAnswer, Presentation, TargetRequest } from './token_factory.js';
import { normalizeMethod } from './token_fetch.js';

/** The API request to probe. */
export interface ProbeTarget {
  /** The URL of one protected API operation; the probe sends requests to this URL only. */
  readonly url: string;
  /** Default `GET`. */
  readonly method?: string;
  /** Extra request headers (not `Authorization` or `DPoP`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Request body, for methods that need one. */
  readonly body?: string;
  /** PEM bundle the API's TLS certificate chains to (default: the agent pool's CA, else the system's). */
  readonly ca?: string;
  /** Per-request timeout (default 10 000 ms). */
  readonly timeoutMs?: number;
  /**
   * The URL clients address the operation by, which DPoP proofs name (`htu`); default `url`. Set
   * when `url` reaches the API another way than its clients do: an upstream probed directly, behind
   * a gateway (probe_through.ts).
   */
  readonly publicUrl?: string;
}

/** Options of {@link runProbe}. */
export interface ProbeOptions extends ProbeTarget {
  /** The catalogue, made for this request (`badTokenCatalogue` or `RunningTether.badTokens`). */
  readonly cases: readonly BadTokenCase[];
  /** Only these case ids. */
  readonly only?: readonly string[];
  /** Not these case ids (reported as skipped). */
  readonly skip?: readonly string[];
  /** Where connections come from; default: a pool of its own, closed at the end. */
  readonly agents?: AgentPool;
}

/** The verdict on one check. `error` means the probe itself could not run it. */
export type Verdict = 'pass' | 'fail' | 'skip' | 'error';

/** One line of the report. */
export interface CheckResult {
  readonly id: string;
  readonly breaks: string;
  readonly sent: string;
  /** What a correct API answers: `2xx`, `401 invalid_token`, … */
  readonly expected: string;
  /** What this API answered (`-` when nothing was sent). */
  readonly answered: string;
  readonly verdict: Verdict;
  readonly note?: string;
  /** The judged answer carried the forward-auth refusal marker (`X-Tether-Authz: refused`): a gateway refused it. */
  readonly refusedByGateway?: true;
}

/** The probe's findings. */
export interface ProbeReport {
  readonly url: string;
  readonly method: string;
  readonly results: readonly CheckResult[];
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  /** Checks skipped because they could not be run (e.g. no signing key), not on request: a probe with any is incomplete. */
  readonly unrun: number;
  /** True when no check failed or could not be run. */
  readonly ok: boolean;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Runs the checks one after another (a replay check must not race its first use) and reports. */
export async function runProbe(options: ProbeOptions): Promise<ProbeReport> {
  const method = normalizeMethod(options.method);
  const agents = options.agents ?? createAgentPool(options.ca);
  const send = apiSender(options, method, agents);
  const results: CheckResult[] = [];
  try {
    const request = { method, url: new URL(options.publicUrl ?? options.url).toString() };
    for (const check of options.cases) results.push(await runCheck(check, options, request, send));
  } finally {
    if (!options.agents) await agents.close();
  }
  const count = (verdict: Verdict) => results.filter((result) => result.verdict === verdict).length;
  return {
    url: options.url,
    method,
    results,
    passed: count('pass'),
    failed: count('fail') + count('error'),
    skipped: count('skip'),
    unrun: options.cases.filter((check, index) => check.skipped !== undefined && results[index]?.verdict === 'skip').length,
    ok: count('fail') === 0 && count('error') === 0,
  };
}

type Sender = (presentation: Presentation) => Promise<ApiAnswer>;

/** Sends to the probed URL and nowhere else. */
function apiSender(target: ProbeTarget, method: string, agents: AgentPool): Sender {
  const url = new URL(target.url).toString();
  return async (presentation) => {
    const headers: Record<string, string> = { ...target.headers };
    if (presentation.authorization !== undefined) headers.authorization = presentation.authorization;
    if (presentation.dpop !== undefined) headers.dpop = presentation.dpop;
    const response = await fetch(url, {
      method,
      headers,
      body: target.body,
      redirect: 'manual',
      dispatcher: agents.agentFor(presentation.certificate, target.ca),
      signal: AbortSignal.timeout(target.timeoutMs ?? DEFAULT_TIMEOUT_MS),
    });
    const body = await response.text();
    const refusedByGateway = response.headers.get(REFUSED_BY_HEADER) === 'refused';
    return { status: response.status, error: errorCodeOf(response.headers.get('www-authenticate'), body), ...(refusedByGateway ? { refusedByGateway: true as const } : {}) };
  };
}

async function runCheck(check: BadTokenCase, selection: Pick<ProbeOptions, 'only' | 'skip'>, request: TargetRequest, send: Sender): Promise<CheckResult> {
  const line = { id: check.id, breaks: check.breaks, sent: check.sent, expected: describeExpected(check.expect) };
  const skipReason = check.skipped
    ?? (selection.only && !selection.only.includes(check.id) ? 'not selected' : undefined)
    ?? (selection.skip?.includes(check.id) ? 'skipped on request' : undefined);
  if (skipReason !== undefined) return { ...line, answered: '-', verdict: 'skip', note: skipReason };

  let answers: ApiAnswer[];
  try {
    const presentations = await check.present(request);
    answers = [];
    for (const presentation of presentations) answers.push(await send(presentation));
  } catch (error) {
    return { ...line, answered: '-', verdict: 'error', note: describeError(error) };
  }
  const last = answers.at(-1);
  if (!last) return { ...line, answered: '-', verdict: 'error', note: 'the check sent nothing' };
  return { ...line, answered: describeAnswer(last), ...judge(check.expect, last, answers.slice(0, -1)), ...(last.refusedByGateway ? { refusedByGateway: true as const } : {}) };
}

/** The verdict on the last answer; earlier answers (a replay's first use) are noted. */
function judge(expect: ExpectedAnswer, answer: ApiAnswer, earlier: ApiAnswer[]): { verdict: Verdict; note?: string } {
  const before = earlier.length > 0 ? `first use answered ${earlier.map(describeAnswer).join(', ')}` : undefined;
  const notes = (...parts: (string | undefined)[]) => parts.filter(Boolean).join('; ') || undefined;
  const accepted = answer.status >= 200 && answer.status < 300;
  if (expect.outcome === 'accepted') {
    return accepted
      ? { verdict: 'pass' }
      : { verdict: 'fail', note: 'a correct request was refused: the other checks prove little until it is accepted' };
  }
  if (accepted) return { verdict: 'fail', note: notes('ACCEPTED', before) };
  if (answer.status !== expect.status) return { verdict: 'fail', note: notes(`expected status ${expect.status}`, before) };
  if (answer.error !== undefined && !expect.errors.includes(answer.error)) {
    return { verdict: 'fail', note: notes(`expected error ${expect.errors.join(' or ')}`, before) };
  }
  return { verdict: 'pass', note: notes(answer.error === undefined ? 'no error code given' : undefined, before) };
}

function describeExpected(expect: ExpectedAnswer): string {
  return expect.outcome === 'accepted' ? '2xx' : `${expect.status} ${expect.errors.join('|')}`;
}

function describeError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  const message = error instanceof Error ? error.message : String(error);
  return cause?.code ? `${message} (${cause.code})` : message;
}
