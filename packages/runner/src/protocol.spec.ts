import { describe, expect, it } from '@jest/globals';
import { decodeMessage, encodeMessage, MessageDecodeError, PROGRESS_PEER_PREFIX, takesProgress } from './protocol';

describe('encodeMessage', () => {
  it('writes an InputMessage byte for byte as the original (Python json.dumps of schematics to_primitive)', () => {
    const frame = encodeMessage({ message_type: 'InputMessage', job_id: 'job-1', io_data_root: '/tmp/shepherd-data/sheep_1' });
    expect(frame.toString('utf8')).toBe(
      '{"message": {"identity": "", "job_id": "job-1", "message_type": "InputMessage", "io_data_root": "/tmp/shepherd-data/sheep_1"}}',
    );
  });

  it('writes Done and Error messages in the same shape', () => {
    expect(encodeMessage({ message_type: 'DoneMessage', job_id: 'j' }).toString()).toBe(
      '{"message": {"identity": "", "job_id": "j", "message_type": "DoneMessage"}}',
    );
    const error = encodeMessage({
      message_type: 'ErrorMessage',
      job_id: 'j',
      message: 'ValueError: bad input',
      exception_type: 'ValueError',
      exception_traceback: 'Traceback (most recent call last):\n  ...\nValueError: bad input\n',
    });
    expect(error.toString()).toBe(
      '{"message": {"identity": "", "job_id": "j", "message_type": "ErrorMessage", "message": "ValueError: bad input", ' +
        '"exception_type": "ValueError", "exception_traceback": "Traceback (most recent call last):\\n  ...\\nValueError: bad input\\n"}}',
    );
  });

  it('escapes everything past ASCII as Python does (ensure_ascii), so frames are pure ASCII', () => {
    const frame = encodeMessage({ message_type: 'DoneMessage', job_id: 'ü✓😀\u007f"\\' });
    expect(frame.toString('utf8')).toBe(
      '{"message": {"identity": "", "job_id": "\\u00fc\\u2713\\ud83d\\ude00\\u007f\\"\\\\", "message_type": "DoneMessage"}}',
    );
    expect(decodeMessage(frame).job_id).toBe('ü✓😀\u007f"\\');
  });

  it('refuses a message that breaks the schema', () => {
    expect(() => encodeMessage({ message_type: 'InputMessage', job_id: 'j' } as never)).toThrow(/io_data_root/);
  });
});

describe('decodeMessage', () => {
  it('reads a DoneMessage as the original runner sends it', () => {
    const message = decodeMessage(Buffer.from('{"message": {"identity": "", "job_id": "j1", "message_type": "DoneMessage"}}'));
    expect(message).toEqual({ message_type: 'DoneMessage', identity: '', job_id: 'j1' });
  });

  it('reads an ErrorMessage, nulls as empty strings and key order free', () => {
    const message = decodeMessage(
      '{"message": {"message_type": "ErrorMessage", "job_id": "j2", "identity": null, ' +
        '"message": "KeyError: \'x\'", "exception_type": "KeyError", "exception_traceback": null}}',
    );
    expect(message).toEqual({
      message_type: 'ErrorMessage',
      identity: '',
      job_id: 'j2',
      message: "KeyError: 'x'",
      exception_type: 'KeyError',
      exception_traceback: '',
    });
  });

  it('reads an InputMessage and fills a missing identity', () => {
    expect(decodeMessage('{"message": {"job_id": "j", "message_type": "InputMessage", "io_data_root": "/d"}}')).toEqual({
      message_type: 'InputMessage',
      identity: '',
      job_id: 'j',
      io_data_root: '/d',
    });
  });

  it.each([
    ['not JSON', 'hello', /not JSON/],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d]), /not valid UTF-8/],
    ['no envelope', '{"job_id": "j", "message_type": "DoneMessage"}', /message/],
    ['an unknown type', '{"message": {"job_id": "j", "message_type": "StartMessage"}}', /message\.message_type/],
    ['a missing job_id', '{"message": {"message_type": "DoneMessage"}}', /message\.job_id/],
    ['a number for io_data_root', '{"message": {"job_id": "j", "message_type": "InputMessage", "io_data_root": 1}}', /io_data_root/],
  ])('rejects %s with a MessageDecodeError naming the problem', (_what, frame, pattern) => {
    expect(() => decodeMessage(frame)).toThrow(MessageDecodeError);
    expect(() => decodeMessage(frame)).toThrow(pattern);
  });
});

describe('ProgressMessage (ours; the original has none)', () => {
  it('is written in the same envelope, progress as a Python float, message left out when none', () => {
    expect(encodeMessage({ message_type: 'ProgressMessage', job_id: 'j', progress: 0.4, message: 'epoch 2' }).toString()).toBe(
      '{"message": {"identity": "", "job_id": "j", "message_type": "ProgressMessage", "progress": 0.4, "message": "epoch 2"}}',
    );
    expect(encodeMessage({ message_type: 'ProgressMessage', job_id: 'j', progress: 1 }).toString()).toBe(
      '{"message": {"identity": "", "job_id": "j", "message_type": "ProgressMessage", "progress": 1.0}}',
    );
  });

  it('reads progress clamped to 0..1 and an empty or missing message as null', () => {
    const read = (fields: string) => decodeMessage(`{"message": {"job_id": "j", "message_type": "ProgressMessage", ${fields}}}`);
    expect(read('"progress": 0.25, "message": "a"')).toEqual({
      message_type: 'ProgressMessage',
      identity: '',
      job_id: 'j',
      progress: 0.25,
      message: 'a',
    });
    expect(read('"progress": 7')).toMatchObject({ progress: 1, message: null });
    expect(read('"progress": -1e3, "message": ""')).toMatchObject({ progress: 0, message: null });
    expect(read('"progress": 0, "message": null')).toMatchObject({ progress: 0, message: null });
    expect(read(`"progress": 0.5, "message": "${'x'.repeat(1000)}"`)).toMatchObject({ message: 'x'.repeat(1000) });
  });

  it.each([
    ['no progress', '"message": "a"', /progress/],
    ['a string for progress', '"progress": "0.5"', /progress/],
    ['NaN (Python json.dumps writes it)', '"progress": NaN', /not JSON/],
    ['Infinity', '"progress": Infinity', /not JSON/],
    ['a number for message', '"progress": 0.5, "message": 3', /message\.message/],
    ['a message over 1,000 characters', `"progress": 0.5, "message": "${'x'.repeat(1001)}"`, /message\.message/],
  ])('rejects %s', (_what, fields, pattern) => {
    const frame = `{"message": {"job_id": "j", "message_type": "ProgressMessage", ${fields}}}`;
    expect(() => decodeMessage(frame)).toThrow(MessageDecodeError);
    expect(() => decodeMessage(frame)).toThrow(pattern);
  });

  it('is sent only to a peer whose routing id announces it', () => {
    expect(takesProgress(Buffer.from(`${PROGRESS_PEER_PREFIX}0b6c6f0e`))).toBe(true);
    // What libzmq gives a DEALER without a routing id (the original sheep's): 0x00 and four random bytes.
    expect(takesProgress(Buffer.from([0, 0x6b, 0x8b, 0x45, 0x67]))).toBe(false);
    expect(takesProgress(Buffer.from('shepherd-progress/'))).toBe(false);
  });
});
