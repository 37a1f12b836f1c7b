/**
 * The dashboard's routes on the head's control port:
 *
 *   GET /dashboard?token=T      sets the session cookie (auth.ts) and redirects to /dashboard
 *   GET /dashboard              the page (with the cookie; without it, a page that says how to sign in)
 *   GET /dashboard/app.js, .css the page's script and stylesheet (no data in them: served to anyone)
 *   GET /api/dashboard/events   Server-Sent Events, one snapshot a second (cookie or Authorization: Bearer)
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NotFoundError, UnauthorizedError, realClock, type Clock, type Logger } from '@shoal/core';
import { tokenMatches } from '@shoal/protocol';
import { sendError, sendJson } from '@shoal/ingress';
import { dashboardCredential, sessionCookie } from './auth.ts';
import { DashboardFeed, type DashboardFeedOptions } from './feed.ts';
import { DASHBOARD_HTML, DASHBOARD_SECURITY_HEADERS, signInPage } from './page.ts';
import { DASHBOARD_CSS } from './page-css.ts';
import { DASHBOARD_JS } from './page-js.ts';

export const DASHBOARD_PATH = '/dashboard';
export const DASHBOARD_EVENTS_PATH = '/api/dashboard/events';

export interface DashboardOptions {
  /** The cluster token: what opens a session, and what the session cookie is derived from. */
  token: string;
  logger: Logger;
  source: DashboardFeedOptions['source'];
  clock?: Clock;
  /** @see DashboardFeedOptions.intervalMs */
  intervalMs?: number;
  /** @see DashboardFeedOptions.maxClients */
  maxClients?: number;
}

/** Whether a path is the dashboard's to answer (the control API hands these over before it checks a token). */
export function isDashboardPath(pathname: string): boolean {
  return pathname === DASHBOARD_PATH || pathname.startsWith(`${DASHBOARD_PATH}/`) || pathname.startsWith('/api/dashboard/');
}

const ASSETS: Readonly<Record<string, { type: string; body: string }>> = {
  [`${DASHBOARD_PATH}/app.js`]: { type: 'text/javascript; charset=utf-8', body: DASHBOARD_JS },
  [`${DASHBOARD_PATH}/app.css`]: { type: 'text/css; charset=utf-8', body: DASHBOARD_CSS },
};

export class Dashboard {
  readonly feed: DashboardFeed;

  constructor(private readonly opts: DashboardOptions) {
    this.feed = new DashboardFeed({
      source: opts.source, logger: opts.logger,
      ...(opts.clock !== undefined ? { clock: opts.clock } : {}),
      ...(opts.intervalMs !== undefined ? { intervalMs: opts.intervalMs } : {}),
      ...(opts.maxClients !== undefined ? { maxClients: opts.maxClients } : {}),
    });
  }

  /** Answers a request for a path isDashboardPath() accepts. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): void {
    try {
      this.route(req, res, url);
    } catch (err) {
      req.resume();
      sendError(res, err);
    }
  }

  /** Ends every page's stream (the head is stopping). */
  close(): void {
    this.feed.close();
  }

  private route(req: IncomingMessage, res: ServerResponse, url: URL): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      req.resume();
      sendJson(res, 405, { error: `the dashboard answers GET only, not ${req.method} ${url.pathname}`, code: 'ERR_METHOD_NOT_ALLOWED' }, { allow: 'GET, HEAD' });
      return;
    }
    const path = url.pathname === `${DASHBOARD_PATH}/` ? DASHBOARD_PATH : url.pathname;
    const asset = ASSETS[path];
    if (asset !== undefined) { this.send(req, res, 200, asset.type, asset.body); return; }
    if (path === DASHBOARD_PATH) { this.page(req, res, url); return; }
    if (path === DASHBOARD_EVENTS_PATH) {
      if (dashboardCredential(req, this.opts.token, this.wallNow()) === undefined) {
        throw new UnauthorizedError(`no dashboard session: open ${DASHBOARD_PATH}?token=<cluster token> first, or send "Authorization: Bearer <token>"`);
      }
      // HEAD learns the stream's type without holding a connection open for snapshots it would never get.
      if (req.method === 'HEAD') { req.resume(); res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' }).end(); return; }
      this.feed.attach(req, res);
      return;
    }
    throw new NotFoundError(`no dashboard endpoint GET ${url.pathname}`);
  }

  private page(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const given = url.searchParams.get('token');
    if (given !== null) {
      if (!tokenMatches(this.opts.token, given)) {
        this.opts.logger.warn('dashboard sign-in refused', { remote: req.socket.remoteAddress, reason: 'wrong token' });
        this.send(req, res, 401, 'text/html; charset=utf-8', signInPage('Wrong cluster token.'));
        return;
      }
      // 303 to the bare address: the token leaves the address bar and the history; the cookie carries the session.
      req.resume();
      res.writeHead(303, { location: DASHBOARD_PATH, 'set-cookie': sessionCookie(this.opts.token, this.wallNow()), 'cache-control': 'no-store', 'content-length': 0, ...DASHBOARD_SECURITY_HEADERS }).end();
      return;
    }
    if (dashboardCredential(req, this.opts.token, this.wallNow()) === undefined) {
      this.send(req, res, 401, 'text/html; charset=utf-8', signInPage('Sign in to the shoal dashboard.'));
      return;
    }
    this.send(req, res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
  }

  /** Wall time, for the session cookie's issue and expiry. */
  private wallNow(): number {
    return (this.opts.clock ?? realClock).wallNow();
  }

  private send(req: IncomingMessage, res: ServerResponse, status: number, type: string, body: string): void {
    req.resume();
    res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache', ...DASHBOARD_SECURITY_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}
