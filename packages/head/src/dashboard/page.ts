/**
 * The dashboard's HTML: a shell the script fills from the event stream, and the page a browser gets without a
 * session. Script and stylesheet are served from the head itself (/dashboard/app.js, /dashboard/app.css), so the
 * page needs nothing outside and runs under a strict Content-Security-Policy (no inline script, no other origin).
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>shoal dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/app.css">
</head>
<body>
<header>
  <h1>shoal</h1>
  <span class="addr" id="cluster-addr"></span>
  <span class="spacer"></span>
  <span class="addr" id="updated"></span>
  <span class="pill" id="conn" data-testid="conn">connecting</span>
</header>
<main id="main"><div class="empty">Waiting for the first snapshot from the head…</div></main>
<script src="/dashboard/app.js"></script>
</body>
</html>
`;

/** Headers of every dashboard document and asset. */
export const DASHBOARD_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** What a browser without a session sees: why, and how to open the dashboard. */
export function signInPage(reason: string): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>shoal dashboard: sign in</title><link rel="icon" href="data:,"><link rel="stylesheet" href="/dashboard/app.css"></head>
<body>
<header><h1>shoal</h1></header>
<main><div class="card">
<h3>${escapeHtml(reason)}</h3>
<p>Open the dashboard with the cluster token once: <span class="mono">/dashboard?token=&lt;token&gt;</span>
(<span class="mono">shoal start</span> and <span class="mono">shoal run</span> print the whole address).
The head then keeps this browser signed in with a cookie for 12 hours and takes the token out of the address.</p>
</div></main>
</body>
</html>
`;
}
