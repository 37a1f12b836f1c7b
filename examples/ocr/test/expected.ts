/** The text each committed test image shows, line by line, top to bottom: what OCR must read back exactly. */
export const EXPECTED_TEXT: Readonly<Record<string, readonly string[]>> = {
  'hello.png': ['hello world'],
  'date.png': ['2026-11-24'],
  'two-lines.png': ['Serving models', 'at scale 42'],
  'price.jpg': ['price 19.99'],
  'tilted.png': ['tilted text 7'],
  'upside-down.png': ['upside-down'],
};
