/** The WebSocket front's messages (parsed strictly, every error naming what was wrong) and its options. */
import { describe, expect, it } from 'vitest';
import { BadRequestError, InvalidOptionError, ProtocolError, QueueFullError, UserCodeError } from '@shoal/core';
import { chunkMessage, endMessage, errorMessage, idJson, parseClientMessage, resultMessage, toJson, type WsBadMessage } from '../src/ws-messages.ts';
import { compileWebSocketOptions } from '../src/ws-options.ts';

function badOf(text: string): WsBadMessage {
  const m = parseClientMessage(text);
  expect(m.kind).toBe('bad');
  const b = m as WsBadMessage;
  expect(b.error).toBeInstanceOf(BadRequestError);
  expect(b.error.code).toBe('ERR_BAD_REQUEST');
  return b;
}

describe('parseClientMessage', () => {
  it('reads a call with its defaults, and with every field', () => {
    expect(parseClientMessage('{"id":"1","method":"generate"}')).toEqual({ kind: 'call', id: '1', method: 'generate', args: [] });
    expect(parseClientMessage('{"id":7,"method":"add","args":[1,2],"timeoutMs":250,"priority":-3}'))
      .toEqual({ kind: 'call', id: 7, method: 'add', args: [1, 2], timeoutMs: 250, priority: -3 });
  });

  it('reads a cancel', () => {
    expect(parseClientMessage('{"id":"x","cancel":true}')).toEqual({ kind: 'cancel', id: 'x' });
  });

  it('answers what is not a JSON object with a null id', () => {
    expect(badOf('not json').error.message).toMatch(/^WebSocket message is not JSON \(/);
    expect(badOf('[1,2]')).toMatchObject({ id: null, error: { message: 'WebSocket message must be a JSON object, got an array' } });
    expect(badOf('null').error.message).toBe('WebSocket message must be a JSON object, got null');
    expect(badOf('"hi"').error.message).toBe('WebSocket message must be a JSON object, got string');
  });

  it('needs an id: a string of 1-128 characters or a safe integer', () => {
    expect(badOf('{"method":"add"}')).toMatchObject({ id: null, error: { message: expect.stringContaining('has no "id"') } });
    expect(badOf('{"id":"","method":"add"}').error.message).toContain('field "id" must be a string of 1-128 characters or an integer, got ""');
    expect(badOf(`{"id":"${'a'.repeat(129)}","method":"add"}`).id).toBeNull();
    expect(badOf('{"id":1.5,"method":"add"}').error.message).toContain('got 1.5');
    expect(badOf('{"id":{"a":1},"method":"add"}').error.message).toContain('got {"a":1}');
    expect(parseClientMessage(`{"id":"${'a'.repeat(128)}","method":"m"}`).kind).toBe('call');
  });

  it('names an unknown field (a typo of an option is not ignored), answering to the message\'s id', () => {
    expect(badOf('{"id":"q","method":"add","timeout":5}')).toMatchObject({ id: 'q', error: { message: 'WebSocket message has an unknown field "timeout" (fields: id, method, args, timeoutMs, priority, cancel)' } });
  });

  it('checks each field of a call and of a cancel', () => {
    expect(badOf('{"id":"a"}').error.message).toBe('WebSocket message needs "method" (a call) or "cancel": true');
    expect(badOf('{"id":"a","method":""}').error.message).toBe('WebSocket message field "method" must be a non-empty string, got ""');
    expect(badOf('{"id":"a","method":3}').error.message).toContain('got 3');
    expect(badOf('{"id":"a","method":"m","args":"x"}').error.message).toBe('WebSocket message field "args" must be an array of arguments, got "x"');
    expect(badOf('{"id":"a","method":"m","timeoutMs":0}').error.message).toContain('"timeoutMs" must be a positive number of milliseconds, got 0');
    expect(badOf('{"id":"a","method":"m","timeoutMs":"5"}').error.message).toContain('got "5"');
    expect(badOf('{"id":"a","method":"m","priority":1.5}').error.message).toBe('WebSocket message field "priority" must be an integer, got 1.5');
    expect(badOf('{"id":"a","cancel":false}').error.message).toBe('WebSocket message field "cancel" must be true, got false');
    expect(badOf('{"id":"a","cancel":true,"method":"m"}').error.message).toBe('WebSocket message is a cancel and cannot also carry "method"');
  });

  it('shortens a long bad value in its message', () => {
    const m = badOf(`{"id":"a","method":"m","args":"${'z'.repeat(500)}"}`).error.message;
    expect(m.length).toBeLessThan(200);
    expect(m).toContain('...');
  });
});

describe('server messages', () => {
  const id = idJson('r1');

  it('splices the id\'s JSON into each answer', () => {
    expect(JSON.parse(chunkMessage(id, { tok: 'a' }))).toEqual({ id: 'r1', chunk: { tok: 'a' } });
    expect(JSON.parse(chunkMessage(idJson(5), 'tok'))).toEqual({ id: 5, chunk: 'tok' });
    expect(JSON.parse(resultMessage(id, 42))).toEqual({ id: 'r1', result: 42 });
    expect(JSON.parse(resultMessage(id, undefined))).toEqual({ id: 'r1', result: null });
    expect(JSON.parse(endMessage(id))).toEqual({ id: 'r1', end: true });
  });

  it('sends an error\'s code and message, never its details', () => {
    const err = new UserCodeError('boom', { userStack: 'at secret.ts:1' });
    expect(JSON.parse(errorMessage(id, err))).toEqual({ id: 'r1', error: { code: 'ERR_USER_CODE', message: 'boom' } });
    expect(JSON.parse(errorMessage(idJson(null), new QueueFullError('full', { inflight: 1 })))).toEqual({ id: null, error: { code: 'ERR_QUEUE_FULL', message: 'full' } });
    expect(JSON.parse(errorMessage(id, new Error('plain')))).toMatchObject({ error: { code: 'ERR_USER_CODE', message: expect.stringContaining('plain') } });
  });

  it('sends bytes as base64 at any depth and other typed arrays as numbers', () => {
    expect(JSON.parse(toJson(new Uint8Array([1, 2, 3])))).toBe('AQID');
    expect(JSON.parse(toJson(Buffer.from('hi')))).toBe('aGk=');
    expect(JSON.parse(toJson({ img: Buffer.from([255]), v: new Float32Array([0.5, 2]) }))).toEqual({ img: '/w==', v: [0.5, 2] });
    const view = new Uint8Array([9, 8, 7, 6]).subarray(1, 3);
    expect(JSON.parse(toJson([view]))).toEqual(['CAc=']);
  });

  it('refuses what JSON cannot hold with ERR_ENCODE', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => toJson(cyclic)).toThrow(ProtocolError);
    expect(() => toJson({ n: 1n })).toThrow(/cannot be sent as JSON over the WebSocket/);
    try { toJson(1n); } catch (e) { expect((e as ProtocolError).code).toBe('ERR_ENCODE'); }
  });
});

