import { describe, expect, it } from '@jest/globals';
import { checkJobId, describeZodError, modelQueueName, queueJobId, StartJobRequestSchema } from './index';

describe('job ids', () => {
  it('accepts bucket names and rejects what S3 forbids', () => {
    expect(checkJobId('job-1.a', 'bucket')).toBeNull();
    for (const bad of ['ab', 'Job1', 'a/b', 'a..b', '-ab', '192.168.1.1', 'x'.repeat(64), 'a_b']) {
      expect(checkJobId(bad, 'bucket')).toMatch(/allowed are 3-63 characters/);
    }
  });

  it('accepts key names and rejects traversal', () => {
    expect(checkJobId('Job_1', 'key')).toBeNull();
    for (const bad of ['', '../x', 'a/b', '.hidden', 'a..b', 'x'.repeat(129), 'a b']) {
      expect(checkJobId(bad, 'key')).toMatch(/allowed are 1-128/);
    }
  });

  it('prefixes integer ids that BullMQ would refuse', () => {
    expect(queueJobId('123')).toBe('#123');
    expect(queueJobId('0123')).toBe('0123');
    expect(queueJobId('abc')).toBe('abc');
  });
});

describe('start-job body', () => {
  it('names the field that is wrong', () => {
    const result = StartJobRequestSchema.safeParse({ job_id: 'a', model: { name: 1, version: 'v' } });
    expect(result.success).toBe(false);
    if (!result.success) expect(describeZodError(result.error)).toMatch(/^model\.name: .*expected string/);
  });

  it('rejects unknown fields and unsafe model names', () => {
    expect(StartJobRequestSchema.safeParse({ job_id: 'a', model: { name: 'm', version: '1' }, x: 1 }).success).toBe(false);
    expect(StartJobRequestSchema.safeParse({ job_id: 'a', model: { name: '../m', version: '1' } }).success).toBe(false);
  });

  it('names model queues by name and version', () => {
    expect(modelQueueName({ name: 'ocr/en', version: '1.2' })).toBe('model.ocr/en@1.2');
  });
});
