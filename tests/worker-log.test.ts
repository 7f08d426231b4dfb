/**
 * Issue 20, item 15: every retryable failure printed a ≈30-line Temporal SDK WARN with the error's stack into
 * `submit`'s console (its embedded worker logs through the same logger as `rankflow worker`). The filter
 * turns a failed attempt (retryable or not) into one line and leaves every other entry to the SDK's logger.
 */
import { describe, expect, it } from 'vitest';
import { ApplicationFailure } from '@temporalio/common';
import { workerLogLine } from '../cli/worker.js';

function retryable(): ApplicationFailure {
  // what the train activity throws for an attempt that may succeed again (a runtime killed, a store outage)
  const e = ApplicationFailure.retryable('the runtime exited with signal SIGKILL\nmore detail', 'RuntimeExit');
  e.stack = `${e.message}\n${Array.from({ length: 30 }, (_, i) => `    at frame${i} (/x/activities/train.ts:${i}:1)`).join('\n')}`;
  return e;
}

describe('worker log lines', () => {
  it('a retryable attempt failure is one line, without the stack', () => {
    const line = workerLogLine({ message: 'Activity failed', meta: { error: retryable(), durationMs: 5 } }, 'WARN');
    expect(line).toBe('rankflow worker: an attempt failed: the runtime exited with signal SIGKILL');
    expect(line).not.toMatch(/\n|\bat frame/);
  });

  it('a non-retryable one and a failed workflow too', () => {
    const e = ApplicationFailure.nonRetryable('config error: training.lr: expected a number > 0', 'ConfigError');
    expect(workerLogLine({ message: 'Activity failed', meta: { error: e } }, 'WARN')).toBe(
      'rankflow worker: an attempt failed: config error: training.lr: expected a number > 0',
    );
    expect(workerLogLine({ message: 'Workflow failed', meta: { error: e } }, 'INFO')).toMatch(
      /^rankflow worker: a run failed: /,
    );
  });

  it('other entries go to the SDK logger; DEBUG/TRACE keep the full entry; a training-only worker is quiet', () => {
    expect(workerLogLine({ message: 'Worker state changed', meta: { state: 'RUNNING' } }, 'WARN')).toBeNull();
    expect(workerLogLine({ message: 'Activity failed', meta: { error: retryable() } }, 'DEBUG')).toBeNull();
    expect(workerLogLine({ message: 'No workflows registered, not polling for workflow tasks' }, 'WARN')).toBe('');
  });
});
