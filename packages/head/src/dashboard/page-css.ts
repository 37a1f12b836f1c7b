/** The dashboard's stylesheet, served at /dashboard/app.css (a module, not a file: it ships in src and dist alike). */
export const DASHBOARD_CSS = String.raw`
:root {
  --bg: #f5f6f8; --card: #ffffff; --ink: #1d2330; --muted: #6b7280; --line: #e3e6eb; --accent: #2563eb;
  --ok: #2e9d5b; --warn: #e0a526; --bad: #d64545; --info: #5b7bd5; --idle: #9aa0a6;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 20px; background: #111827; color: #f9fafb; }
header h1 { margin: 0; font-size: 18px; letter-spacing: .5px; }
header .addr { font-family: var(--mono); font-size: 12px; color: #cbd5e1; }
header .spacer { flex: 1; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; font-weight: 600; background: var(--idle); color: #fff; }
.pill.live { background: var(--ok); } .pill.down { background: var(--bad); }
main { padding: 16px 20px 40px; max-width: 1500px; margin: 0 auto; }
section { margin-top: 18px; }
section > h2 { font-size: 15px; margin: 0 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .6px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 10px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.tile .label { color: var(--muted); font-size: 12px; }
.tile .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile svg { display: block; margin-top: 4px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; margin-bottom: 12px; }
.card h3 { margin: 0 0 8px; font-size: 16px; }
.card h3 .sub { font-weight: 400; color: var(--muted); font-size: 13px; margin-left: 8px; font-family: var(--mono); }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 7px; border-bottom: 1px solid var(--line); vertical-align: middle; white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
tr.dep { cursor: pointer; } tr.dep:hover { background: #f0f4ff; } tr.dep.selected { background: #e6eeff; }
a { color: var(--accent); text-decoration: none; }
.status { font-weight: 600; font-size: 12px; }
.status.HEALTHY, .status.RUNNING, .status.ALIVE { color: var(--ok); }
.status.UPDATING, .status.STARTING, .status.DRAINING, .status.DISCONNECTED { color: var(--warn); }
.status.UNHEALTHY, .status.FAILED, .status.DEAD { color: var(--bad); }
.status.STOPPED { color: var(--idle); }
.muted { color: var(--muted); }
.mono { font-family: var(--mono); font-size: 12px; }
.cell-chart { display: flex; align-items: center; gap: 6px; justify-content: flex-end; }
.alert { color: var(--bad); font-weight: 700; }
.okay { color: var(--ok); }
.workers { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 10px; }
.meter { height: 8px; background: #edf0f4; border-radius: 4px; overflow: hidden; margin: 3px 0 6px; }
.meter > div { height: 100%; background: var(--info); }
.kv { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; font-size: 13px; }
.kv .k { color: var(--muted); }
.detail-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
.legend { display: flex; gap: 12px; font-size: 12px; color: var(--muted); margin-top: 2px; }
.legend i { display: inline-block; width: 10px; height: 3px; vertical-align: middle; margin-right: 4px; }
.empty { color: var(--muted); padding: 20px; text-align: center; }
.close { float: right; font-size: 13px; }
.scroll { overflow-x: auto; }
.card.wide { grid-column: 1 / -1; }
.error-text { color: var(--bad); font-size: 12px; white-space: normal; max-width: 420px; }
`;
