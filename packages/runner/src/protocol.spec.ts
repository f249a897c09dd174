import { describe, expect, it } from '@jest/globals';
import { decodeMessage, encodeMessage, MessageDecodeError } from './protocol';

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
