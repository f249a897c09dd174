import { describe, it, expect } from '@jest/globals';
import { InvalidPathError } from './errors';
import { safeJobId, safeRelativePath } from './paths';

describe('safeRelativePath', () => {
  it.each(['input', 'images/a.png', 'a/b/c.txt', '..hidden', 'a..b', 'x/.config', 'spaces ok.txt'])('accepts %j', (path) => {
    expect(safeRelativePath(path)).toBe(path);
  });

  it.each([
    ['parent', '../x'],
    ['climbing out mid-path', 'a/../../b'],
    ['parent at the end', 'a/..'],
    ['absolute', '/etc/passwd'],
    ['empty segment', 'a//b'],
    ['trailing slash', 'a/'],
    ['backslash', 'a\\b'],
    ['windows parent', '..\\x'],
    ['dot', '.'],
    ['dot segment', 'a/./b'],
    ['NUL', 'a\0b'],
    ['empty', ''],
    ['too long', 'a'.repeat(1025)],
  ])('rejects %s', (_label, path) => {
    expect(() => safeRelativePath(path)).toThrow(InvalidPathError);
  });
});

describe('safeJobId', () => {
  it('accepts ordinary ids', () => {
    expect(safeJobId('job-1.a_b')).toBe('job-1.a_b');
  });

  it.each(['', '.tmp', '..', 'a/b', 'a\\b', 'a\0'])('rejects %j', (id) => {
    expect(() => safeJobId(id)).toThrow(InvalidPathError);
  });
});
