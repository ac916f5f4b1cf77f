import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { StopStringMatcher } from '../../../src/serving/index.js';

test('holds back a possible stop-string prefix and drops the stop string', () => {
  const m = new StopStringMatcher(['\nUser:']);
  assert.deepEqual(m.push('Hello'), { text: 'Hello', stop: null });
  assert.deepEqual(m.push(' there\nUs'), { text: ' there', stop: null });
  assert.deepEqual(m.push('er: more'), { text: '', stop: '\nUser:' });
});

test('releases held text when it turns out not to be a stop string', () => {
  const m = new StopStringMatcher(['STOP']);
  assert.deepEqual(m.push('ST'), { text: '', stop: null });
  assert.deepEqual(m.push('OPPED'.slice(0, 1)), { text: '', stop: null }); // "STO"
  assert.deepEqual(m.push('X'), { text: 'STOX', stop: null });
  assert.equal(m.flush(), '');
  assert.deepEqual(m.push('ab ST'), { text: 'ab ', stop: null });
  assert.equal(m.flush(), 'ST');
});

test('earliest stop wins; include_stop_str_in_output keeps it', () => {
  const m = new StopStringMatcher(['b', 'abc']);
  assert.deepEqual(m.push('xabcd'), { text: 'x', stop: 'abc' });
  const keep = new StopStringMatcher(['.'], true);
  assert.deepEqual(keep.push('one. two'), { text: 'one.', stop: '.' });
});

test('property: chunking never changes the result and never leaks a stop string', () => {
  fc.assert(
    fc.property(
      fc.array(fc.string({ maxLength: 4 }), { maxLength: 12 }),
      fc.array(fc.string({ minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 3 }),
      (chunks, stops) => {
        const m = new StopStringMatcher(stops);
        let out = '';
        let stopped: string | null = null;
        for (const c of chunks) {
          const r = m.push(c);
          out += r.text;
          if (r.stop !== null) {
            stopped = r.stop;
            break;
          }
        }
        if (stopped === null) out += m.flush();
        const whole = chunks.join('');
        const firstAt = Math.min(...stops.map((s) => (whole.indexOf(s) < 0 ? Infinity : whole.indexOf(s))));
        if (firstAt === Infinity) {
          assert.equal(out, whole);
          assert.equal(stopped, null);
        } else {
          assert.equal(out, whole.slice(0, firstAt));
          assert.notEqual(stopped, null);
        }
        for (const s of stops) assert.ok(!out.includes(s));
      },
    ),
    { numRuns: 500 },
  );
});
