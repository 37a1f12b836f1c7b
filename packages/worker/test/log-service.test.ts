import { describe, expect, it } from 'vitest';
import { FakeClock, LogRing, type LogMeta, type WireError } from '@shoal/core';
import type { Message } from '@shoal/protocol';
import { WorkerLogService, type LogServicePeer } from '../src/log-service.ts';

const meta = (timeMs: number): LogMeta => ({ timeMs, level: 30, app: 'a', deployment: 'D', tagged: false });

class FakeHead implements LogServicePeer {
  closed = false;
  congested = false;
  readonly sent: Message[] = [];
  readonly replies: Array<{ id: number; value?: unknown; error?: WireError }> = [];
  send(m: Message): void { this.sent.push(m); }
  reply(id: number, value: unknown): void { this.replies.push({ id, value }); }
  replyError(id: number, error: WireError): void { this.replies.push({ id, error }); }
}

describe('WorkerLogService', () => {
  it('answers a query from the ring, tagged with the worker id; a bad filter is an error reply naming it', () => {
    const ring = new LogRing();
    ring.push('{"msg":"x"}', meta(1));
    const svc = new WorkerLogService(ring, () => 'w7');
    const head = new FakeHead();
    svc.handle({ t: 'logs', id: 1, filter: { deployment: 'D' } }, head);
    svc.handle({ t: 'logs', id: 2, filter: { level: 'loud' as never } }, head);
    expect(head.replies[0]).toEqual({ id: 1, value: { lines: [[1, '{"worker":"w7","msg":"x"}']], more: 0 } });
    expect(head.replies[1]!.error?.message).toMatch(/filter\.level: must be one of/);
  });

  it('follows: pushes batches, drops them while the connection is congested and says how many, stops on logsUnfollow', () => {
    const clock = new FakeClock();
    const ring = new LogRing({ clock });
    const svc = new WorkerLogService(ring, () => 'w7');
    const head = new FakeHead();
    svc.handle({ t: 'logsFollow', id: 1, sub: 9, filter: { sinceMs: 0, limit: 5 } }, head);
    expect(head.replies).toEqual([{ id: 1, value: { lines: [], more: 0 } }]);
    ring.push('{"msg":"a"}', meta(1));
    clock.advance(100);
    expect(head.sent).toEqual([{ t: 'logsPush', sub: 9, lines: [[1, '{"worker":"w7","msg":"a"}']] }]);
    head.congested = true;
    ring.push('{"msg":"b"}', meta(2));
    ring.push('{"msg":"c"}', meta(3));
    clock.advance(100);
    expect(head.sent).toHaveLength(1);
    head.congested = false;
    ring.push('{"msg":"d"}', meta(4));
    clock.advance(100);
    expect(head.sent[1]).toEqual({ t: 'logsPush', sub: 9, lines: [[4, '{"worker":"w7","msg":"d"}']], dropped: 2 });
    svc.handle({ t: 'logsUnfollow', sub: 9 }, head);
    expect(ring.followerCount).toBe(0);
  });

  it('a follow whose connection closed ends at its next batch', () => {
    const clock = new FakeClock();
    const ring = new LogRing({ clock });
    const svc = new WorkerLogService(ring, () => 'w7');
    const head = new FakeHead();
    svc.handle({ t: 'logsFollow', id: 1, sub: 1, filter: {} }, head);
    head.closed = true;
    ring.push('{"msg":"a"}', meta(1));
    clock.advance(100);
    expect(head.sent).toEqual([]);
    expect(ring.followerCount).toBe(0);
  });

  it('ends every follow of a connection when it closes, even with no line to deliver, and only that connection\'s', () => {
    const ring = new LogRing({ clock: new FakeClock() });
    const svc = new WorkerLogService(ring, () => 'w7');
    const gone = new FakeHead();
    const other = new FakeHead();
    svc.handle({ t: 'logsFollow', id: 1, sub: 1, filter: {} }, gone);
    svc.handle({ t: 'logsFollow', id: 2, sub: 2, filter: { deployment: 'D' } }, gone);
    svc.handle({ t: 'logsFollow', id: 1, sub: 1, filter: {} }, other);
    expect(ring.followerCount).toBe(3);
    gone.closed = true;
    svc.closePeer(gone);
    expect(ring.followerCount).toBe(1);
    expect([svc.followCount(gone), svc.followCount(other)]).toEqual([0, 1]);
    // A follow arriving on the closed connection afterwards is not kept.
    svc.handle({ t: 'logsFollow', id: 3, sub: 3, filter: {} }, gone);
    expect(ring.followerCount).toBe(1);
  });
});
