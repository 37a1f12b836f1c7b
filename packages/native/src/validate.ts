/** Argument checks for the native surface: TypeError for the wrong type, RangeError for the wrong value, naming the argument. */

export function checkBytes(name: string, value: unknown, min: number): asserts value is number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer >= ${min}, got ${value}`);
}

export function checkName(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${typeof value}`);
  if (value === '' || value.length > 180) throw new RangeError(`${name} must be 1..180 characters, got ${JSON.stringify(value.slice(0, 40))}`);
}

export function checkDevice(value: unknown, count: number): asserts value is number {
  if (typeof value !== 'number') throw new TypeError(`device must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < 0 || value >= count) throw new RangeError(`device must be an integer in [0, ${count}), got ${value}`);
}
