import { describe, expect, it } from '@jest/globals';
import { REDACT_PATHS, redactQuery, redactRequest, redactUrl } from './redact';

describe('redactUrl', () => {
  it('replaces the values of token-like parameters, whatever their case', () => {
    expect(redactUrl('/jobs/a/result?token=abc&x=1')).toBe('/jobs/a/result?token=[REDACTED]&x=1');
    expect(redactUrl('/x?Access_Token=a&API_KEY=b&apikey=c&Key=d&signature=e')).toBe(
      '/x?Access_Token=[REDACTED]&API_KEY=[REDACTED]&apikey=[REDACTED]&Key=[REDACTED]&signature=[REDACTED]',
    );
    expect(
      redactUrl('https://s3.local/b/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=AK%2F2026&X-Amz-Signature=f00d&x-amz-date=1#frag'),
    ).toBe('https://s3.local/b/o?X-Amz-Algorithm=AWS4&X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]&x-amz-date=1#frag');
  });

  it('reads percent-encoded names and leaves everything else as written', () => {
    expect(redactUrl('/x?%74oken=abc')).toBe('/x?%74oken=[REDACTED]');
    expect(redactUrl('/x?tokens=1&mytoken=2&token')).toBe('/x?tokens=1&mytoken=2&token');
    expect(redactUrl('/x?bad=%E0%A4%A&token=1')).toBe('/x?bad=%E0%A4%A&token=[REDACTED]');
    expect(redactUrl('/jobs/token/status')).toBe('/jobs/token/status');
    expect(redactUrl('/x#token=1')).toBe('/x#token=1');
  });
});

describe('redactQuery and redactRequest', () => {
  it('blanks token-like keys of a parsed query', () => {
    const query = { token: 'abc', page: '2' };
    expect(redactQuery(query)).toEqual({ token: '[REDACTED]', page: '2' });
    expect(query.token).toBe('abc');
    expect(redactQuery({ page: '2' })).toEqual({ page: '2' });
    expect(redactQuery(undefined)).toBeUndefined();
  });

  it('redacts the url and the query of a serialized request', () => {
    const req = redactRequest({ method: 'GET', url: '/a?API_KEY=s&b=1', query: { API_KEY: 's', b: '1' } });
    expect(req).toEqual({ method: 'GET', url: '/a?API_KEY=[REDACTED]&b=1', query: { API_KEY: '[REDACTED]', b: '1' } });
  });
});

describe('REDACT_PATHS', () => {
  it('names the credential headers of request logs', () => {
    for (const header of ['authorization', '["proxy-authorization"]', '["x-api-key"]', 'cookie']) {
      expect(REDACT_PATHS).toContain(header.startsWith('[') ? `req.headers${header}` : `req.headers.${header}`);
    }
  });
});
