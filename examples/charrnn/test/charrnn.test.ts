import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '@shoal/core';
import {
  CharRnn, CharRnnContinuous, CharRnnStatic, END_TOKEN, VOCAB, buildCharRnnModel, checkInput, generateToCompletion, type GenerateInput,
} from '../app.ts';

/** A seeded mix of short and long requests with varied prompts, as the bench sends. */
function workload(n: number, seed: number): GenerateInput[] {
  const rand = seededRandom(seed);
  const prompts = ['', 'The ', 'hello world', 'a', 'Once upon a time', '42 + 17 = ', 'zzz'];
  return Array.from({ length: n }, () => ({
    prompt: prompts[Math.floor(rand() * prompts.length)]!,
    maxTokens: rand() < 0.75 ? 1 + Math.floor(rand() * 8) : 32 + Math.floor(rand() * 48),
  }));
}

async function text(it: AsyncIterable<string>): Promise<string> {
  let out = '';
  for await (const c of it) out += c;
  return out;
}

describe('charrnn', () => {
  const cont = new CharRnnContinuous();
  const stat = new CharRnnStatic();
  let alone: CharRnn;

  beforeAll(async () => {
    await Promise.all([cont.init(), stat.init()]);
    alone = await CharRnn.load();
  });
  afterAll(async () => {
    await cont.generate.close();
    await stat.complete.close();
    await Promise.all([cont.shutdown(), stat.shutdown(), alone.close()]);
  });

  it('static and continuous batching produce the same characters as each sequence run alone', async () => {
    const inputs = workload(40, 7);
    // Concurrent calls, so each sequence shares steps with different neighbours in the two deployments.
    const [continuous, statics] = await Promise.all([
      Promise.all(inputs.map((x) => text(cont.generate(x)))),
      Promise.all(inputs.map((x) => stat.complete(x))),
    ]);
    const single: string[] = [];
    for (const x of inputs) single.push((await generateToCompletion(alone, [x]))[0] as string);
    expect(continuous).toEqual(single);
    expect(statics).toEqual(single);
    // The batchers really batched: some steps held several sequences.
    expect(Object.keys(cont.generate.stats().batchSizeCounts).map(Number).some((n) => n > 1)).toBe(true);
    expect(Object.keys(stat.complete.stats().batchSizeCounts).map(Number).some((n) => n > 1)).toBe(true);
    for (const [x, t] of inputs.map((x, i) => [x, single[i]!] as const)) {
      expect(t.length).toBeLessThanOrEqual(x.maxTokens);
      expect(t).not.toContain('\n');
    }
    expect(single.some((t, i) => t.length === inputs[i]!.maxTokens && t.length > 30)).toBe(true);
  });

  it('is deterministic: the same seed builds the same model, another seed another one', () => {
    const a = buildCharRnnModel({ hidden: 64, seed: 3 });
    expect(Buffer.from(buildCharRnnModel({ hidden: 64, seed: 3 })).equals(Buffer.from(a))).toBe(true);
    expect(Buffer.from(buildCharRnnModel({ hidden: 64, seed: 4 })).equals(Buffer.from(a))).toBe(false);
    expect(VOCAB).toHaveLength(96);
    expect(VOCAB[END_TOKEN]).toBe('\n');
  });

  it('the same request twice gives the same text', async () => {
    const x = { prompt: 'Once upon a time', maxTokens: 40 };
    const [a, b] = await Promise.all([text(cont.generate(x)), text(cont.generate(x))]);
    expect(a).toBe(b);
    expect(await text(cont.generate(x))).toBe(a);
  });

  it('rejects bad input naming the field, in both deployments', async () => {
    expect(() => checkInput({ prompt: 'x', maxTokens: 0 })).toThrow('input.maxTokens must be in [1, 4096], got 0');
    expect(() => checkInput({ maxTokens: 3 })).toThrow('input.prompt must be a string, got undefined');
    await expect(text(cont.generate({ prompt: 'caf\u00e9', maxTokens: 3 }))).rejects.toThrow(/character "é" \(code 233\) is not in the vocabulary/);
    await expect(stat.complete({ prompt: 'x', maxTokens: 1.5 })).rejects.toThrow('input.maxTokens must be an integer, got 1.5');
    // A bad item fails alone; its batch mates are answered.
    const [bad, good] = await Promise.allSettled([stat.complete({ prompt: 'x', maxTokens: -1 }), stat.complete({ prompt: 'x', maxTokens: 4 })]);
    expect(bad.status).toBe('rejected');
    expect(good.status).toBe('fulfilled');
  });
});
