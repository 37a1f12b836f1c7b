import { describe, expect, test } from 'vitest';
import { InvalidOptionError } from '@shoal/core';
import { compileOrtPoolOptions } from '../src/options.ts';
import { sessionConfigEntries } from '../src/thread-protocol.ts';

describe('ORT thread layout defaults', () => {
  test('spinning is off by default: both ORT pools get allow_spinning = "0"', () => {
    const compiled = compileOrtPoolOptions({ model: 'model.onnx' });
    expect(compiled.spinning).toBe(false);
    expect(compiled.interOpThreads).toBe(1);
    expect(sessionConfigEntries(compiled)).toEqual({ 'session.intra_op.allow_spinning': '0', 'session.inter_op.allow_spinning': '0' });
  });

  test('spinning: true turns both back on', () => {
    const compiled = compileOrtPoolOptions({ model: 'model.onnx', spinning: true });
    expect(sessionConfigEntries(compiled)).toEqual({ 'session.intra_op.allow_spinning': '1', 'session.inter_op.allow_spinning': '1' });
  });

  test('a non-boolean spinning is refused with the option named', () => {
    expect(() => compileOrtPoolOptions({ model: 'model.onnx', spinning: 'yes' as unknown as boolean })).toThrow(InvalidOptionError);
    expect(() => compileOrtPoolOptions({ model: 'model.onnx', spinning: 1 as unknown as boolean })).toThrow(/spinning/);
  });
});
