const hex = (ch: string): string => ch.charCodeAt(0).toString(16);

/** Ways to write `path` that some server reads as `path`: case, encodings, slashes, dot segments, parameters. */
export function spellings(path: string): Array<[string, string]> {
  const [first, ...rest] = path.slice(1).split('/') as [string, ...string[]];
  const tail = rest.length > 0 ? `/${rest.join('/')}` : '';
  return [
    ['as registered', path],
    ['in upper case', path.toUpperCase()],
    ['in mixed case', `/${first[0]!.toUpperCase()}${first.slice(1)}${tail}`],
    ['with a percent-encoded letter', `/%${hex(first[0]!)}${first.slice(1)}${tail}`],
    ['double percent-encoded', `/%25${hex(first[0]!)}${first.slice(1)}${tail}`],
    ['with a leading double slash', `/${path}`],
    ['with every slash doubled', path.replaceAll('/', '//')],
    ['with a dot segment', `/.${path}`],
    ['with a dot-dot segment', `/x/..${path}`],
    ['with a trailing slash', `${path}/`],
    ['with a segment parameter', `/${first};x=1${tail}`],
    ['with an encoded slash', `/${first}%2F${rest.join('/')}`],
    ['with a lower-case encoded slash', `/${first}%2f${rest.join('/')}`],
    ['with backslashes', `/${path.slice(1).replaceAll('/', '\\')}`],
    ['with a query string', `${path}?x=1`],
  ];
}
