/** `shoal logs` flags into the /api/logs query, without a cluster. */
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '@shoal/core';
import { logsPath, parseSince } from '../../packages/cli/src/logs.ts';

const NOW = Date.parse('2026-12-01T16:00:00.000Z');

describe('shoal logs flags', () => {
  it('--since takes a duration back from now or an ISO time', () => {
    expect(parseSince('10m', NOW)).toBe(NOW - 600_000);
    expect(parseSince('1.5h', NOW)).toBe(NOW - 5_400_000);
    expect(parseSince('250ms', NOW)).toBe(NOW - 250);
    expect(parseSince('2d', NOW)).toBe(NOW - 2 * 86_400_000);
    expect(parseSince('2026-12-01T15:00:00Z', NOW)).toBe(Date.parse('2026-12-01T15:00:00Z'));
    for (const bad of ['yesterday', '10', '-5m', '5 m', '1700000000000']) {
      expect(() => parseSince(bad, NOW), bad).toThrow(InvalidOptionError);
      expect(() => parseSince(bad, NOW), bad).toThrow(/--since: must be a duration back from now/);
    }
  });

  it('builds the query from the flags, and names the flag that is wrong', () => {
    expect(logsPath({}, NOW)).toBe('/api/logs');
    expect(logsPath({ deployment: 'shop/Ranker', since: '1m', level: 'warn', limit: '50', follow: true }, NOW))
      .toBe(`/api/logs?deployment=shop%2FRanker&since=${NOW - 60_000}&level=warn&limit=50&follow=1`);
    expect(logsPath({ deployment: 'Ranker', app: 'shop' }, NOW)).toBe('/api/logs?deployment=Ranker&app=shop');
    expect(() => logsPath({ deployment: 'shop/Ranker', app: 'blog' })).toThrow(/--app: contradicts --deployment shop\/Ranker/);
    expect(() => logsPath({ deployment: '/Ranker' })).toThrow(/--deployment: must be APP\/DEPLOYMENT or DEPLOYMENT/);
    expect(() => logsPath({ level: 'trace' })).toThrow(/--level: must be one of debug, info, warn, error/);
    expect(() => logsPath({ limit: '1e3' })).toThrow(/--limit: must be an integer from 1 to 10000/);
    expect(() => logsPath({ limit: '10001' })).toThrow(/--limit/);
  });
});