describe('compileWebSocketOptions', () => {
  it('fills every default', () => {
    expect(compileWebSocketOptions()).toEqual({ maxConnections: 10_000, maxInflightPerSocket: 64, maxBufferedBytes: 1024 * 1024, pingIntervalMs: 30_000, window: { chunks: 16, bytes: 1024 * 1024 } });
    expect(compileWebSocketOptions({ maxInflightPerSocket: 2, window: { chunks: 4, bytes: 4096 } })).toMatchObject({ maxInflightPerSocket: 2, window: { chunks: 4, bytes: 4096 } });
  });

  it('names the option path of a bad value, and of an unknown option', () => {
    expect(() => compileWebSocketOptions({ maxInflightPerSocket: 0 })).toThrow(InvalidOptionError);
    expect(() => compileWebSocketOptions({ maxInflightPerSocket: 0 })).toThrow(/websocket\.maxInflightPerSocket: must be between 1 and/);
    expect(() => compileWebSocketOptions({ maxBufferedBytes: 1.5 })).toThrow(/websocket\.maxBufferedBytes: must be an integer/);
    expect(() => compileWebSocketOptions({ window: { chunks: 5000, bytes: 1 } })).toThrow(/websocket\.window\.chunks: must be between 1 and 4096/);
    expect(() => compileWebSocketOptions({ window: 3 as never })).toThrow(/websocket\.window: must be \{chunks, bytes\}/);
    expect(() => compileWebSocketOptions({ maxSockets: 3 } as never, 'ingress.websocket')).toThrow(/ingress\.websocket\.maxSockets: is not an option/);
  });
});
