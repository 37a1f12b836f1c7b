/**
 * Who may watch the dashboard. A browser cannot send `Authorization: Bearer` on a navigation or an EventSource, so
 * the page is opened once with the cluster token in the query (`/dashboard?token=T`); the head answers with an
 * HttpOnly, SameSite=Strict cookie and a redirect to `/dashboard`, so the token leaves the address bar. The cookie
 * holds an HMAC of the token, not the token: it opens the dashboard's read-only routes and nothing else (the control
 * API reads only the Authorization header, so a cookie sent along with a forged request to it carries no weight).
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { tokenMatches } from '@shoal/protocol';

export const DASHBOARD_COOKIE = 'shoal_dashboard';
/** How long the cookie lasts: a working day, then the page is opened with the token again. */
export const DASHBOARD_COOKIE_MAX_AGE_S = 12 * 3600;

/** The cookie's value for a cluster token. */
export function dashboardSession(token: string): string {
  return createHmac('sha256', token).update('shoal dashboard session v1').digest('base64url');
}

/** The Set-Cookie header that lets this browser watch the dashboard. */
export function sessionCookie(token: string): string {
  return `${DASHBOARD_COOKIE}=${dashboardSession(token)}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${DASHBOARD_COOKIE_MAX_AGE_S}`;
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

/** How a request proved it may watch: the session cookie, the cluster token as a Bearer header, or not at all. */
export function dashboardCredential(req: IncomingMessage, token: string): 'cookie' | 'bearer' | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') === true && tokenMatches(token, auth.slice(7))) return 'bearer';
  const cookie = cookieValue(req.headers.cookie, DASHBOARD_COOKIE);
  if (cookie !== undefined && tokenMatches(dashboardSession(token), cookie)) return 'cookie';
  return undefined;
}
