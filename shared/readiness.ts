// The one shape of `/readyz`, whichever process answers it (the API's route, the worker's and the
// webhook sender's health listener): 200 `{status: 'ready', checks}` when every check says `ok`,
// else 503 problem+json (`service_unavailable`) carrying the same `checks`, so a probe or an
// operator reads every process the same way. A process may add members of its own (the worker
// names its model and the jobs it holds). The API documents it in openapi.yaml from these schemas.
import { z } from 'zod';

/** Each dependency check must answer within this. */
export const READINESS_CHECK_TIMEOUT_MS = 1000;

/** A check's result: `ok`, or why it failed (the error message, `loading`, `starting`). */
export const CheckResult = z.string();
export type ReadinessChecks = Record<string, string>;

/** The 200 body, over a process's own set of checks. */
export function readyBodySchema<C extends z.ZodType<ReadinessChecks>>(checks: C) {
  return z.object({ status: z.literal('ready'), checks });
}

/** What every 503 from `/readyz` has in common (the API adds `instance` and `request_id`). */
export const NotReadyProblem = z.object({
  type: z.literal('urn:easel:problem:service_unavailable'),
  title: z.string(),
  status: z.literal(503),
  detail: z.string(),
  code: z.literal('service_unavailable'),
  instance: z.string(),
  checks: z.record(z.string(), CheckResult),
});
export const ReadyBody = readyBodySchema(z.record(z.string(), CheckResult));

export type ReadyBody = z.infer<typeof ReadyBody> & Record<string, unknown>;
export type NotReadyProblem = z.infer<typeof NotReadyProblem> & Record<string, unknown>;

/** Runs one probe within the deadline: 'ok', or why not. Never throws. */
export async function runCheck(
  probe: () => Promise<unknown>,
  timeoutMs = READINESS_CHECK_TIMEOUT_MS,
): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const silence = new Promise<'silent'>((resolve) => {
    timer = setTimeout(() => resolve('silent'), timeoutMs);
  });
  try {
    // race subscribes to the probe, so its late rejection is handled, not an unhandled rejection.
    const answer = await Promise.race([probe().then(() => 'ok' as const), silence]);
    return answer === 'ok' ? 'ok' : `no answer within ${timeoutMs} ms`;
  } catch (error) {
    return error instanceof Error ? error.message || error.name : String(error);
  } finally {
    clearTimeout(timer);
  }
}

/** The names of the checks that did not answer `ok`, in order. */
export function failedChecks(checks: ReadinessChecks): string[] {
  return Object.entries(checks)
    .filter(([, result]) => result !== 'ok')
    .map(([name]) => name);
}

/** The 503 problem's `detail`: which checks failed. */
export function notReadyDetail(checks: ReadinessChecks): string {
  return `Not ready: ${failedChecks(checks).join(', ')}.`;
}

/** The answer to `/readyz` for a listener without an error catalogue of its own (shared/health-server.ts). */
export function readinessAnswer(
  checks: ReadinessChecks,
  details: Record<string, unknown> = {},
): { status: 200; body: ReadyBody } | { status: 503; body: NotReadyProblem } {
  if (failedChecks(checks).length === 0)
    return { status: 200, body: { status: 'ready', checks, ...details } };
  return {
    status: 503,
    body: {
      type: 'urn:easel:problem:service_unavailable',
      title: 'Service temporarily unavailable',
      status: 503,
      detail: notReadyDetail(checks),
      code: 'service_unavailable',
      instance: '/readyz',
      checks,
      ...details,
    },
  };
}
