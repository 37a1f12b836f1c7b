/**
 * Who may watch the dashboard. A browser cannot send `Authorization: Bearer` on a navigation or an EventSource, so
 * the page is opened once with the cluster token in the query (`/dashboard?token=T`); the head answers with an
 * HttpOnly, SameSite=Strict cookie and a redirect to `/dashboard`, so the token leaves the address bar. The cookie
 * holds when it was issued and an HMAC of that under the token, not the token: `<iat>.<HMAC(token, "v1|" + iat)>`,
 * iat in epoch seconds. The head refuses it once it is older than DASHBOARD_COOKIE_MAX_AGE_S or issued further
 * in the future than DASHBOARD_COOKIE_SKEW_S, whatever the browser does with Max-Age; a new token voids every
 * cookie. It opens the dashboard's read-only routes and nothing else (the control API reads only the Authorization
 * header, so a cookie sent along with a forged request to it carries no weight).
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { tokenMatches } from '@shoal/protocol';

export const DASHBOARD_COOKIE = 'shoal_dashboard';
/** How long the cookie lasts: a working day, then the page is opened with the token again. */
export const DASHBOARD_COOKIE_MAX_AGE_S = 12 * 3600;
/** How far in the future a cookie's issue time may lie (clock steps between the head's own readings). */
export const DASHBOARD_COOKIE_SKEW_S = 60;

/** The cookie's value for a cluster token, issued at `nowMs` (epoch ms). */
export function dashboardSession(token: string, nowMs: number): string {
  const iat = Math.floor(nowMs / 1000);
  return `${iat}.${createHmac('sha256', token).update(`v1|${iat}`).digest('base64url')}`;
}

/** Whether a cookie's value is a session this token issued, not expired at `nowMs` (epoch ms). Constant-time. */
export function sessionValid(token: string, value: string, nowMs: number): boolean {
  const m = /^(\d{1,15})\./.exec(value);
  if (m === null) return false;
  const iat = Number(m[1]);
  const nowS = Math.floor(nowMs / 1000);
  if (nowS - iat > DASHBOARD_COOKIE_MAX_AGE_S || iat - nowS > DASHBOARD_COOKIE_SKEW_S) return false;
  return tokenMatches(dashboardSession(token, iat * 1000), value);
}

/** The Set-Cookie header that lets this browser watch the dashboard, issued at `nowMs` (epoch ms). */
export function sessionCookie(token: string, nowMs: number): string {
  return `${DASHBOARD_COOKIE}=${dashboardSession(token, nowMs)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${DASHBOARD_COOKIE_MAX_AGE_S}`;
}

/** One cookie's value from a Cookie header; undefined when absent. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * How a request proved it may watch: the session cookie (unexpired at `nowMs`, epoch ms), the cluster token as a
 * Bearer header, or not at all.
 */
export function dashboardCredential(req: IncomingMessage, token: string, nowMs: number): 'cookie' | 'bearer' | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') === true && tokenMatches(token, auth.slice(7))) return 'bearer';
  const cookie = cookieValue(req.headers.cookie, DASHBOARD_COOKIE);
  if (cookie !== undefined && sessionValid(token, cookie, nowMs)) return 'cookie';
  return undefined;
}
