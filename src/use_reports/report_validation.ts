import { isUseRefusalReason, VERIFIER_ERROR_CODES } from '../resource_server/index.js';
import type { UseEventInput } from '../ledger/use_events.js';
import { parseStrictJson } from '../text/strict_json.js';

/**
 * The body of a use report (docs/use-reports.md#the-report), read strictly: every member typed,
 * none unknown or duplicated, the reason one of the package's vocabulary, times parseable, not older
 * than `useReports.maxEventAge` and not ahead of Tether's clock. A report is taken whole or not at
 * all; the detail of a refusal goes to the log, never to the caller's answer.
 */

/** Most bytes of one report (1 000 events of the longest kind fit). */
export const MAX_REPORT_BYTES = 1_048_576;
/** Most events in one report (the package's MAX_EVENTS_PER_REPORT). */
export const MAX_REPORT_EVENTS = 1000;
/** How far ahead of Tether's clock a reported time may be (the API's clock drifts; more is a lie). */
export const MAX_CLOCK_AHEAD_MS = 60_000;
/** Most presentations one entry may stand for. */
const MAX_COUNT = 1_000_000;

export interface UseReport {
  resource: string;
  events: UseEventInput[];
  /** The reporter's id for this report, kept when it sends the same report again (taken once). */
  reportId?: string;
}

/** A report id: what `crypto.randomUUID()` makes, or any 16 to 64 URL-safe characters. */
const REPORT_ID = /^[A-Za-z0-9_-]{16,64}$/;

/** Why a report is invalid; `message` is for the log. */
export class InvalidReport extends Error {}

/** Identifiers as the verifier reports them (package MAX_CLAIMED_LENGTH): visible ASCII and spaces, at most 256. */
const IDENTIFIER = /^[\x20-\x7E]{1,256}$/;
/** RFC 6749 §3.3 scope tokens separated by single spaces, or nothing. */
const SCOPES = /^(?:[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*)?$/;
const RESOURCE = /^[\x21-\x7E]{1,2048}$/;
const BINDINGS = new Set(['mtls', 'dpop', 'bearer']);
const EVENT_MEMBERS = new Set(['at', 'outcome', 'reason', 'code', 'token_id', 'client_id', 'token_audience', 'scopes', 'binding', 'count']);

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

function optionalString(event: Json, name: string, pattern: RegExp, at: string): string | undefined {
  const value = event[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !pattern.test(value)) throw new InvalidReport(`${at}.${name} is not a valid value`);
  return value;
}

/** RFC 3339 date-time (what `Date#toISOString` writes), parsed. */
function timeOf(value: unknown, at: string, limits: { now: number; maxAgeMs: number }): Date {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/.test(value)) {
    throw new InvalidReport(`${at}.at is not an RFC 3339 date-time`);
  }
  const time = Date.parse(value);
  if (!Number.isFinite(time)) throw new InvalidReport(`${at}.at is not a date`);
  if (time > limits.now + MAX_CLOCK_AHEAD_MS) throw new InvalidReport(`${at}.at is in the future`);
  if (time < limits.now - limits.maxAgeMs) throw new InvalidReport(`${at}.at is older than useReports.maxEventAge`);
  return new Date(time);
}

function eventOf(value: unknown, index: number, limits: { now: number; maxAgeMs: number }): UseEventInput {
  const at = `events[${index}]`;
  if (!isObject(value)) throw new InvalidReport(`${at} is not an object`);
  const unknown = Object.keys(value).find((name) => !EVENT_MEMBERS.has(name));
  if (unknown !== undefined) throw new InvalidReport(`${at} has an unknown member ${JSON.stringify(unknown)}`);
  const { outcome, reason, code, count, scopes, binding } = value;
  if (outcome !== 'accepted' && outcome !== 'refused') throw new InvalidReport(`${at}.outcome must be accepted or refused`);
  if (outcome === 'refused' && !isUseRefusalReason(reason)) throw new InvalidReport(`${at}.reason is not a known refusal reason`);
  if (outcome === 'accepted' && (reason !== undefined || code !== undefined)) throw new InvalidReport(`${at}: an accepted presentation has no reason or code`);
  if (code !== undefined && !(typeof code === 'string' && Object.hasOwn(VERIFIER_ERROR_CODES, code))) throw new InvalidReport(`${at}.code is not a verifier error code`);
  if (!(typeof count === 'number' && Number.isInteger(count) && count >= 1 && count <= MAX_COUNT)) throw new InvalidReport(`${at}.count must be an integer from 1 to ${MAX_COUNT}`);
  if (typeof scopes !== 'string' || scopes.length > 1024 || !SCOPES.test(scopes)) throw new InvalidReport(`${at}.scopes must be space-separated scope tokens`);
  if (binding !== undefined && !(typeof binding === 'string' && BINDINGS.has(binding))) throw new InvalidReport(`${at}.binding must be mtls, dpop or bearer`);
  const tokenId = optionalString(value, 'token_id', IDENTIFIER, at);
  const clientId = optionalString(value, 'client_id', IDENTIFIER, at);
  // An accepted token was verified: it has both (RFC 9068 §2.2).
  if (outcome === 'accepted' && (tokenId === undefined || clientId === undefined)) throw new InvalidReport(`${at}: an accepted presentation names its token_id and client_id`);
  return {
    occurredAt: timeOf(value.at, at, limits),
    outcome,
    ...(outcome === 'refused' ? { reason: reason as UseEventInput['reason'] } : {}),
    ...(code === undefined ? {} : { code: code as string }),
    tokenId,
    clientId,
    tokenAudience: optionalString(value, 'token_audience', IDENTIFIER, at),
    scopesRequired: scopes,
    bindingMethod: binding as UseEventInput['bindingMethod'],
    count,
  };
}

/** Parses and checks one report; throws {@link InvalidReport}. */
export function parseUseReport(text: string, limits: { now: number; maxEventAgeSeconds: number }): UseReport {
  let body: unknown;
  try {
    body = parseStrictJson(text);
  } catch (error) {
    throw new InvalidReport(`the body is not JSON with unique members: ${(error as Error).message}`);
  }
  if (!isObject(body)) throw new InvalidReport('the body is not a JSON object');
  const unknown = Object.keys(body).find((name) => name !== 'resource' && name !== 'events' && name !== 'report_id');
  if (unknown !== undefined) throw new InvalidReport(`unknown member ${JSON.stringify(unknown)}`);
  const { resource, events, report_id: reportId } = body;
  if (reportId !== undefined && !(typeof reportId === 'string' && REPORT_ID.test(reportId))) throw new InvalidReport('report_id must be 16 to 64 URL-safe characters');
  if (typeof resource !== 'string' || !RESOURCE.test(resource)) throw new InvalidReport('resource must be a resource URI');
  if (!Array.isArray(events) || events.length === 0) throw new InvalidReport('events must be a non-empty array');
  if (events.length > MAX_REPORT_EVENTS) throw new InvalidReport(`more than ${MAX_REPORT_EVENTS} events`);
  const eventLimits = { now: limits.now, maxAgeMs: limits.maxEventAgeSeconds * 1000 };
  return {
    resource,
    events: events.map((event, index) => eventOf(event, index, eventLimits)),
    ...(reportId === undefined ? {} : { reportId: reportId as string }),
  };
}
