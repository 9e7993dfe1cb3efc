/** Removes userinfo and query from a URL for logs and messages. Invalid input is returned as `<invalid URL>`. */
export function redactUrl(url: string | URL): string {
  let parsed: URL;
  try {
    parsed = typeof url === 'string' ? new URL(url) : new URL(url.href);
  } catch {
    return '<invalid URL>';
  }
  if (parsed.username !== '' || parsed.password !== '') {
    parsed.username = '';
    parsed.password = '';
  }
  if (parsed.search !== '') parsed.search = '?redacted';
  return parsed.href;
}
