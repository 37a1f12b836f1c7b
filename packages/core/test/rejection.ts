/** What `p` rejects with; fails the test when it resolves. For tests that check an error's fields, not only its message. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
