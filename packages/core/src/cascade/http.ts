/**
 * The HTTP contract of a cascade that is an application's ingress: POST a JSON body, which becomes the one
 * argument of `small.<method>(body)` (and of the large model's, on escalation); the answer comes back as JSON, with
 * headers saying which model gave it. GET <prefix>/stats answers this replica's cascadeStats().
 */
import { HttpError, HttpResponse, response, type ShoalRequest } from '../http.ts';
import type { CascadeAnswer } from './runner.ts';
import type { CascadeStatsJson } from './stats.ts';

/** 'small' or 'large': the model whose answer the body is. */
export const CASCADE_MODEL_HEADER = 'x-shoal-cascade-model';
/** The small model's confidence, absent when it failed or gave an invalid one. */
export const CASCADE_CONFIDENCE_HEADER = 'x-shoal-cascade-confidence';
/** Why the large model was asked (low_confidence, small_error, invalid_confidence), absent when it was not. */
export const CASCADE_ESCALATION_HEADER = 'x-shoal-cascade-escalation';

const USAGE = 'POST a JSON body (passed as the one argument of the models\' method); GET /stats for the cascade\'s counters';

export async function serveCascadeHttp(
  req: ShoalRequest,
  run: (args: unknown[]) => Promise<CascadeAnswer>,
  envelope: boolean,
  stats: () => CascadeStatsJson,
): Promise<HttpResponse> {
  if (req.method === 'GET' && req.path === '/stats') return response(stats());
  if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${req.path} is not served; ${USAGE}`);
  if (req.body.byteLength === 0) throw new HttpError(400, `the request has no body; ${USAGE}`);
  const result = await run([req.json()]);
  const headers: Record<string, string> = { 'content-type': 'application/json', [CASCADE_MODEL_HEADER]: result.model };
  if (result.confidence !== null) headers[CASCADE_CONFIDENCE_HEADER] = String(result.confidence);
  if (result.escalation !== null) headers[CASCADE_ESCALATION_HEADER] = result.escalation;
  return new HttpResponse(200, JSON.stringify(envelope ? result : result.answer) ?? 'null', headers);
}
