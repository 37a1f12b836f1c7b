/**
 * The ordered store behind the batcher: items grouped by shape (or padded bucket) key, and within a group by
 * priority level, with a delayed lane per level for items whose queue timeout passed under the DELAY action.
 * Order of service inside a group: level 0 normal, level 0 delayed, level 1 normal, ... and arrival order
 * within a lane. Every operation is O(1) except picking among groups (O(groups)) and taking a batch (O(n + lanes)).
 */

/** A queued value's place in the store; hand it back to remove or delay that value. */
export interface QueueNode<T> {
  readonly value: T;
  readonly groupKey: string;
  readonly level: number;
  readonly enqueuedAt: number;
  /** True once moved behind the normal lane of its level. */
  readonly delayed: boolean;
  /** Arrival order into its lane; across groups the smaller one at the same lane index goes first. */
  readonly laneSeq: number;
}

interface Node<T> extends QueueNode<T> {
  delayed: boolean;
  laneSeq: number;
  prev: Node<T> | undefined;
  next: Node<T> | undefined;
  lane: Lane<T> | undefined;
}

interface Lane<T> {
  head: Node<T> | undefined;
  tail: Node<T> | undefined;
}

interface Group<T> {
  readonly key: string;
  /** Index = level * 2 + (delayed ? 1 : 0). */
  readonly lanes: Lane<T>[];
  size: number;
}

/** What the batcher needs to know about one group to decide whether and in what order to dispatch it. */
export interface GroupView {
  readonly key: string;
  readonly size: number;
  /** Arrival time of the oldest item in the group: a partial batch's wait counts from it. */
  readonly oldestEnqueuedAt: number;
  /** Lane index of the group's next item (lower goes first). */
  readonly headLane: number;
  /** laneSeq of the group's next item (lower goes first at equal headLane). */
  readonly headSeq: number;
}

export class PendingQueue<T> {
  private readonly groups = new Map<string, Group<T>>();
  private readonly perLevel: number[];
  private total = 0;
  private seq = 0;

  constructor(readonly levels: number) {
    this.perLevel = new Array<number>(levels).fill(0);
  }

  get size(): number {
    return this.total;
  }

  /** Queued items per priority level (index = level). */
  sizeByLevel(): number[] {
    return [...this.perLevel];
  }

  add(value: T, groupKey: string, level: number, enqueuedAt: number, delayed = false): QueueNode<T> {
    if (!Number.isInteger(level) || level < 0 || level >= this.levels) throw new RangeError(`priority level ${level} outside [0, ${this.levels - 1}]`);
    let group = this.groups.get(groupKey);
    if (group === undefined) {
      group = { key: groupKey, lanes: Array.from({ length: this.levels * 2 }, () => ({ head: undefined, tail: undefined })), size: 0 };
      this.groups.set(groupKey, group);
    }
    const node: Node<T> = { value, groupKey, level, enqueuedAt, delayed, laneSeq: 0, prev: undefined, next: undefined, lane: undefined };
    this.append(group, node);
    group.size++;
    this.total++;
    this.perLevel[level] = (this.perLevel[level] ?? 0) + 1;
    return node;
  }

  /** Removes a queued node; a node no longer queued is ignored. Returns whether it was queued. */
  remove(handle: QueueNode<T>): boolean {
    const node = handle as Node<T>;
    const group = this.groups.get(node.groupKey);
    if (node.lane === undefined || group === undefined) return false;
    this.unlink(node);
    group.size--;
    this.total--;
    this.perLevel[node.level] = (this.perLevel[node.level] ?? 0) - 1;
    if (group.size === 0) this.groups.delete(group.key);
    return true;
  }

  /** Moves a queued node to the back of its level's delayed lane. */
  delay(handle: QueueNode<T>): void {
    const node = handle as Node<T>;
    const group = this.groups.get(node.groupKey);
    if (node.lane === undefined || group === undefined || node.delayed) return;
    this.unlink(node);
    node.delayed = true;
    this.append(group, node);
  }

  *groupViews(): IterableIterator<GroupView> {
    for (const group of this.groups.values()) {
      let oldest = Infinity;
      let headLane = -1;
      let headSeq = 0;
      group.lanes.forEach((lane, index) => {
        if (lane.head === undefined) return;
        oldest = Math.min(oldest, lane.head.enqueuedAt);
        if (headLane < 0) {
          headLane = index;
          headSeq = lane.head.laneSeq;
        }
      });
      yield { key: group.key, size: group.size, oldestEnqueuedAt: oldest, headLane, headSeq };
    }
  }

  /** Removes and returns up to `count` items of one group, in service order. */
  take(groupKey: string, count: number): QueueNode<T>[] {
    const group = this.groups.get(groupKey);
    const taken: QueueNode<T>[] = [];
    if (group === undefined) return taken;
    for (const lane of group.lanes) {
      while (taken.length < count && lane.head !== undefined) {
        const node = lane.head;
        this.remove(node);
        taken.push(node);
      }
      if (taken.length >= count) break;
    }
    return taken;
  }

  /** Removes and returns every queued item, in arrival order into their lanes. */
  drain(): QueueNode<T>[] {
    const all: Node<T>[] = [];
    for (const group of this.groups.values()) {
      for (const lane of group.lanes) {
        for (let node = lane.head; node !== undefined; node = node.next) all.push(node);
      }
    }
    all.sort((a, b) => a.laneSeq - b.laneSeq);
    for (const node of all) this.remove(node);
    return all;
  }

  private append(group: Group<T>, node: Node<T>): void {
    const lane = group.lanes[node.level * 2 + (node.delayed ? 1 : 0)] as Lane<T>;
    node.laneSeq = ++this.seq;
    node.lane = lane;
    node.prev = lane.tail;
    node.next = undefined;
    if (lane.tail === undefined) lane.head = node;
    else lane.tail.next = node;
    lane.tail = node;
  }

  private unlink(node: Node<T>): void {
    const lane = node.lane as Lane<T>;
    if (node.prev === undefined) lane.head = node.next;
    else node.prev.next = node.next;
    if (node.next === undefined) lane.tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = undefined;
    node.next = undefined;
    node.lane = undefined;
  }
}
