import { BadRequestError } from './errors.js';

/** Paths the orchestrator answers itself (canonical spelling); they are never forwarded to containers. */
export const ORCHESTRATOR_PATHS = ['/new_request', '/status', '/health', '/metrics', '/dashboard', '/dashboard/events'] as const;
/** `/admin` and everything below it: the admin API, behind its token. */
export const ADMIN_PATH = '/admin';
/** A container's own control routes (fault drills): never reachable through the orchestrator. */
export const CONTAINER_CONTROL_PATHS = ['/api/v1/_crash', '/api/v1/_fault'] as const;

/** Who answers a request target. */
export type TargetKind = 'orchestrator' | 'admin' | 'container-control' | 'forward';

/** A request target read once at the edge. */
export interface RequestTarget {
  kind: TargetKind;
  /** The path decoded, with empty, `.` and `..` segments, `;` parameters and a trailing slash gone; case kept (ids in admin paths). */
  path: string;
  /** `?` and what follows, as sent. */
  search: string;
}

/** Rounds of percent-decoding a path gets before it is classified: `%2561` is `%61` is `a`. */
const DECODE_ROUNDS = 3;
/** A path already in canonical form: non-empty segments of letters, digits, `_` and `-` (nothing to decode, no dot segment, no `;`, no `\\`). */
const PLAIN_PATH = /^(?:\/[\w-]+)+$/;
/** Control characters (NUL, CR, LF...) have no place in a path, encoded or not. */
const CONTROL_CHAR = /[\u0000-\u001f\u007f]/;

/**
 * Classify `rawTarget` (the request line's target) once, on one canonical spelling, so that no
 * spelling of a reserved path (`/ADMIN/scale`, `/%61dmin/scale`, `//admin/./scale/`,
 * `/admin;x/scale`, `/admin%2Fscale`, `\admin\scale`) reaches a container or skips a check.
 * Classification errs toward reserved: a path that is reserved under any common server's reading
 * (repeated decoding, backslash as slash, matrix parameters) is the orchestrator's.
 * Throws BadRequestError for a target that is not a path or cannot be decoded.
 */
export function parseTarget(rawTarget: string): RequestTarget {
  // Only a path: an absolute URL (or `*`) must never look like it could choose where a request goes.
  if (!rawTarget.startsWith('/')) throw new BadRequestError('the request target must be a path: this is not a forward proxy');
  if (rawTarget.includes('#')) throw new BadRequestError('the request target must not contain a fragment (#)');
  const q = rawTarget.indexOf('?');
  const rawPath = q === -1 ? rawTarget : rawTarget.slice(0, q);
  const search = q === -1 ? '' : rawTarget.slice(q);
  // Most targets are plain (`/new_request`, `/run_model`): decoding and canonicalising them would change nothing.
  const path = PLAIN_PATH.test(rawPath) ? rawPath : canonicalPath(decodeRepeatedly(rawPath));
  return { kind: kindOf(path.toLowerCase()), path, search };
}

function decodeRepeatedly(rawPath: string): string {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new BadRequestError('the request path has a malformed percent-encoding');
  }
  // Later rounds only matter when they decode to something else; a literal `%` that does not decode is kept.
  for (let round = 1; round < DECODE_ROUNDS && path.includes('%'); round++) {
    try {
      path = decodeURIComponent(path);
    } catch {
      break;
    }
  }
  if (CONTROL_CHAR.test(path)) throw new BadRequestError('the request path contains a control character');
  return path;
}

/** Backslashes as slashes, no empty, `.` or `..` segments (`..` stops at the root), no `;params`, no trailing slash. */
function canonicalPath(decoded: string): string {
  const segments: string[] = [];
  for (const raw of decoded.replaceAll('\\', '/').split('/')) {
    const semicolon = raw.indexOf(';');
    const segment = semicolon === -1 ? raw : raw.slice(0, semicolon);
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  return `/${segments.join('/')}`;
}

function kindOf(key: string): TargetKind {
  if (key === ADMIN_PATH || key.startsWith(`${ADMIN_PATH}/`)) return 'admin';
  if ((ORCHESTRATOR_PATHS as readonly string[]).includes(key)) return 'orchestrator';
  if ((CONTAINER_CONTROL_PATHS as readonly string[]).includes(key)) return 'container-control';
  return 'forward';
}
